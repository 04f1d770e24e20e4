"""Export the view as shown to PNG; window geometry, folder, model and overlay settings persist; the entry point."""

import numpy as np
from gui_steps import WAIT_MS, load_model, open_folder
from PySide6.QtCore import QSettings
from PySide6.QtGui import QImage

from cxrinspect.gui import app


def png_pixels(path) -> np.ndarray:
    image = QImage(str(path)).convertToFormat(QImage.Format.Format_RGB888)
    ptr = image.constBits()
    return np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine())[:, :image.width() * 3] \
        .reshape(image.height(), image.width(), 3).copy()


def test_export_view_with_overlay_and_colour_bar(qtbot, window, image_folder, tiny_model_dir, tmp_path):
    window.view_model.update(overlay_visible=True, overlay_method="cam", overlay_colormap="viridis")
    load_model(qtbot, window, tiny_model_dir)
    with qtbot.waitSignal(window.overlay_shown, timeout=WAIT_MS):
        open_folder(qtbot, window, image_folder)
    out = tmp_path / "view.png"
    assert window.export_view(str(out))
    rgb = png_pixels(out)
    viewer = window.viewer
    ratio = viewer.devicePixelRatioF()
    assert rgb.shape[:2] == (round(viewer.height() * ratio), round(viewer.width() * ratio))
    assert rgb.std() > 10  # an image, not a blank
    colourful = np.abs(rgb[..., 0].astype(int) - rgb[..., 2].astype(int)) > 40
    assert colourful.mean() > 0.01  # the overlay / colour bar are in the picture, not only grey
    # without the overlay the picture is grey (the colour came from the overlay)
    window.view_model.update(overlay_visible=False)
    assert window.export_view(str(tmp_path / "plain.png"))
    plain = png_pixels(tmp_path / "plain.png")
    assert (np.abs(plain[..., 0].astype(int) - plain[..., 2].astype(int)) > 40).mean() < colourful.mean() / 5


def test_settings_persist_between_sessions(qtbot, make_window, image_folder, tiny_model_dir, tmp_path):
    store = QSettings(str(tmp_path / "persist.ini"), QSettings.Format.IniFormat)
    first = make_window(store)
    first.resize(900, 650)
    load_model(qtbot, first, tiny_model_dir)
    open_folder(qtbot, first, image_folder)
    first.view_model.update(overlay_method="gradient", overlay_opacity=0.7, overlay_label="Viral",
                            overlay_colormap="magma")
    first.close()

    store = QSettings(str(tmp_path / "persist.ini"), QSettings.Format.IniFormat)
    second = make_window(store)
    s = second.view_model.state
    assert (s.overlay_method, s.overlay_opacity, s.overlay_label, s.overlay_colormap) == ("gradient", 0.7, "Viral",
                                                                                           "magma")
    assert second.prefs.folder == str(image_folder)
    assert second.prefs.model == str(tiny_model_dir.resolve())
    assert [a.text() for a in second.recent_menu.actions()] == [str(image_folder)]
    assert second.prefs.window()[0] is not None  # geometry saved (restored by restoreGeometry)
    # the entry point's choices: the remembered folder and model, unless the command line names others
    assert app.initial_folder(None, second.prefs.folder) == str(image_folder)
    assert app.initial_model(None, second.prefs.model) == str(tiny_model_dir.resolve())


def test_entry_point_choices(tmp_path):
    assert app.initial_folder(None, None) == str(app.SAMPLES)
    assert app.initial_folder(None, str(tmp_path / "gone")) == str(app.SAMPLES)
    assert app.initial_folder(str(tmp_path), "/elsewhere") == str(tmp_path)
    bundled = app.default_model()
    assert bundled and (app.RESOURCES / "models") in __import__("pathlib").Path(bundled).parents
    assert app.initial_model(None, str(tmp_path / "gone")) == bundled
    args = app.parse(["folder", "--model", "m"])
    assert (args.folder, args.model) == ("folder", "m")
    assert app.main([str(tmp_path / "missing")]) == 2


def test_build_window_from_the_command_line(qtbot, image_folder, tiny_model_dir, settings):
    window = app.build_window(app.parse([str(image_folder), "--model", str(tiny_model_dir)]), settings)
    try:
        window.show()
        qtbot.waitUntil(lambda: window.predict_panel.bars.rows != [], timeout=WAIT_MS)  # a prediction right away
        assert window.current.endswith("a-normal.jpeg")
    finally:
        window.close()
    assert not window.workers.busy()


def test_module_entry_point_help():
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "cxrinspect.gui", "--help"], check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "--model" in run.stdout and "FOLDER" in run.stdout.upper()
