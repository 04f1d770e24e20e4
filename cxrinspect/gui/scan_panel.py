"""The Scan panel: run the trigger scanner over the open folder, rank live, open a row's hotspot, export."""

from __future__ import annotations

import bisect
import os

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..scan.detectors import AUTO, DETECTORS, METHODS

from .browser import without_path

SCAN_METHODS = ("gradient", *(m for m in METHODS if m != "gradient"))  # the measured default first
HINTS = {AUTO: "gradient-map compactness, scaled-parameter, contrast and mirror consistency on every image, "
               "mask distillation on the candidates; every verdict checked by hiding what was found",
         **{d.name: f"{d.what}; runs on {d.runs_on}; costs {d.cost} per image" for d in DETECTORS.values()}}
COLUMNS = ("Rank", "Score", "File", "Label", "Hotspot (t, l, b, r)", "Verdict")
FILE, HOTSPOT = 2, 4
_TOP = QModelIndex()  # the table's (invisible) root


def _order(record) -> tuple:
    """Readable records by score (highest first), then path; unreadable files last."""
    return (0, -record.score, record.path) if record.ok else (1, 0.0, record.path)


class RankingModel(QAbstractTableModel):
    """Scan records kept sorted as they arrive; a row's rank is its position among the readable ones."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.records: list = []
        self._keys: list[tuple] = []
        self.root = ""

    def clear(self) -> None:
        self.beginResetModel()
        self.records, self._keys = [], []
        self.endResetModel()

    def add(self, record) -> None:
        key = _order(record)
        row = bisect.bisect_right(self._keys, key)
        self.beginInsertRows(QModelIndex(), row, row)
        self._keys.insert(row, key)
        self.records.insert(row, record)
        self.endInsertRows()
        if row + 1 < len(self.records):  # the ranks below shifted by one
            self.dataChanged.emit(self.index(row + 1, 0), self.index(len(self.records) - 1, 0))

    def set_records(self, records) -> None:
        """Replace with the final records in their final order (the scan's ranking, which puts the images
        whose hotspot the counterfactual check confirmed first; unreadable files last)."""
        self.beginResetModel()
        self.records = list(records)
        self._keys = [_order(r) for r in self.records]  # only for ``add``, which a finished scan no longer gets
        self.endResetModel()

    def rowCount(self, parent=_TOP):
        return 0 if parent.isValid() else len(self.records)

    def columnCount(self, parent=_TOP):
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole and section == 1:
            return ("while scanning: the gradient map's 3x3 share (or the method's own score); once ranked: what the "
                    "ranking sorts by (auto: the detectors' robust z-scores over the folder, summed as Stouffer's "
                    "method does)")
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        r, col = self.records[index.row()], index.column()
        if role == Qt.ItemDataRole.ToolTipRole:  # the full path (the File column may be elided) and any reason
            return f"{r.path}\ncannot be read: {without_path(r.path, r.error or '')}" if not r.ok else r.path
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        name = os.path.relpath(r.path, self.root) if self.root else os.path.basename(r.path)
        if not r.ok:
            return ("—", "", name, "unreadable", without_path(r.path, r.error or ""), "error")[col]
        if col == 0:
            return str(index.row() + 1)
        if col == 1:  # the ranking's own value once the folder is ranked (auto: the combined suspicion)
            return f"{r.suspicion:.2f}" if r.suspicion is not None and r.suspicion != r.score else f"{r.score:.4f}"
        if col == 2:
            return name
        if col == 3:
            return f"{r.label} {r.probabilities.get(r.label, 0):.2f}" if r.label else ""
        if col == 4:
            return ", ".join(map(str, r.hotspot)) if r.hotspot else ""
        return r.verdict


class ScanPanel(QWidget):
    """Start/Cancel, progress, the ranking table and Export. The window runs the scan; this only shows it."""

    start_requested = Signal(str)  # method
    cancel_requested = Signal()
    export_requested = Signal()
    record_activated = Signal(object)  # ScanRecord

    def __init__(self, parent=None):
        super().__init__(parent)
        self.method = QComboBox()
        for m in SCAN_METHODS:
            self.method.addItem(m)
            self.method.setItemData(self.method.count() - 1, HINTS.get(m, f"compactness of the {m} saliency map"),
                                    Qt.ItemDataRole.ToolTipRole)
        self.method.setToolTip("how images are scored: hover an entry for what it measures and costs")
        self.start = QPushButton("Scan folder")
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.export = QPushButton("Export report…")
        self.export.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m")
        self.status = QLabel("Rank the open folder's images by how likely each carries a backdoor trigger "
                             "(choose the detector; hover an entry for what it measures and costs).")
        self.status.setWordWrap(True)
        self.model = RankingModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 8)  # more rows in view
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # a long path keeps its folder and its name
        self.table.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        # The File column takes the room the others leave; the others get a width that fits their widest content,
        # set once. (Sized to contents, every inserted row re-measured every row on the UI thread, which slowed
        # the scan itself, and an unreadable file's reason in the Hotspot column squeezed File to a few letters.)
        header = self.table.horizontalHeader()
        width = self.table.fontMetrics().horizontalAdvance
        widest = {0: "00000", 1: "0.0000", 3: "Pleural_Thickening 1.00", HOTSPOT: "0000, 0000, 0000, 0000",
                  5: "suspicious"}
        for column, sample in widest.items():
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(column, max(width(sample), width(COLUMNS[column])) + 24)
        header.setSectionResizeMode(FILE, QHeaderView.ResizeMode.Stretch)
        row = QHBoxLayout()
        row.addWidget(QLabel("Detector"))
        row.addWidget(self.method)
        row.addWidget(self.start)
        row.addWidget(self.cancel)
        row.addWidget(self.progress, 1)
        row.addWidget(self.export)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.table, 1)
        self.start.clicked.connect(lambda: self.start_requested.emit(self.method.currentText()))
        self.cancel.clicked.connect(self.cancel_requested)
        self.export.clicked.connect(self.export_requested)
        self.table.clicked.connect(self._clicked)
        self.table.activated.connect(self._clicked)

    def _clicked(self, index) -> None:
        if index.isValid():
            self.record_activated.emit(self.model.records[index.row()])

    def set_running(self, running: bool, total: int = 0) -> None:
        self.start.setEnabled(not running)
        self.cancel.setEnabled(running)
        self.method.setEnabled(not running)
        if running:
            self.model.clear()
            self.export.setEnabled(False)
            self.progress.setRange(0, max(total, 1))
            self.progress.setValue(0)
