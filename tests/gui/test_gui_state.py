"""The view state is plain Python that widgets observe; the orientation transform maps pixels as expected."""

from cxrinspect.gui.state import ViewModel, ViewState
from cxrinspect.imaging import Window


def test_observers_hear_only_what_changed():
    vm, heard = ViewModel(), []
    vm.observe(lambda state, changed: heard.append(changed))
    vm.update(invert=True)
    vm.update(invert=True)  # no change, no call
    vm.update(window=Window(100, 50), rotation=1)
    assert heard == [{"invert"}, {"window", "rotation"}]


def test_verbs_rotate_toggle_and_reset_keep_overlay():
    vm = ViewModel(ViewState(overlay_visible=True, overlay_opacity=0.3))
    vm.rotate(-1)
    assert vm.state.rotation == 3
    vm.rotate(+2)
    assert vm.state.rotation == 1
    vm.toggle("flip_h")
    vm.update(window=Window(10, 20), invert=True)
    vm.set(vm.state.geometry_reset())
    s = vm.state
    assert (s.window, s.invert, s.rotation, s.flip_h, s.flip_v) == (None, False, 0, False, False)
    assert s.overlay_visible and s.overlay_opacity == 0.3


def test_orientation_maps_corners(qapp):
    from PySide6.QtCore import QPointF

    from cxrinspect.gui.viewer import orientation

    rows, cols = 10, 20  # image 20 wide, 10 high
    top_left = QPointF(0, 0)
    assert orientation((rows, cols), 0, False, False).map(top_left) == QPointF(0, 0)
    # clockwise quarter turn: the top-left corner goes to the top-right of a 10-wide, 20-high picture
    assert orientation((rows, cols), 1, False, False).map(top_left) == QPointF(10, 0)
    assert orientation((rows, cols), 2, False, False).map(top_left) == QPointF(20, 10)
    assert orientation((rows, cols), 3, False, False).map(top_left) == QPointF(0, 20)
    assert orientation((rows, cols), 0, True, False).map(top_left) == QPointF(20, 0)
    assert orientation((rows, cols), 0, False, True).map(top_left) == QPointF(0, 10)


def test_overlay_methods_match_the_saliency_package():
    from cxrinspect.gui.overlay import METHODS
    from cxrinspect.saliency import METHODS as CORE

    assert sorted(METHODS) == sorted(CORE)


def test_lru_cache_evicts_by_cost():
    from cxrinspect.gui.cache import LRUCache

    c = LRUCache(10, cost=len)
    c.put("a", "xxxx")
    c.put("b", "xxxx")
    assert c.get("a") == "xxxx"  # a is now the most recent
    c.put("c", "xxxx")
    assert "b" not in c and "a" in c and "c" in c
