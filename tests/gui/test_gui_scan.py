"""Scan: runs on the open folder in a worker, fills the ranked table live, a row opens its image with the
hotspot outlined, Cancel stops and keeps what was done, the report exports."""

import shutil
import threading

from gui_steps import WAIT_MS, load_model, open_folder
from PySide6.QtCore import Qt


def test_scan_ranks_opens_hotspot_and_exports(qtbot, window, image_folder, tiny_model_dir, tmp_path):
    load_model(qtbot, window, tiny_model_dir)
    open_folder(qtbot, window, image_folder)
    panel = window.scan_panel
    arrived = []
    window.scan_panel.model.rowsInserted.connect(lambda *_: arrived.append(len(panel.model.records)))
    with qtbot.waitSignal(window.scan_finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(panel.start, Qt.MouseButton.LeftButton)
        assert panel.cancel.isEnabled() and not panel.start.isEnabled()
    result = finished.args[0]
    assert result.complete and arrived == [1, 2, 3, 4, 5]  # rows came one by one, not at the end
    model = panel.model
    assert model.rowCount() == 5
    ok = [r for r in model.records if r.ok]
    keys = [(r.verdict != "trigger", -r.suspicion) for r in ok]  # the scan's final ranking
    assert keys == sorted(keys) and [r.rank for r in ok] == [1, 2, 3, 4]
    assert [model.index(i, 0).data() for i in range(len(ok))] == ["1", "2", "3", "4"]
    bad = model.records[-1]
    assert not bad.ok and bad.path.endswith("e-corrupt.dcm") and model.index(4, 5).data() == "error"
    assert panel.export.isEnabled() and panel.start.isEnabled()

    # click the top row: its image opens with the hotspot drawn
    top = ok[0]
    index = model.index(0, 2)
    rect = panel.table.visualRect(index)
    if window.current == top.path:
        qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    else:
        with qtbot.waitSignal(window.image_shown, timeout=WAIT_MS):
            qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.current == top.path
    assert window.viewer.hotspot.isVisible()
    t, l, b, r = top.hotspot
    drawn = window.viewer.hotspot.rect()
    assert (drawn.left(), drawn.top(), drawn.right(), drawn.bottom()) == (l, t, max(r, l + 1), max(b, t + 1))

    files = window.export_report(str(tmp_path / "report"))
    for name in ("ranking.csv", "report.json", "report.html"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert files["html"].endswith("report.html")
    assert "e-corrupt.dcm" in (tmp_path / "report" / "report.json").read_text()


def test_cancel_stops_the_scan_and_keeps_what_was_done(qtbot, window, tiny_model_dir, tmp_path, fixtures_dir,
                                                       monkeypatch):
    from cxrinspect.scan.scanner import Scanner

    clicked = threading.Event()
    real_maps = Scanner.maps

    def maps_after_the_first_batch_wait_for_cancel(self, views):
        if getattr(self, "_batches", 0) >= 1:
            clicked.wait(30)  # the tiny model is too fast to click between batches otherwise
        self._batches = getattr(self, "_batches", 0) + 1
        return real_maps(self, views)

    monkeypatch.setattr(Scanner, "maps", maps_after_the_first_batch_wait_for_cancel)
    folder = tmp_path / "many"
    folder.mkdir()
    sources = sorted((fixtures_dir / "images").iterdir())
    for i in range(60):
        shutil.copy(sources[i % len(sources)], folder / f"img{i:03d}{sources[i % len(sources)].suffix}")
    load_model(qtbot, window, tiny_model_dir)
    open_folder(qtbot, window, folder)
    panel = window.scan_panel
    with qtbot.waitSignal(window.scan_finished, timeout=WAIT_MS) as finished:
        window.start_scan("gradient")
        qtbot.waitUntil(lambda: panel.model.rowCount() > 0, timeout=WAIT_MS)
        qtbot.mouseClick(panel.cancel, Qt.MouseButton.LeftButton)
        clicked.set()
        assert not panel.cancel.isEnabled()
    result = finished.args[0]
    assert not result.complete and 0 < len(result.records) < 60
    assert panel.model.rowCount() == len(result.records)
    assert "Stopped" in panel.status.text() and panel.start.isEnabled()
    files = window.export_report(str(tmp_path / "partial"))
    assert (tmp_path / "partial" / "ranking.csv").exists() and files


def test_closing_the_window_mid_scan_waits_for_the_worker(qtbot, make_window, tiny_model_dir, tmp_path, fixtures_dir):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        shutil.copy(fixtures_dir / "images" / "IM-0001-0001.jpeg", folder / f"img{i:03d}.jpeg")
    window = make_window()
    load_model(qtbot, window, tiny_model_dir)
    open_folder(qtbot, window, folder)
    window.start_scan("gradient")
    qtbot.waitUntil(lambda: window.scan_panel.model.rowCount() > 0, timeout=WAIT_MS)
    window.close()  # cancels and waits; the fixture then checks the pool is idle
    assert not window.workers.busy()


def test_file_column_shows_whole_names_and_an_error_does_not_squeeze_it(qtbot):
    """The File column takes the spare width (an unreadable file's long reason once left it a few letters wide);
    a name too long for it is elided in the middle, and the tooltip has the full path and the reason."""
    from cxrinspect.gui.scan_panel import FILE, HOTSPOT, ScanPanel
    from cxrinspect.scan import ScanRecord

    panel = ScanPanel()
    qtbot.addWidget(panel)
    panel.resize(1000, 240)
    panel.model.root = "/data/kermany"
    for i in range(3):
        panel.model.add(ScanRecord(path=f"/data/kermany/test/PNEUMONIA/person{i}_bacteria_{1000 + i}.jpeg",
                                   label="Bacterial", probabilities={"Bacterial": 0.8}, score=0.03 - i / 1000,
                                   hotspot=(96, 288, 1192, 1384), verdict="suspicious"))
    bad = "/data/kermany/test/NORMAL/corrupt.dcm"
    reason = "not a readable DICOM file: InvalidDicomError: File is missing DICOM File Meta Information header " * 2
    panel.model.add(ScanRecord(path=bad, error=f"{bad}: {reason}"))
    panel.show()
    qtbot.waitExposed(panel)
    table, model = panel.table, panel.model
    metrics = table.fontMetrics()
    for row in range(4):
        name = model.index(row, FILE).data()
        assert table.columnWidth(FILE) > metrics.horizontalAdvance(name) + 8, name
    assert model.index(0, FILE).data() == "test/PNEUMONIA/person0_bacteria_1000.jpeg"
    assert table.columnWidth(HOTSPOT) >= metrics.horizontalAdvance(model.index(0, HOTSPOT).data())
    assert table.columnWidth(HOTSPOT) < 300
    assert model.index(3, HOTSPOT).data() == reason  # the row names the file already
    assert model.index(3, FILE).data(Qt.ItemDataRole.ToolTipRole) == f"{bad}\ncannot be read: {reason}"
    assert model.index(0, FILE).data(Qt.ItemDataRole.ToolTipRole) == model.records[0].path
    assert table.textElideMode() == Qt.TextElideMode.ElideMiddle
