"""The keyboard shortcuts (one table: the window makes its actions from it, the Help dialog lists it)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

SHORTCUTS = [
    # (action name, keys, what it does)
    ("open_folder", ["Ctrl+O"], "Open a folder of radiographs"),
    ("export_view", ["Ctrl+E"], "Export the view as shown (overlay, colour bar) to PNG"),
    ("next_image", ["Down", "Right"], "Next image"),
    ("previous_image", ["Up", "Left"], "Previous image"),
    ("fit", ["="], "Fit the image to the window"),
    ("actual_size", ["0"], "1:1 (one image pixel per screen pixel)"),
    ("zoom_in", ["+"], "Zoom in (the wheel zooms about the cursor)"),
    ("zoom_out", ["-"], "Zoom out"),
    ("invert", ["I"], "Invert grey levels"),
    ("rotate_right", ["R"], "Rotate 90° clockwise"),
    ("rotate_left", ["L"], "Rotate 90° counter-clockwise"),
    ("flip_h", ["H"], "Flip left-right"),
    ("flip_v", ["V"], "Flip top-bottom"),
    ("preset_1", ["1"], "Window: the file's default (DICOM window / VOI LUT)"),
    ("preset_2", ["2"], "Window: 1st–99th percentile"),
    ("preset_3", ["3"], "Window: full range"),
    ("preset_4", ["4"], "Window: high contrast (20th–80th percentile)"),
    ("auto_window", ["A"], "Auto window: DICOM tags, else 1st–99th percentile"),
    ("reset", ["Space"], "Reset window, rotation, flips and invert; fit"),
    ("toggle_overlay", ["O"], "Show/hide the saliency overlay"),
    ("filter", ["Ctrl+F"], "Filter the file list by name"),
    ("help", ["F1", "?"], "This list"),
    ("quit", ["Ctrl+Q"], "Quit"),
]
MOUSE = [
    ("Left drag", "Pan"),
    ("Right or middle drag", "Window (left-right = width) and level (up-down = centre)"),
    ("Wheel", "Zoom about the cursor"),
    ("Hover", "Pixel readout in the status bar: position and stored (modality) value"),
]


class HelpDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("cxrinspect: keys and mouse")
        rows = [(", ".join(keys), text) for _, keys, text in SHORTCUTS] + MOUSE
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["Key / mouse", "Does"])
        for r, (key, text) in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(key))
            self.table.setItem(r, 1, QTableWidgetItem(text))
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(560, 640)
