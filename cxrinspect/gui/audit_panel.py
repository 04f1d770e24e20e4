"""The Audit panel: is the open model backdoored? Runs :func:`cxrinspect.audit.audit` on the open folder's
(clean) images in a worker, with progress and Cancel; shows the verdict, the recovered trigger (mask and
pattern) and held-out images it flips. The window runs the audit; this only shows it."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..audit.report import caveats, forced_phrase, global_pictures, trigger_sentence, warp_share, whole_share
from ..audit.run import trigger_of


def pixmap(unit: np.ndarray, zoom: int = 1) -> QPixmap:
    g = np.ascontiguousarray(np.kron(np.rint(np.clip(unit, 0, 1) * 255).astype(np.uint8),
                                     np.ones((zoom, zoom), np.uint8)))
    image = QImage(g.data, g.shape[1], g.shape[0], g.shape[1], QImage.Format.Format_Grayscale8)
    return QPixmap.fromImage(image.copy())


class AuditPanel(QWidget):
    start_requested = Signal()
    cancel_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.start = QPushButton("Audit model")
        self.start.setToolTip("reverse-engineer a trigger per label from the open folder's clean images")
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m steps")
        self.status = QLabel("Is the open model backdoored? Uses the open folder's images as clean radiographs.")
        self.status.setWordWrap(True)
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        self.images = QHBoxLayout()
        row = QHBoxLayout()
        row.addWidget(self.start)
        row.addWidget(self.cancel)
        row.addWidget(self.progress, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.verdict)
        layout.addLayout(self.images)
        layout.addStretch(1)
        self.start.clicked.connect(self.start_requested)
        self.cancel.clicked.connect(self.cancel_requested)
        self.shown: list[QLabel] = []
        self._boxes: list[QWidget] = []

    def set_running(self, running: bool) -> None:
        self.start.setEnabled(not running)
        self.cancel.setEnabled(running)
        if running:
            self.verdict.setText("")
            self._clear()

    def _clear(self) -> None:
        for w in self._boxes:
            self.images.removeWidget(w)
            w.deleteLater()
        self.shown, self._boxes = [], []

    def show_result(self, result) -> None:
        """The verdict, the recovered trigger's mask and pattern, and up to two held-out images it flips."""
        doc = result.doc
        self._clear()
        if not doc["complete"]:
            self.verdict.setText(f"Stopped after {doc['steps']} steps; audit again with the same output to resume.")
            return
        rows = self._sizes(doc)
        notes = "".join(f"<br>{x}" for x in caveats(doc))
        if doc["backdoored"]:
            t = doc["trigger"]
            self.verdict.setText(f"<b>Backdoored</b>: {forced_phrase(doc)}; {trigger_sentence(t)}. Masks: {rows}"
                                 + notes)
            arm = next(a for a in result.arms if a["candidate"].name == t["candidate"])
            if t["box"] is None:  # a trigger over the whole image (a change or a warp) and the images it flips
                self._show(global_pictures(arm, result.views, result.paths, t["family"]))
                return
        else:
            self.verdict.setText(f"No backdoor found. Masks: {rows}{notes}")
            arm = min((a for a in result.arms if a["inv"].steps or a.get("square")),  # the nearest miss
                      key=lambda a: trigger_of(a)[2] or float("inf"), default=None)
        if arm is None:
            return
        mask, pattern, _, _ = trigger_of(arm)
        pictures = [("mask", mask), ("pattern", mask * pattern + (1 - mask) * 0.5)]
        for i, before, after in arm.get("flips", [])[:2]:
            x = result.views[i]
            pictures.append((f"{arm['candidate'].label}: {before:.2f} → {after:.2f}", (1 - mask) * x + mask * pattern))
        self._show(pictures)

    def _show(self, pictures) -> None:
        """Each picture with its caption under it (``self.shown``: the picture labels)."""
        for title, unit in pictures:
            label = QLabel()
            label.setPixmap(pixmap(unit))
            label.setToolTip(title)
            caption = QLabel(title)
            caption.setAlignment(Qt.AlignmentFlag.AlignHCenter)
            box = QWidget()
            column = QVBoxLayout(box)
            column.setContentsMargins(0, 0, 0, 0)
            column.addWidget(label)
            column.addWidget(caption)
            self.images.addWidget(box)
            self.shown.append(label)
            self._boxes.append(box)

    @staticmethod
    def _sizes(doc) -> str:
        parts = []
        for c in doc["candidates"]:
            size = "not forced" if c["mask_l1"] is None else f"{c['mask_l1']:.0f} px"
            if c.get("global"):
                size += f" (whole image: {whole_share(c['global'])})"
            if c.get("warp"):
                size += f" ({warp_share(c['warp'])})"
            parts.append(f"{c['candidate']} {size}")
        return "; ".join(parts)
