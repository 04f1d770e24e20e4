"""View: keys step and transform, right-drag windows, presets, readout, MONOCHROME1 drawn as render() draws it,
the cache makes a seen image instant, the tag panel hides identity, the Help dialog lists every key."""

import numpy as np
import pyqtgraph as pg
from gui_steps import WAIT_MS, open_folder
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from cxrinspect.gui.help import SHORTCUTS, HelpDialog
from cxrinspect.gui.tags import HIDDEN
from cxrinspect.imaging import Window, load, render


def shown_grey(viewer) -> np.ndarray:
    """The 8-bit grey the image item draws (its data through its levels and LUT), as pyqtgraph computes it."""
    item = viewer.image
    argb, _ = pg.functions.makeARGB(item.image, lut=item.lut, levels=item.levels)
    return argb[..., 0]


def step(qtbot, window, key):
    with qtbot.waitSignal(window.image_shown, timeout=WAIT_MS):
        qtbot.keyClick(window, key)
    return window.radiograph.name


def test_arrow_keys_step_and_a_seen_image_is_instant(qtbot, window, image_folder):
    open_folder(qtbot, window, image_folder)
    assert step(qtbot, window, Qt.Key.Key_Down) == "b-virus.jpeg"
    assert step(qtbot, window, Qt.Key.Key_Right) == "c-chest.dcm"
    assert "c-chest.dcm (3/5)" in window.windowTitle()
    # back to a decoded image: shown before the event loop runs again (served from the LRU cache)
    qtbot.keyClick(window, Qt.Key.Key_Up)
    assert window.radiograph.name == "b-virus.jpeg"
    assert window.viewer.radiograph is window.radiograph


def test_invert_rotate_flip_and_reset_keys(qtbot, window, image_folder):
    open_folder(qtbot, window, image_folder)
    before = shown_grey(window.viewer).copy()
    qtbot.keyClick(window, Qt.Key.Key_I)
    assert window.view_model.state.invert
    assert np.abs(shown_grey(window.viewer).astype(int) - (255 - before.astype(int))).max() <= 1
    qtbot.keyClick(window, Qt.Key.Key_R)
    qtbot.keyClick(window, Qt.Key.Key_R)
    qtbot.keyClick(window, Qt.Key.Key_L)
    assert window.view_model.state.rotation == 1
    qtbot.keyClick(window, Qt.Key.Key_H)
    qtbot.keyClick(window, Qt.Key.Key_V)
    s = window.view_model.state
    assert s.flip_h and s.flip_v
    rows, cols = window.radiograph.shape
    box = window.viewer.image.mapRectToParent(window.viewer.image.boundingRect())
    assert (round(box.width()), round(box.height())) == (rows, cols)  # turned a quarter
    qtbot.keyClick(window, Qt.Key.Key_Space)
    s = window.view_model.state
    assert (s.window, s.invert, s.rotation, s.flip_h, s.flip_v) == (None, False, 0, False, False)
    assert window.viewer.image.transform().isIdentity()


def test_right_drag_changes_window_and_presets(qtbot, window, image_folder):
    open_folder(qtbot, window, image_folder)
    viewer = window.viewer
    start = viewer.effective_window()
    port = viewer.viewport()
    centre = port.rect().center()
    QApplication.processEvents()

    def send(kind, pos, button, buttons):
        QApplication.sendEvent(port, QMouseEvent(kind, QPointF(pos), QPointF(port.mapToGlobal(pos)), button, buttons,
                                                 Qt.KeyboardModifier.NoModifier))

    right = Qt.MouseButton.RightButton
    send(QMouseEvent.Type.MouseButtonPress, centre, right, right)
    for i in range(1, 11):
        send(QMouseEvent.Type.MouseMove, centre + QPoint(8 * i, 4 * i), Qt.MouseButton.NoButton, right)
    send(QMouseEvent.Type.MouseButtonRelease, centre + QPoint(80, 40), right, Qt.MouseButton.NoButton)
    after = viewer.effective_window()
    assert after.width > start.width and after.center > start.center  # right = wider, down = higher level
    assert window.view_model.state.window == after
    assert tuple(viewer.image.levels) == (after.low, after.high)

    qtbot.keyClick(window, Qt.Key.Key_3)  # full range
    px = window.radiograph.pixels
    assert window.view_model.state.window == Window.from_range(float(px.min()), float(px.max()))
    qtbot.keyClick(window, Qt.Key.Key_2)
    w2 = window.view_model.state.window
    assert px.min() <= w2.low < w2.high <= px.max()
    qtbot.keyClick(window, Qt.Key.Key_1)
    assert window.view_model.state.window is None
    qtbot.keyClick(window, Qt.Key.Key_A)  # a JPEG has no tags: percentiles
    assert window.view_model.state.window == w2


def test_monochrome1_is_drawn_as_render_draws_it(qtbot, window, image_folder):
    open_folder(qtbot, window, image_folder)
    with qtbot.waitSignal(window.image_shown, timeout=WAIT_MS):
        window.browser.select(str(image_folder / "d-monochrome1"))
    rg = window.radiograph
    assert rg.inverted  # MONOCHROME1: one inversion, by the file
    assert np.abs(shown_grey(window.viewer).astype(int) - render(rg).astype(int)).max() <= 1
    user = Window(float(np.median(rg.pixels)), float(np.ptp(rg.pixels)) / 3)
    window.view_model.update(window=user, invert=True)
    assert np.abs(shown_grey(window.viewer).astype(int) - render(rg, user, invert=True).astype(int)).max() <= 1


def test_voi_lut_file_is_drawn_as_render_draws_it(qtbot, window, tmp_path, fixtures_dir):
    """A file whose default VOI is a LUT: the viewer shows the LUT's output until the user picks a window."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(fixtures_dir / "dicom" / "rg1_small_uncompressed.dcm")
    del ds.WindowCenter, ds.WindowWidth
    ds.PhotometricInterpretation = "MONOCHROME1"  # and inverted after the LUT, once
    ds.PixelRepresentation = 0
    first, n = 500, 30000
    table = np.rint(4095 * np.sqrt(np.linspace(0, 1, n))).astype(np.uint16)
    item = Dataset()
    item.LUTDescriptor = [n, first, 12]
    item.add_new(0x00283006, "US", [int(v) for v in table])
    ds.VOILUTSequence = Sequence([item])
    folder = tmp_path / "voi"
    folder.mkdir()
    ds.save_as(folder / "voi.dcm")
    rg = load(folder / "voi.dcm")
    assert rg.voi_lut is not None and rg.inverted
    open_folder(qtbot, window, folder)
    assert np.abs(shown_grey(window.viewer).astype(int) - render(rg).astype(int)).max() <= 1
    user = Window(15000, 30000)
    window.view_model.update(window=user)
    assert np.abs(shown_grey(window.viewer).astype(int) - render(rg, user).astype(int)).max() <= 1


def test_pixel_readout(qtbot, window, image_folder):
    open_folder(qtbot, window, image_folder)
    viewer = window.viewer
    rows, cols = window.radiograph.shape
    scene_pos = viewer.image.mapToScene(QPointF(cols // 2 + 0.5, rows // 3 + 0.5))
    assert viewer.pixel_at(scene_pos) == (rows // 3, cols // 2)
    viewer._hover(scene_pos)
    value = window.radiograph.pixels[rows // 3, cols // 2]
    assert window.readout.text() == f"x {cols // 2}  y {rows // 3}  value {value:g}"
    window.view_model.rotate(1)  # the readout follows the image through a rotation
    scene_pos = viewer.image.mapToScene(QPointF(5.5, 7.5))
    assert viewer.pixel_at(scene_pos) == (7, 5)


def test_zoom_fit_and_one_to_one(qtbot, window, image_folder):
    open_folder(qtbot, window, image_folder)
    vb = window.viewer.view_box
    fitted = vb.viewRect()
    qtbot.keyClick(window, Qt.Key.Key_Plus)
    assert vb.viewRect().width() < fitted.width()
    qtbot.keyClick(window, Qt.Key.Key_0)
    assert abs(vb.viewRect().width() - vb.width()) < 2  # one image pixel per screen pixel
    qtbot.keyClick(window, Qt.Key.Key_Equal)
    assert abs(vb.viewRect().width() - fitted.width()) < 1


def test_tags_hide_identity_until_revealed(qtbot, window, image_folder):
    open_folder(qtbot, window, image_folder)
    with qtbot.waitSignal(window.image_shown, timeout=WAIT_MS):
        window.browser.select(str(image_folder / "c-chest.dcm"))
    tags = window.tag_panel
    name = str(window.radiograph.header.PatientName)
    assert name and window.radiograph.identity

    def texts():
        out = []

        def walk(item):
            out.extend(item.text(c) for c in range(3))
            for i in range(item.childCount()):
                walk(item.child(i))

        for i in range(tags.tree.topLevelItemCount()):
            walk(tags.tree.topLevelItem(i))
        return out

    assert name not in texts() and HIDDEN in texts()
    qtbot.keyClicks(tags.search, "Modality")
    visible = [tags.tree.topLevelItem(i) for i in range(tags.tree.topLevelItemCount())
               if not tags.tree.topLevelItem(i).isHidden()]
    assert visible and any("Modality" in it.text(1) for it in visible)
    tags.search.clear()
    tags.reveal.setChecked(True)
    assert name in texts()
    tags.reveal.setChecked(False)
    assert name not in texts()


def test_help_lists_every_shortcut(qtbot, window):
    dialog = HelpDialog(window)
    qtbot.addWidget(dialog)
    keys = [dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount())]
    for _, shortcut_keys, _ in SHORTCUTS:
        assert ", ".join(shortcut_keys) in keys
    for name, shortcut_keys, _ in SHORTCUTS:  # and the window really binds them
        bound = [s.toString() for s in window.actions[name].shortcuts()]
        assert len(bound) == len(shortcut_keys)


def test_large_16_bit_image_windows_without_redoing_the_downsampling(qtbot, window):
    """2000x2000 16-bit: the auto-downsampled copy is made once per zoom level, not on every window step."""
    from cxrinspect.imaging import Radiograph

    rng = np.random.default_rng(0)
    pixels = (rng.random((2000, 2000)) * 4095).astype(np.uint16)
    rg = Radiograph(path="big", pixels=pixels, window=Window(2048, 4096), format="test")
    viewer = window.viewer
    viewer.show_radiograph(rg)
    viewer.grab()
    made = viewer.image.downsamples.computed
    assert viewer.image._lastDownsample != (1, 1)  # a 2000 px image in a smaller view is downsampled
    for i in range(10):
        window.view_model.update(window=Window(1000 + 20 * i, 1500 + 10 * i))
        viewer.grab()
    assert viewer.image.downsamples.computed == made
    w = window.view_model.state.window
    assert tuple(viewer.image.levels) == (w.low, w.high)
