"""GUI test fixtures: settings and caches in temporary folders, a small folder with a bad file, a main window
that is closed after the test with its worker pool checked idle, and no window left behind."""

from __future__ import annotations

import os
import shutil

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MPLBACKEND", "Agg")

@pytest.fixture(autouse=True)
def private_settings(tmp_path, monkeypatch, qapp):
    """QSettings never touches ~/.config; the ONNX cache lives in tmp_path."""
    from PySide6.QtCore import QSettings

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "qsettings"))
    monkeypatch.setenv("CXRINSPECT_CACHE", str(tmp_path / "cache"))
    yield


@pytest.fixture
def settings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "cxrinspect.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def image_folder(tmp_path, fixtures_dir):
    """Four real radiographs (JPEG, DICOM, MONOCHROME1 DICOM without an extension), a corrupt DICOM and a text file."""
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(fixtures_dir / "images" / "IM-0001-0001.jpeg", folder / "a-normal.jpeg")
    shutil.copy(fixtures_dir / "images" / "person1000_virus_1681.jpeg", folder / "b-virus.jpeg")
    shutil.copy(fixtures_dir / "dicom" / "cr_chest_jpeg_baseline.dcm", folder / "c-chest.dcm")
    shutil.copy(fixtures_dir / "dicom" / "cr_chest_monochrome1.dcm", folder / "d-monochrome1")  # DICOM by content
    (folder / "e-corrupt.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage" * 10)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def make_window(qtbot, settings):
    """MainWindow factory; every window is closed at teardown, its pool must then be idle."""
    from PySide6.QtWidgets import QApplication

    from cxrinspect.gui.window import MainWindow

    made = []

    def make(store=None):
        w = MainWindow(store if store is not None else settings)
        w.resize(1000, 700)
        made.append(w)
        w.show()
        qtbot.waitExposed(w)
        return w

    yield make
    for w in made:
        w.close()
        assert not w.workers.busy(), "worker threads still running after the window closed"
        assert not any(t.is_alive() for t in w.workers._threads), "worker threads left running"
        w.deleteLater()
    QApplication.processEvents()
    leaked = [t for t in QApplication.topLevelWidgets() if t.isVisible()]
    assert not leaked, f"windows left open: {leaked}"


@pytest.fixture
def window(make_window):
    return make_window()

