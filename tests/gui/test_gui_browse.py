"""Browse: open a folder, DICOM found by content, thumbnails off the UI thread, bad files marked, filter, recents."""

import os

from gui_steps import WAIT_MS, open_folder, wait_thumbnails
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent

from cxrinspect.gui.browser import ERROR_ROLE


def test_open_folder_lists_images_and_marks_the_bad_one(qtbot, window, image_folder):
    open_folder(qtbot, window, image_folder)
    names = [os.path.basename(p) for p in window.browser.paths()]
    assert names == ["a-normal.jpeg", "b-virus.jpeg", "c-chest.dcm", "d-monochrome1", "e-corrupt.dcm"]  # no notes.txt
    assert window.radiograph.name == "a-normal.jpeg"
    wait_thumbnails(qtbot, window)
    bad = str(image_folder / "e-corrupt.dcm")
    reason = window.browser.error_of(bad)
    assert reason, "the corrupt file carries its reason"
    good = [p for p in window.browser.paths() if p != bad]
    assert all(window.browser.error_of(p) is None for p in good)
    item = window.browser._items[bad]
    assert "cannot be read" in item.toolTip() and item.data(ERROR_ROLE) == reason
    assert all(not window.browser._items[p].icon().isNull() for p in good)


def test_selecting_a_bad_file_shows_the_reason_without_a_dialog(qtbot, window, image_folder):
    from PySide6.QtWidgets import QApplication

    open_folder(qtbot, window, image_folder)
    bad = str(image_folder / "e-corrupt.dcm")
    with qtbot.waitSignal(window.image_failed, timeout=WAIT_MS) as failed:
        window.browser.select(bad)
    assert failed.args[0] == bad
    assert window.radiograph is None
    assert "cannot be read" in window.viewer.message.textItem.toPlainText()
    assert QApplication.activeModalWidget() is None
    # stepping on works
    with qtbot.waitSignal(window.image_shown, timeout=WAIT_MS):
        qtbot.keyClick(window, Qt.Key.Key_Up)
    assert window.radiograph.name == "d-monochrome1"


def test_filter_by_name(qtbot, window, image_folder):
    open_folder(qtbot, window, image_folder)
    qtbot.keyClicks(window.browser.filter, "dcm")
    assert [os.path.basename(p) for p in window.browser.visible_paths()] == ["c-chest.dcm", "e-corrupt.dcm"]
    window.browser.filter.clear()
    assert len(window.browser.visible_paths()) == 5


def test_unreadable_subfolder_is_reported(qtbot, window, image_folder, block_folder):
    sub = image_folder / "locked"
    sub.mkdir()
    block_folder(sub)
    open_folder(qtbot, window, image_folder)
    assert "locked" in window.browser.summary.toolTip() and "problem" in window.browser.summary.text()


def test_recent_folders_and_drag_and_drop(qtbot, window, image_folder, tmp_path, fixtures_dir):
    open_folder(qtbot, window, fixtures_dir / "images")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(image_folder / "c-chest.dcm"))])
    drop = QDropEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                      Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.folder_listed, timeout=WAIT_MS):
        window.dropEvent(drop)
    qtbot.waitUntil(lambda: window.radiograph is not None and window.radiograph.name == "c-chest.dcm", timeout=WAIT_MS)
    recent = [a.text() for a in window.recent_menu.actions()]
    assert recent == [str(image_folder), str(fixtures_dir / "images")]


def test_thumbnails_for_rows_scrolled_into_view_come_first(qtbot, window, tmp_path, fixtures_dir):
    import shutil

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(120):
        shutil.copy(fixtures_dir / "images" / "IM-0003-0001.jpeg", folder / f"img{i:03d}.jpeg")
    made = []
    real = window._thumbnail
    window._thumbnail = lambda item: (made.append(os.path.basename(item[0])), real(item))
    open_folder(qtbot, window, folder)
    window.browser.list.scrollToBottom()
    wait_thumbnails(qtbot, window)
    assert sorted(made) == sorted(set(made)) and len(made) == 120  # each once
    last = made.index("img119.jpeg")
    assert last < 100, f"the bottom rows waited for everything above them (img119 came {last + 1}th)"
