"""The dataset scanner: rank images by saliency compactness, localise and verify triggers, report."""

from .compactness import SCORE, Compactness, compactness
from .report import write_report
from .run import SUSPICIOUS, ScanError, ScanResult, rank, scan
from .scanner import ScanRecord, Scanner

__all__ = ["SCORE", "SUSPICIOUS", "Compactness", "ScanError", "ScanRecord", "ScanResult", "Scanner", "compactness",
           "rank", "scan", "write_report"]
