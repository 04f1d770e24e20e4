"""The model audit: trigger reverse-engineering (Neural Cleanse for sigmoid labels, K-Arm scheduling) on clean
images only. A sibling of the scanner: it needs the model and clean radiographs, no poisoned image."""

from .anomaly import anomaly_index, verdict
from .inversion import Candidate, GlobalInversion, PatchInversion
from .run import AuditError, AuditResult, audit

__all__ = ["AuditError", "AuditResult", "Candidate", "GlobalInversion", "PatchInversion", "anomaly_index", "audit",
           "verdict"]
