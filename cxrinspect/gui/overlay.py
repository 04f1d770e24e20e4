"""The Explain panel: saliency overlay on/off, method, label, opacity and colour map, bound to the view state."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QSlider,
    QWidget,
)

from .state import COLORMAPS, ViewModel, ViewState

METHODS = ("cam", "gradient", "gradcam", "integrated-gradients", "smoothgrad", "occlusion")
"""cxrinspect.saliency.METHODS, fast overview first; spelled out so the window opens without importing torch
(tests/gui check the two agree)."""

METHOD_HINTS = {
    "cam": "class activation map: fast, coarse (7x7): an anatomical overview",
    "gradient": "input gradient: pixel resolution, what exposes a 3x3 trigger",
    "gradcam": "Grad-CAM (captum)",
    "integrated-gradients": "Integrated Gradients (captum): slow",
    "smoothgrad": "SmoothGrad (captum): slow",
    "occlusion": "occlusion (captum): slow",
}


class OverlayPanel(QWidget):
    def __init__(self, view_model: ViewModel, parent=None):
        super().__init__(parent)
        self.view_model = view_model
        self.visible = QCheckBox("Show saliency overlay (O)")
        self.method = QComboBox()
        for m in METHODS:
            self.method.addItem(m, m)
            self.method.setItemData(self.method.count() - 1, METHOD_HINTS.get(m, m), Qt.ItemDataRole.ToolTipRole)
        self.label = QComboBox()
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.colormap = QComboBox()
        self.colormap.addItems(COLORMAPS)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        form = QFormLayout(self)
        form.setContentsMargins(2, 2, 2, 2)
        form.addRow(self.visible)
        form.addRow("Method", self.method)
        form.addRow("Label", self.label)
        form.addRow("Opacity", self.opacity)
        form.addRow("Colours", self.colormap)
        form.addRow(self.status)
        self.set_labels([])
        self._sync(view_model.state, set())
        view_model.observe(self._sync)
        self.visible.toggled.connect(lambda on: view_model.update(overlay_visible=on))
        self.method.currentIndexChanged.connect(lambda _i: view_model.update(overlay_method=self.method.currentData()))
        self.label.currentIndexChanged.connect(self._label_changed)
        self.opacity.valueChanged.connect(lambda v: view_model.update(overlay_opacity=v / 100))
        self.colormap.currentTextChanged.connect(lambda name: view_model.update(overlay_colormap=name))

    def set_labels(self, labels: list[str]) -> None:
        """The model's labels, after "top prediction". The state's label stays while no model is open (a saved
        setting waits for its model); a model without that label falls back to the top prediction."""
        wanted = self.view_model.state.overlay_label
        self.label.blockSignals(True)
        self.label.clear()
        self.label.addItem("top prediction", "top")
        for name in labels or ([wanted] if wanted != "top" else []):
            self.label.addItem(name, name)
        i = self.label.findData(wanted)
        self.label.setCurrentIndex(max(i, 0))
        self.label.blockSignals(False)
        if i < 0:
            self.view_model.update(overlay_label="top")

    def _label_changed(self, _index: int) -> None:
        if self.label.currentData() is not None:
            self.view_model.update(overlay_label=self.label.currentData())

    def _sync(self, state: ViewState, _changed: set[str]) -> None:
        """State -> widgets (signals blocked, so this never loops back)."""
        for widget, setter, value in ((self.visible, self.visible.setChecked, state.overlay_visible),
                                      (self.method, lambda m: self.method.setCurrentIndex(self.method.findData(m)),
                                       state.overlay_method),
                                      (self.label, lambda v: self.label.setCurrentIndex(max(0, self.label.findData(v))),
                                       state.overlay_label),
                                      (self.opacity, self.opacity.setValue, round(state.overlay_opacity * 100)),
                                      (self.colormap, self.colormap.setCurrentText, state.overlay_colormap)):
            widget.blockSignals(True)
            setter(value)
            widget.blockSignals(False)
