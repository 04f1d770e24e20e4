"""Explain: the overlay computed in a worker, toggled with O, cached per image/method/label; colour bar shown."""

import numpy as np
from gui_steps import WAIT_MS, load_model, open_folder
from PySide6.QtCore import Qt


def test_overlay_toggle_compute_and_cache(qtbot, window, image_folder, tiny_model_dir):
    load_model(qtbot, window, tiny_model_dir)
    open_folder(qtbot, window, image_folder)
    viewer, panel = window.viewer, window.overlay_panel
    assert not viewer.overlay.isVisible() and not viewer.colorbar.isVisible()
    assert [panel.label.itemData(i) for i in range(panel.label.count())] == ["top", "Pneumonia", "Bacterial", "Viral"]
    panel.method.setCurrentIndex(panel.method.findData("gradient"))
    with qtbot.waitSignal(window.overlay_shown, timeout=WAIT_MS):
        qtbot.keyClick(window, Qt.Key.Key_O)
    assert panel.visible.isChecked()
    assert viewer.overlay.isVisible() and viewer.colorbar.isVisible()
    assert viewer.overlay.image.shape == window.radiograph.shape
    assert 0 <= viewer.overlay.image.min() and viewer.overlay.image.max() <= 1 and viewer.overlay.image.max() > 0
    key = (str(tiny_model_dir.resolve()), window.current, "gradient", "top")
    assert key in window.overlays
    assert "gradient saliency of" in panel.status.text()

    panel.opacity.setValue(80)
    assert window.view_model.state.overlay_opacity == 0.8 and abs(viewer.overlay.opacity() - 0.8) < 1e-6
    panel.colormap.setCurrentText("viridis")
    assert window.view_model.state.overlay_colormap == "viridis"

    with qtbot.waitSignal(window.overlay_shown, timeout=WAIT_MS):  # another label: computed again
        panel.label.setCurrentIndex(panel.label.findData("Viral"))
    assert (key[0], key[1], "gradient", "Viral") in window.overlays

    qtbot.keyClick(window, Qt.Key.Key_O)
    assert not viewer.overlay.isVisible() and not viewer.colorbar.isVisible()
    # on again: straight from the cache, no worker
    panel.label.setCurrentIndex(panel.label.findData("top"))
    qtbot.keyClick(window, Qt.Key.Key_O)
    assert viewer.overlay.isVisible() and not window.workers.busy()
    np.testing.assert_array_equal(viewer.overlay.image, viewer._overlay_map)


def test_overlay_follows_the_image(qtbot, window, image_folder, tiny_model_dir):
    window.view_model.update(overlay_visible=True, overlay_method="cam")
    load_model(qtbot, window, tiny_model_dir)
    with qtbot.waitSignal(window.overlay_shown, timeout=WAIT_MS):
        open_folder(qtbot, window, image_folder)
    first = window.current
    with qtbot.waitSignal(window.overlay_shown, timeout=WAIT_MS) as shown:
        qtbot.keyClick(window, Qt.Key.Key_Down)
    assert shown.args == [window.current] and window.current != first
    assert window.viewer.overlay.image.shape == window.radiograph.shape
