"""The view state: plain Python (no Qt) that widgets observe. The Qt layer draws it, it does not own it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

from ..imaging import Window

COLORMAPS = ("inferno", "viridis", "magma", "plasma", "CET-L17", "turbo")


@dataclass(frozen=True)
class ViewState:
    """What the viewer shows, independent of any widget.

    - ``window``: the user's VOI window in modality values; None = the file's default presentation
      (window tags or VOI LUT).
    - ``invert``: the user's own inversion, on top of the file's (MONOCHROME1 is handled by the file).
    - ``rotation``: quarter turns clockwise (0..3); ``flip_h`` / ``flip_v``: mirror left-right / top-bottom,
      applied after the rotation, as seen on screen.
    - ``overlay_*``: the saliency overlay: shown or not, method, label ("top" = the top prediction),
      opacity in [0, 1], colour map name.
    """

    window: Window | None = None
    invert: bool = False
    rotation: int = 0
    flip_h: bool = False
    flip_v: bool = False
    overlay_visible: bool = False
    overlay_method: str = "cam"
    overlay_label: str = "top"
    overlay_opacity: float = 0.5
    overlay_colormap: str = "inferno"

    def geometry_reset(self) -> ViewState:
        """Space: the file's window, no rotation or flip (the overlay settings stay)."""
        return replace(self, window=None, invert=False, rotation=0, flip_h=False, flip_v=False)


@dataclass
class ViewModel:
    """Holds the current :class:`ViewState` and tells observers what changed."""

    state: ViewState = field(default_factory=ViewState)
    _observers: list[Callable[[ViewState, set[str]], None]] = field(default_factory=list, repr=False)

    def observe(self, callback: Callable[[ViewState, set[str]], None]) -> None:
        """``callback(state, changed_field_names)`` after every change."""
        self._observers.append(callback)

    def set(self, state: ViewState) -> None:
        changed = {f.name for f in fields(ViewState) if getattr(state, f.name) != getattr(self.state, f.name)}
        if not changed:
            return
        self.state = state
        for callback in list(self._observers):
            callback(state, changed)

    def update(self, **changes) -> None:
        self.set(replace(self.state, **changes))

    # the viewer's verbs, so keys, menus and tests share one meaning
    def rotate(self, quarter_turns: int) -> None:
        self.update(rotation=(self.state.rotation + quarter_turns) % 4)

    def toggle(self, name: str) -> None:
        self.update(**{name: not getattr(self.state, name)})
