"""What persists between sessions (QSettings): geometry, last and recent folders, the model, the overlay."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QSettings

from .state import COLORMAPS, ViewState

RECENT = 8


def _list(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


class Preferences:
    """Typed access to a QSettings store (tests hand in an INI file in a temporary folder)."""

    def __init__(self, store: QSettings):
        self.store = store

    @property
    def folder(self) -> str | None:
        return self.store.value("folder") or None

    def remember_folder(self, folder: str) -> list[str]:
        recent = [folder] + [f for f in self.recent_folders() if f != folder]
        self.store.setValue("folder", folder)
        self.store.setValue("recent", recent[:RECENT])
        return recent[:RECENT]

    def recent_folders(self) -> list[str]:
        return _list(self.store.value("recent"))

    @property
    def model(self) -> str | None:
        return self.store.value("model") or None

    @model.setter
    def model(self, path: str) -> None:
        self.store.setValue("model", path)

    def overlay(self, state: ViewState) -> ViewState:
        """``state`` with the saved overlay settings (ignoring anything malformed)."""
        s = self.store
        try:
            opacity = min(1.0, max(0.0, float(s.value("overlay/opacity", state.overlay_opacity))))
        except (TypeError, ValueError):
            opacity = state.overlay_opacity
        colormap = str(s.value("overlay/colormap", state.overlay_colormap))
        return replace(state, overlay_visible=str(s.value("overlay/visible", state.overlay_visible)).lower() == "true",
                       overlay_method=str(s.value("overlay/method", state.overlay_method)),
                       overlay_label=str(s.value("overlay/label", state.overlay_label)),
                       overlay_opacity=opacity,
                       overlay_colormap=colormap if colormap in COLORMAPS else state.overlay_colormap)

    def save_overlay(self, state: ViewState) -> None:
        self.store.setValue("overlay/visible", state.overlay_visible)
        self.store.setValue("overlay/method", state.overlay_method)
        self.store.setValue("overlay/label", state.overlay_label)
        self.store.setValue("overlay/opacity", state.overlay_opacity)
        self.store.setValue("overlay/colormap", state.overlay_colormap)

    def save_window(self, geometry, window_state) -> None:
        self.store.setValue("geometry", geometry)
        self.store.setValue("windowState", window_state)

    def window(self):
        return self.store.value("geometry"), self.store.value("windowState")

    def sync(self) -> None:
        self.store.sync()
