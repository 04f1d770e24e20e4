"""The radiograph viewer: full-depth pixels, window/level by drag, zoom, pan, rotate, flip, overlay.

pyqtgraph fast path: the ImageItem gets the raw modality values (row-major, uint16 or float32) with
explicit levels = the window's low/high, and inversion is a reversed 256-entry grey LUT, so dragging
the window changes two numbers, never the pixels. A file whose default presentation is a VOI LUT is
shown through that LUT (computed once) until the user picks a window. Rotation and flips are a
transform of the image item; the overlay and the hotspot are its children, so they follow, and
mapping the cursor back through the item gives source pixel coordinates whatever the orientation.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPen, QTransform
from PySide6.QtWidgets import QGraphicsRectItem

from ..imaging import Radiograph, Window
from ..imaging.display import apply_voi_lut
from .state import ViewModel, ViewState

GREY = np.arange(256, dtype=np.uint8)
GREY_INVERTED = GREY[::-1].copy()


def overlay_lut(colormap: str) -> np.ndarray:
    """256 RGBA entries: the colour map with alpha rising over the lowest quarter, so faint saliency is clear."""
    rgba = pg.colormap.get(colormap).getLookupTable(0.0, 1.0, 256, alpha=True).astype(np.uint8)
    rgba[:, 3] = np.clip(np.linspace(0, 4, 256), 0, 1) * 255
    return rgba


def orientation(shape: tuple[int, int], rotation: int, flip_h: bool, flip_v: bool) -> QTransform:
    """Image coordinates (x = column, y = row) -> view coordinates: rotated clockwise ``rotation`` quarter turns,
    then mirrored as seen on screen; the result again starts at (0, 0)."""
    rows, cols = shape
    turned = (rows, cols) if rotation % 2 else (cols, rows)  # (width, height) on screen
    return (QTransform.fromTranslate(-cols / 2, -rows / 2) * QTransform().rotate(90 * (rotation % 4))
            * QTransform.fromScale(-1 if flip_h else 1, -1 if flip_v else 1)
            * QTransform.fromTranslate(turned[0] / 2, turned[1] / 2))


class _Downsamples:
    """pyqtgraph.functions, but ``downsample`` remembers its results for the image shown (see RadiographItem)."""

    def __init__(self, functions):
        self._functions = functions
        self.cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self.computed = 0

    def __getattr__(self, name):
        return getattr(self._functions, name)

    def downsample(self, data, n, axis=0, **options):
        key = (id(data), n, axis)
        hit = self.cache.get(key)
        if hit is not None and hit[0] is data:
            return hit[1]
        out = self._functions.downsample(data, n, axis=axis, **options)
        self.computed += 1
        self.cache[key] = (data, out)  # holding ``data`` keeps its id from being reused
        return out


class RadiographItem(pg.ImageItem):
    """An ImageItem whose auto-downsampled copy is computed once per zoom level, not on every render.

    pyqtgraph recomputes the (mean) downsampling of the whole image on each render, so every window/level
    step on a 2000x2000 image paid ~190 ms for it on the busy 2-core machine against ~12 ms for the LUT
    itself. Rendering swaps in a caching stand-in for pyqtgraph.functions for the duration of the call.
    """

    def __init__(self, **options):
        super().__init__(**options)
        self.downsamples = _Downsamples(pg.functions)

    def setImage(self, image=None, autoLevels=None, **options):
        if image is not None and image is not self.image:
            self.downsamples.cache.clear()
        super().setImage(image, autoLevels=autoLevels, **options)

    def clear(self):
        self.downsamples.cache.clear()
        super().clear()

    def render(self):
        module = sys.modules[pg.ImageItem.__module__]
        real = module.fn
        module.fn = self.downsamples
        try:
            super().render()
        finally:
            module.fn = real


class WindowLevelViewBox(pg.ViewBox):
    """Left drag pans, wheel zooms to the cursor, right or middle drag sets window (x) and level (y)."""

    def __init__(self, on_window_drag):
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self._on_window_drag = on_window_drag

    def mouseDragEvent(self, ev, axis=None):
        if ev.button() in (Qt.MouseButton.RightButton, Qt.MouseButton.MiddleButton):
            ev.accept()
            delta = ev.screenPos() - ev.buttonDownScreenPos()
            self._on_window_drag(delta.x(), delta.y(), ev.isStart(), ev.isFinish())
        else:
            super().mouseDragEvent(ev, axis)


class RadiographView(pg.GraphicsLayoutWidget):
    """Draws one Radiograph as the :class:`ViewState` says; reports the pixel under the cursor."""

    pixel_readout = Signal(str)

    def __init__(self, view_model: ViewModel, parent=None):
        super().__init__(parent)
        self.setBackground("k")
        self.view_model = view_model
        self.radiograph: Radiograph | None = None
        self._voi_view: np.ndarray | None = None
        self._drag_start: Window | None = None
        self._overlay_map: np.ndarray | None = None
        self._shown_data: np.ndarray | None = None

        self.view_box = WindowLevelViewBox(self._window_drag)
        self.addItem(self.view_box, row=0, col=0)
        self.image = RadiographItem(axisOrder="row-major", autoDownsample=True)
        self.view_box.addItem(self.image)
        self.overlay = pg.ImageItem(axisOrder="row-major", autoDownsample=True)
        self.overlay.setParentItem(self.image)
        self.overlay.setVisible(False)
        self.hotspot = QGraphicsRectItem()
        self.hotspot.setParentItem(self.image)
        pen = QPen(QColor(0, 255, 120))
        pen.setCosmetic(True)
        pen.setWidth(2)
        self.hotspot.setPen(pen)
        self.hotspot.setVisible(False)
        self.message = pg.TextItem("", color=(230, 230, 230), anchor=(0.5, 0.5))
        self.view_box.addItem(self.message, ignoreBounds=True)
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=pg.colormap.get(view_model.state.overlay_colormap),
                                        interactive=False, width=15)
        self.colorbar.setToolTip("saliency, relative to the map's own 99.5th percentile (as cxrinspect render)")
        self.addItem(self.colorbar, row=0, col=1)
        self.colorbar.setVisible(False)

        self.scene().sigMouseMoved.connect(self._hover)
        view_model.observe(self._state_changed)

    # ------------------------------------------------------------------ showing
    def show_radiograph(self, radiograph: Radiograph | None, message: str = "") -> None:
        """Show an image (or only ``message``, e.g. why a file could not be read). Fits it to the view."""
        self.radiograph = radiograph
        self._voi_view = None
        self._overlay_map = None
        self.overlay.clear()
        self.overlay.setVisible(False)
        self.colorbar.setVisible(False)
        self.hotspot.setVisible(False)
        self.message.setText(message)
        if radiograph is None:
            self._shown_data = None
            self.image.clear()
            self.message.setPos(0, 0)
            self.view_box.setRange(QRectF(-1, -1, 2, 2), padding=0)
            return
        self._draw_image(self.view_model.state, force=True)
        self._draw_orientation(self.view_model.state)
        self.fit()

    def effective_window(self) -> Window:
        """The window now applied: the user's, else the file's default (the VOI LUT's input range for a LUT)."""
        return self.view_model.state.window or self.radiograph.window

    def _draw_image(self, state: ViewState, force: bool = False) -> None:
        rg = self.radiograph
        if rg is None:
            return
        if state.window is None and rg.voi_lut is not None:
            if self._voi_view is None:
                self._voi_view = apply_voi_lut(rg.pixels, rg.voi_lut)
            data, levels = self._voi_view, (0.0, 1.0)
        else:
            data, w = rg.pixels, state.window or rg.window
            levels = (w.low, max(w.high, w.low + 1e-3))
        lut = GREY_INVERTED if rg.inverted != state.invert else GREY
        if force or self._shown_data is not data:  # (pyqtgraph may keep its own view of the array)
            self._shown_data = data
            self.image.setImage(data, levels=levels, lut=lut, autoLevels=False)
        else:
            self.image.setLevels(levels)
            self.image.setLookupTable(lut)

    def _draw_orientation(self, state: ViewState) -> None:
        if self.radiograph is not None:
            self.image.setTransform(orientation(self.radiograph.shape, state.rotation, state.flip_h, state.flip_v))

    def set_overlay(self, unit_map: np.ndarray | None) -> None:
        """A saliency display map on the image's grid, in [0, 1] (:func:`cxrinspect.saliency.overlay.display_map`:
        made in the worker, so the UI thread only draws it), or None to clear the overlay."""
        if unit_map is None or self.radiograph is None:
            self._overlay_map = None
            self.overlay.clear()
        else:
            self._overlay_map = np.ascontiguousarray(unit_map, dtype=np.float32)
            self.overlay.setImage(self._overlay_map, levels=(0.0, 1.0), autoLevels=False)
        self._draw_overlay(self.view_model.state)

    def _draw_overlay(self, state: ViewState) -> None:
        shown = state.overlay_visible and self._overlay_map is not None
        self.overlay.setLookupTable(overlay_lut(state.overlay_colormap))
        self.overlay.setOpacity(state.overlay_opacity)
        self.overlay.setVisible(shown)
        self.colorbar.setColorMap(pg.colormap.get(state.overlay_colormap))
        self.colorbar.setVisible(shown)

    def set_hotspot(self, box: tuple[int, int, int, int] | None) -> None:
        """Outline (top, left, bottom, right) in source pixels, or hide it."""
        if box is None:
            self.hotspot.setVisible(False)
            return
        top, left, bottom, right = box
        self.hotspot.setRect(QRectF(left, top, max(1, right - left), max(1, bottom - top)))
        self.hotspot.setVisible(True)

    def _state_changed(self, state: ViewState, changed: set[str]) -> None:
        if changed & {"window", "invert"}:
            self._draw_image(state)
        if changed & {"rotation", "flip_h", "flip_v"}:
            self._draw_orientation(state)
            if "rotation" in changed:
                self.fit()
        if {c for c in changed if c.startswith("overlay_")}:
            self._draw_overlay(state)

    # ------------------------------------------------------------------ navigation
    def fit(self) -> None:
        if self.radiograph is not None:
            self.view_box.autoRange(padding=0.01)

    def actual_size(self) -> None:
        """1:1: one image pixel per screen pixel, about the current centre."""
        if self.radiograph is None:
            return
        center = self.view_box.viewRect().center()
        w, h = self.view_box.width(), self.view_box.height()
        self.view_box.setRange(QRectF(center.x() - w / 2, center.y() - h / 2, w, h), padding=0)

    def zoom(self, factor: float) -> None:
        self.view_box.scaleBy((1 / factor, 1 / factor))

    # ------------------------------------------------------------------ interaction
    def _window_drag(self, dx: float, dy: float, start: bool, finish: bool) -> None:
        """Drag right widens the window, drag down raises the level (darker), as in OHIF/Weasis."""
        if self.radiograph is None:
            return
        if start or self._drag_start is None:
            self._drag_start = self.effective_window()
        w0 = self._drag_start
        lo, hi = float(self.radiograph.window.low), float(self.radiograph.window.high)
        step = max(hi - lo, 1.0) / 400.0  # a 400-pixel drag spans the default window
        self.view_model.update(window=Window(w0.center + dy * step, max(1.0, w0.width + dx * step)))
        if finish:
            self._drag_start = None

    def pixel_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        """(row, column) of the source pixel under a scene position, or None outside the image."""
        if self.radiograph is None:
            return None
        p = self.image.mapFromScene(scene_pos)
        row, col = math.floor(p.y()), math.floor(p.x())
        rows, cols = self.radiograph.shape
        return (row, col) if 0 <= row < rows and 0 <= col < cols else None

    def _hover(self, scene_pos) -> None:
        at = self.pixel_at(scene_pos)
        if at is None:
            self.pixel_readout.emit("")
            return
        row, col = at
        value = self.radiograph.pixels[row, col]
        text = f"x {col}  y {row}  value {value:g}"
        if self.overlay.isVisible() and self._overlay_map is not None:
            text += f"  saliency {self._overlay_map[row, col]:.2f}"
        self.pixel_readout.emit(text)

    def export_png(self, path: str) -> bool:
        """The view as shown (image, overlay, hotspot, colour bar) to a PNG file."""
        return self.grab().save(str(path), "PNG")
