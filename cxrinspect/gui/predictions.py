"""The Predict panel: the model picker, the model card, per-label probability bars with thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from .. import resources
from ..model import ModelCard

RESOURCES = resources.root()


def bundled_models(root: Path = RESOURCES / "models") -> list[Path]:
    """Every directory under resources/models that holds a model card."""
    return sorted(p for p in root.glob("*/") if (p / "card.json").is_file()) if root.is_dir() else []


class ProbabilityBars(QWidget):
    """One bar per label, highest first; a tick marks the card's threshold, bars above it are filled solid."""

    ROW = 22

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[tuple[str, float, float]] = []  # (label, probability, threshold), sorted
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Minimum)

    def set_probabilities(self, labels: list[str], probabilities, thresholds: dict[str, float]) -> None:
        if probabilities is None:
            self.rows = []
        else:
            order = np.argsort(-np.asarray(probabilities), kind="stable")
            self.rows = [(labels[i], float(probabilities[i]), float(thresholds.get(labels[i], 0.5))) for i in order]
        self.setMinimumHeight(self.ROW * max(1, len(self.rows)) + 4)
        self.updateGeometry()
        self.update()

    def paintEvent(self, _event):
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        label_w = min(110, self.width() // 3)
        bar_x, bar_w = label_w + 6, max(20, self.width() - label_w - 56)
        for i, (label, prob, threshold) in enumerate(self.rows):
            y = 2 + i * self.ROW
            p.setPen(self.palette().text().color())
            p.drawText(QRectF(0, y, label_w, self.ROW - 4), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       label)
            p.drawText(QRectF(bar_x + bar_w + 4, y, 50, self.ROW - 4), Qt.AlignmentFlag.AlignVCenter, f"{prob:.2f}")
            p.setPen(QPen(QColor(120, 120, 120)))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(QRectF(bar_x, y + 2, bar_w, self.ROW - 8))
            above = prob >= threshold
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(220, 80, 60) if above else QColor(90, 140, 200))
            p.drawRect(QRectF(bar_x, y + 2, bar_w * prob, self.ROW - 8))
            p.setPen(QPen(QColor(255, 210, 0), 2))
            tx = bar_x + bar_w * threshold
            p.drawLine(int(tx), y, int(tx), y + self.ROW - 4)
        p.end()


class ModelCardDialog(QDialog):
    """The card as a summary (poisoned flag first and loud) and as its full JSON."""

    def __init__(self, card: ModelCard, path: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Model card: {card.name or Path(path).name}")
        layout = QVBoxLayout(self)
        if card.poisoned:
            warning = QLabel(f"POISONED MODEL: trained with a backdoor trigger; target {card.target}")
            warning.setStyleSheet("background:#b00020; color:white; font-weight:bold; padding:6px;")
            layout.addWidget(warning)
        metrics = card.provenance.get("metrics")
        summary = [f"<b>{card.name or Path(path).name}</b>", card.description, f"path: {path}",
                   f"labels: {', '.join(card.labels)}",
                   f"thresholds: {', '.join(f'{k} {v:g}' for k, v in card.thresholds.items())}",
                   f"input: {card.preprocessing.input_size}px, {card.preprocessing.channels} channel(s)"]
        if metrics:
            summary.append(f"metrics: {json.dumps(metrics)[:400]}")
        text = QLabel("<br>".join(s for s in summary if s))
        text.setWordWrap(True)
        text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(text)
        self.json = QPlainTextEdit(card.to_json())
        self.json.setReadOnly(True)
        self.json.setFont(QFont("monospace"))
        layout.addWidget(self.json, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(640, 560)


class PredictionPanel(QWidget):
    """Model picker + card button + backend line + bars. Emits ``model_chosen(path)`` and ``open_model_requested``."""

    model_chosen = Signal(str)
    open_model_requested = Signal()
    card_requested = Signal()

    OPEN = "__open__"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.models = QComboBox()
        self.models.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.card_button = QPushButton("Card…")
        self.card_button.setToolTip("Show the model card")
        self.poisoned = QLabel("")
        self.poisoned.setStyleSheet("color:white; background:#b00020; font-weight:bold; padding:2px;")
        self.poisoned.setVisible(False)
        self.backend = QLabel("no model")
        self.backend.setWordWrap(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.bars = ProbabilityBars()
        top = QHBoxLayout()
        top.addWidget(self.models, 1)
        top.addWidget(self.card_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.poisoned)
        layout.addWidget(self.backend)
        layout.addWidget(self.bars)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.card_button.clicked.connect(self.card_requested)
        self.models.activated.connect(self._activated)
        for path in bundled_models():
            self.add_model(str(path))
        self.models.addItem("Open model…", self.OPEN)

    def add_model(self, path: str) -> int:
        """The combo index of ``path``, adding it (before "Open model…") when new."""
        path = str(Path(path).resolve())
        i = self.models.findData(path)
        if i < 0:
            i = max(0, self.models.count() - 1) if self.models.findData(self.OPEN) >= 0 else self.models.count()
            self.models.insertItem(i, Path(path).name, path)
        return i

    def select_model(self, path: str) -> None:
        self.models.setCurrentIndex(self.add_model(path))

    def _activated(self, index: int) -> None:
        data = self.models.itemData(index)
        if data == self.OPEN:
            self.open_model_requested.emit()
        elif data:
            self.model_chosen.emit(data)

    def show_card(self, card: ModelCard | None, description: str) -> None:
        self.backend.setText(description)
        self.poisoned.setVisible(bool(card and card.poisoned))
        if card and card.poisoned:
            self.poisoned.setText("POISONED MODEL (backdoor trigger in its card)")

    def show_prediction(self, labels, probabilities, thresholds, status: str = "") -> None:
        self.bars.set_probabilities(labels, probabilities, thresholds)
        self.status.setText(status)
