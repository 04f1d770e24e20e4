"""The main window: browser, viewer, Predict / Explain / Tags panels, the Scan panel, menus and keys.

The window owns the caches and hands all slow work (discovery, decoding, thumbnails, model loading,
inference, saliency, scans) to :class:`Workers`; callbacks land on the UI thread and check that the
image they belong to is still the one shown.
"""

from __future__ import annotations

import gc
import os
import threading
from collections import deque
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFileDialog, QLabel, QMainWindow

from ..audit.run import describe_progress
from ..imaging import Radiograph
from .browser import Browser, make_thumbnail, without_path
from .cache import LRUCache
from .help import SHORTCUTS, HelpDialog
from .overlay import OverlayPanel
from .predictions import ModelCardDialog, PredictionPanel
from .audit_panel import AuditPanel
from .scan_panel import ScanPanel
from .settings import Preferences
from .state import ViewModel
from .tags import TagPanel
from .viewer import RadiographView
from .windowing import PRESETS, auto_window, preset_window
from .workers import Workers

RADIOGRAPH_BYTES = 768 * 2 ** 20
OVERLAY_BYTES = 256 * 2 ** 20


def decode(path: str) -> Radiograph:
    from ..imaging import load

    return load(path)


class MainWindow(QMainWindow):
    image_shown = Signal(str)          # a radiograph is on screen (path)
    image_failed = Signal(str, str)    # path, reason
    folder_listed = Signal(str)        # the browser holds the folder's files
    model_ready = Signal(str)          # model path
    prediction_shown = Signal(str)     # path
    overlay_shown = Signal(str)        # path
    scan_finished = Signal(object)     # ScanResult
    audit_finished = Signal(object)    # AuditResult

    def __init__(self, settings: QSettings | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("cxrinspect")
        self.setAcceptDrops(True)
        self.prefs = Preferences(settings if settings is not None else QSettings())
        self.view_model = ViewModel()
        self.view_model.set(self.prefs.overlay(self.view_model.state))
        self.workers = Workers(max_threads=4)
        self.radiographs = LRUCache(RADIOGRAPH_BYTES, cost=lambda rg: rg.pixels.nbytes)
        self.predictions = LRUCache(5000)
        self.overlays = LRUCache(OVERLAY_BYTES, cost=lambda entry: entry[1].nbytes)  # (label, display map)
        self.folder: str | None = None
        self.current: str | None = None
        self.radiograph: Radiograph | None = None
        self.model_path: str | None = None
        self.predictor = None
        self._torch_model = None  # loaded on first overlay, for saliency (the predictor may be onnxruntime)
        self._torch_lock = threading.Lock()
        self._pending_hotspot: tuple[str, tuple] | None = None
        self.scan_result = None
        self._scan_job = None
        self._closed = False

        self.viewer = RadiographView(self.view_model)
        self.setCentralWidget(self.viewer)
        self.browser = Browser()
        self.predict_panel = PredictionPanel()
        self.overlay_panel = OverlayPanel(self.view_model)
        self.tag_panel = TagPanel()
        self.scan_panel = ScanPanel()
        self.audit_panel = AuditPanel()
        self._audit_job = None
        self.docks = {}
        for name, title, widget, area in (("browser", "Files", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea),
                                          ("predict", "Predict", self.predict_panel, Qt.DockWidgetArea.RightDockWidgetArea),
                                          ("explain", "Explain", self.overlay_panel, Qt.DockWidgetArea.RightDockWidgetArea),
                                          ("tags", "Tags", self.tag_panel, Qt.DockWidgetArea.RightDockWidgetArea),
                                          ("scan", "Scan", self.scan_panel, Qt.DockWidgetArea.BottomDockWidgetArea),
                                          ("audit", "Audit", self.audit_panel, Qt.DockWidgetArea.BottomDockWidgetArea)):
            dock = QDockWidget(title, self)
            dock.setObjectName(f"dock-{name}")
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            self.docks[name] = dock
        self.tabifyDockWidget(self.docks["explain"], self.docks["tags"])
        self.tabifyDockWidget(self.docks["scan"], self.docks["audit"])
        self.docks["scan"].raise_()
        self.docks["explain"].raise_()
        self.readout = QLabel("")
        self.info = QLabel("")
        self.statusBar().addPermanentWidget(self.readout)
        self.statusBar().addWidget(self.info, 1)

        self.actions = self._make_actions()
        self._make_menus()
        self.browser.image_selected.connect(self.show_image)
        self.browser.rows_shown.connect(self._rows_shown)
        self.viewer.pixel_readout.connect(self.readout.setText)
        self.predict_panel.model_chosen.connect(self.set_model)
        self.predict_panel.open_model_requested.connect(self.open_model_dialog)
        self.predict_panel.card_requested.connect(self.show_model_card)
        self.scan_panel.start_requested.connect(self.start_scan)
        self.scan_panel.cancel_requested.connect(self.cancel_scan)
        self.scan_panel.export_requested.connect(self.export_report_dialog)
        self.scan_panel.record_activated.connect(self.open_record)
        self.audit_panel.start_requested.connect(self.start_audit)
        self.audit_panel.cancel_requested.connect(self.cancel_audit)
        self.view_model.observe(self._state_changed)

        geometry, window_state = self.prefs.window()
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1400, 900)
        self.resizeDocks([self.docks["scan"]], [190], Qt.Orientation.Vertical)
        self.resizeDocks([self.docks["browser"], self.docks["predict"]], [240, 300], Qt.Orientation.Horizontal)
        if window_state is not None:
            self.restoreState(window_state)

    # ------------------------------------------------------------------ actions and menus
    def _make_actions(self) -> dict[str, QAction]:
        vm, viewer = self.view_model, self.viewer
        does = {
            "open_folder": self.open_folder_dialog, "export_view": self.export_view_dialog,
            "next_image": lambda: self.browser.step(+1), "previous_image": lambda: self.browser.step(-1),
            "fit": viewer.fit, "actual_size": viewer.actual_size,
            "zoom_in": lambda: viewer.zoom(1.25), "zoom_out": lambda: viewer.zoom(0.8),
            "invert": lambda: vm.toggle("invert"), "rotate_right": lambda: vm.rotate(+1),
            "rotate_left": lambda: vm.rotate(-1), "flip_h": lambda: vm.toggle("flip_h"),
            "flip_v": lambda: vm.toggle("flip_v"),
            **{f"preset_{n}": (lambda _checked=False, n=n: self.apply_preset(n)) for n in PRESETS},
            "auto_window": self.apply_auto_window, "reset": self.reset_view,
            "toggle_overlay": lambda: vm.toggle("overlay_visible"),
            "filter": lambda: (self.docks["browser"].show(), self.browser.filter.setFocus()),
            "help": self.show_help, "quit": self.close,
        }
        actions = {}
        for name, keys, text in SHORTCUTS:
            action = QAction(text, self)
            action.setShortcuts([QKeySequence(k) for k in keys])
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(does[name])
            self.addAction(action)
            actions[name] = action
        return actions

    def _make_menus(self) -> None:
        a = self.actions
        file = self.menuBar().addMenu("&File")
        file.addAction(a["open_folder"])
        self.recent_menu = file.addMenu("Recent folders")
        self._fill_recent(self.prefs.recent_folders())
        file.addAction("Open model directory…").triggered.connect(lambda: self.open_model_dialog(False))
        file.addAction("Open model file (.safetensors)…").triggered.connect(lambda: self.open_model_dialog(True))
        file.addAction(a["export_view"])
        file.addSeparator()
        file.addAction(a["quit"])
        view = self.menuBar().addMenu("&View")
        for name in ("fit", "actual_size", "zoom_in", "zoom_out", "invert", "rotate_right", "rotate_left", "flip_h",
                     "flip_v", "auto_window", *(f"preset_{n}" for n in PRESETS), "reset", "toggle_overlay"):
            view.addAction(a[name])
        go = self.menuBar().addMenu("&Go")
        for name in ("next_image", "previous_image", "filter"):
            go.addAction(a[name])
        panels = self.menuBar().addMenu("&Panels")
        for dock in self.docks.values():
            panels.addAction(dock.toggleViewAction())
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(a["help"])

    def _fill_recent(self, folders: list[str]) -> None:
        self.recent_menu.clear()
        for folder in folders:
            action = self.recent_menu.addAction(folder)
            action.triggered.connect(lambda _checked=False, f=folder: self.open_folder(f))
        self.recent_menu.setEnabled(bool(folders))

    def show_help(self) -> None:
        HelpDialog(self).exec()

    def warm_up(self) -> None:
        """Import PyTorch, the saliency and scan code and matplotlib (report figures) in a worker at start-up,
        then freeze the objects made so far out of the garbage collector's way.

        Loading libtorch, or unmarshalling a big module's bytecode, holds the GIL for up to ~0.7 s at a time
        (measured on the busy 2-core machine: bench/gui_stall.py --diagnose caught a 400 ms UI stall inside a
        worker's import during a scan). At start-up that overlaps the window opening instead of freezing a
        scan. ``gc.freeze()`` keeps the many long-lived objects these imports make out of every later full
        collection, which would otherwise hold the GIL while it walks them all.
        """

        def importing(job):
            os.environ.setdefault("MPLBACKEND", "Agg")
            import matplotlib.pyplot  # noqa: F401
            import torch  # noqa: F401

            from .. import saliency, scan  # noqa: F401
            from ..model import checkpoint  # noqa: F401
            from ..scan import hotspots, report, verification  # noqa: F401

        def imported(_result):
            gc.collect()
            gc.freeze()

        self.workers.submit(importing, name="warm-up", priority=-3, on_done=imported)

    # ------------------------------------------------------------------ browse
    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of radiographs", self.folder or "")
        if folder:
            self.open_folder(folder)

    def open_folder(self, folder: str, select: str | None = None) -> None:
        """List ``folder`` (discovery in a worker), then show ``select`` or the first image."""
        folder = os.path.abspath(folder)
        self.folder = folder
        self._fill_recent(self.prefs.remember_folder(folder))
        self.workers.cancel("thumbnails")
        self.info.setText(f"Reading {folder} …")

        def listing(job):
            from ..imaging import discover

            return discover([folder])

        self.workers.submit(listing, name="discover", key="discover",
                            on_done=lambda found: self._listed(folder, found, select),
                            on_error=lambda message: self.info.setText(f"Cannot read {folder}: {message}"))

    def _listed(self, folder: str, found, select: str | None) -> None:
        self.browser.set_files(folder, found.images, found.errors)
        for path, reason in found.errors:
            self.statusBar().showMessage(f"{path}: {reason}", 8000)
        self.setWindowTitle(f"cxrinspect — {folder}")
        self.info.setText(f"{len(found.images)} image file(s) in {folder}")
        if found.images and not (select and self.browser.select(select)):
            self.browser.step(0)
        elif not found.images:
            self.viewer.show_radiograph(None, "No radiographs in this folder")
        self._start_thumbnails(found.images)
        self.folder_listed.emit(folder)

    def _start_thumbnails(self, paths: list[str]) -> None:
        """Thumbnails in a worker, the rows on screen first: scrolling moves the newly visible rows to the front."""
        todo = deque(paths)  # appends and pops at either end are thread-safe
        self._thumbnail_todo = todo

        def thumbnails(job):
            made = set()
            while not job.cancelled():
                try:
                    path = todo.popleft()
                except IndexError:
                    return
                if path in made:
                    continue
                made.add(path)
                try:
                    job.emit((path, make_thumbnail(path), None))
                except Exception as e:  # noqa: BLE001 - every failure is shown on its entry
                    job.emit((path, None, str(e) if type(e).__module__.startswith("cxrinspect")
                              else f"{path}: {type(e).__name__}: {e}"))

        self.workers.submit(thumbnails, name="thumbnails", key="thumbnails", priority=-1, on_item=self._thumbnail)

    def _rows_shown(self, paths: list[str]) -> None:
        todo = getattr(self, "_thumbnail_todo", None)
        if todo is not None and todo:
            todo.extendleft(reversed(paths))

    def _thumbnail(self, item) -> None:
        path, grey, error = item
        if error is not None:
            self.browser.mark_bad(path, without_path(path, error))
        else:
            self.browser.set_thumbnail(path, grey)

    # ------------------------------------------------------------------ view
    def show_image(self, path: str) -> None:
        """Show ``path``: at once from the cache, else decoded in a worker (a newer choice cancels it)."""
        self.current = path
        cached = self.radiographs.get(path)
        if cached is not None:
            self.workers.cancel("decode")
            self._display(cached)
            return
        self.info.setText(f"Loading {os.path.basename(path)} …")
        self.workers.submit(lambda job: decode(path), name="decode", key="decode", priority=2,
                            on_done=lambda rg: self._decoded(path, rg),
                            on_error=lambda message: self._failed(path, message))

    def _decoded(self, path: str, rg: Radiograph) -> None:
        self.radiographs.put(path, rg)
        if path == self.current:
            self._display(rg)

    def _failed(self, path: str, message: str) -> None:
        reason = without_path(path, message)
        self.browser.mark_bad(path, reason)
        if path == self.current:
            self.radiograph = None
            self.viewer.show_radiograph(None, f"{os.path.basename(path)}\ncannot be read: {reason}")
            self.tag_panel.show_radiograph(None)
            self.predict_panel.show_prediction([], None, {}, "")
            self.info.setText(f"{path}: {reason}")
            self.image_failed.emit(path, reason)

    def _display(self, rg: Radiograph) -> None:
        self.radiograph = rg
        state = self.view_model.state
        self.view_model.set(state.geometry_reset())
        self.viewer.show_radiograph(rg)
        if self._pending_hotspot and self._pending_hotspot[0] == rg.path:
            self.viewer.set_hotspot(self._pending_hotspot[1])
        self.tag_panel.show_radiograph(rg)
        rows, cols = rg.shape
        position = ""
        paths = self.browser.visible_paths()
        if rg.path in paths:
            position = f" ({paths.index(rg.path) + 1}/{len(paths)})"
        self.setWindowTitle(f"cxrinspect — {rg.name}{position}")
        notes = f" — {'; '.join(rg.warnings)}" if rg.warnings else ""
        self.info.setText(f"{rg.name}: {cols}x{rows} {rg.metadata.get('format', rg.format)}{notes}")
        self.image_shown.emit(rg.path)
        self.request_prediction()
        self.request_overlay()

    def apply_preset(self, number: int) -> None:
        if self.radiograph is not None:
            self.view_model.update(window=preset_window(self.radiograph, number))
            self.statusBar().showMessage(f"Window: {PRESETS[number][0]}", 3000)

    def apply_auto_window(self) -> None:
        if self.radiograph is not None:
            self.view_model.update(window=auto_window(self.radiograph))

    def reset_view(self) -> None:
        self.view_model.set(self.view_model.state.geometry_reset())
        self.viewer.fit()

    def _state_changed(self, state, changed: set[str]) -> None:
        if changed & {"overlay_visible", "overlay_method", "overlay_label"}:
            self.request_overlay()
        if "window" in changed and self.radiograph is not None:
            w = self.viewer.effective_window()
            self.statusBar().showMessage(f"Window centre {w.center:g} width {w.width:g}", 2000)

    # ------------------------------------------------------------------ predict
    def set_model(self, path: str) -> None:
        """Open a model (directory or .safetensors) in a worker; predictions follow for the image shown."""
        path = str(Path(path).resolve())
        self.predict_panel.select_model(path)
        self.predict_panel.backend.setText(f"loading {Path(path).name} …")

        def opening(job):
            from ..inference import Predictor

            return Predictor.open(path)

        self.workers.submit(opening, name="model", key="model", priority=1,
                            on_done=lambda predictor: self._model_opened(path, predictor),
                            on_error=lambda message: self._model_failed(path, message))

    def _model_opened(self, path: str, predictor) -> None:
        self.model_path, self.predictor = path, predictor
        self.prefs.model = path
        self.predict_panel.show_card(predictor.card, f"{predictor.card.name or Path(path).name}: "
                                                     f"{predictor.description}")
        self.overlay_panel.set_labels(predictor.labels)
        self.model_ready.emit(path)
        self.request_prediction()
        self.request_overlay()

    def _model_failed(self, path: str, message: str) -> None:
        self.predict_panel.backend.setText(f"cannot open model: {message}")
        self.statusBar().showMessage(f"Cannot open model {path}: {message}", 10000)

    def open_model_dialog(self, single_file: bool = False) -> None:
        """A model directory (weights.safetensors + card.json), or with ``single_file`` a .safetensors file."""
        if single_file:
            path, _ = QFileDialog.getOpenFileName(self, "Open a model file", "", "Models with a card (*.safetensors)")
        else:
            path = QFileDialog.getExistingDirectory(self, "Open a model directory (weights.safetensors + card.json)")
        if path:
            self.set_model(path)
        elif self.model_path:
            self.predict_panel.select_model(self.model_path)

    def show_model_card(self) -> None:
        if self.predictor is not None:
            ModelCardDialog(self.predictor.card, self.model_path, self).exec()

    def request_prediction(self) -> None:
        rg, predictor, model_path = self.radiograph, self.predictor, self.model_path
        if rg is None or predictor is None:
            return
        key = (model_path, rg.path)
        cached = self.predictions.get(key)
        if cached is not None:
            self._show_prediction(rg.path, cached)
            return
        self.predict_panel.show_prediction([], None, {}, f"predicting {rg.name} …")  # never the last image's bars

        def predicting(job):
            from ..model import prepare

            return predictor.probabilities(prepare(rg, predictor.card.preprocessing)[None])[0]

        def done(probabilities):
            self.predictions.put(key, probabilities)
            if model_path == self.model_path:
                self._show_prediction(rg.path, probabilities)

        self.workers.submit(predicting, name="predict", key="predict", priority=1, on_done=done,
                            on_error=lambda message: self.predict_panel.status.setText(f"prediction failed: {message}"))

    def _show_prediction(self, path: str, probabilities: np.ndarray) -> None:
        if path != self.current:
            return
        card = self.predictor.card
        above = [lab for lab, p in zip(card.labels, probabilities) if p >= card.thresholds.get(lab, 0.5)]
        self.predict_panel.show_prediction(card.labels, probabilities, card.thresholds,
                                           "above threshold: " + (", ".join(above) or "none"))
        self.prediction_shown.emit(path)

    # ------------------------------------------------------------------ explain
    def _torch(self, model_path: str):
        """The PyTorch model for saliency (a worker calls this, under the lock); one model kept at a time."""
        if self._torch_model is None or self._torch_model[0] != model_path:
            from ..model import load

            self._torch_model = (model_path, load(model_path))
        return self._torch_model[1]

    def request_overlay(self) -> None:
        """The saliency overlay of the image shown, from the cache or computed in a worker. The map is drawn as
        ``cxrinspect render --overlay`` draws it: the core's :func:`~cxrinspect.saliency.overlay.shown_map`."""
        state, rg, model_path, predictor = self.view_model.state, self.radiograph, self.model_path, self.predictor
        if not state.overlay_visible or rg is None or model_path is None:
            return
        method, label = state.overlay_method, state.overlay_label
        key = (model_path, rg.path, method, label)
        cached = self.overlays.get(key)
        if cached is not None:
            self.workers.cancel("overlay")  # an older request's map is no longer wanted
            self._show_overlay(rg.path, method, *cached)
            return
        self.viewer.set_overlay(None)
        self.overlay_panel.status.setText(f"computing {method} saliency …")
        probabilities = self.predictions.get((model_path, rg.path))

        def explaining(job):
            from ..model import prepare
            from ..saliency import explain
            from ..saliency.overlay import shown_map

            wanted = label
            if wanted == "top":  # the top of the Predict panel's bars: the same predictor, unless they are cached
                p = probabilities
                if p is None:
                    p = predictor.probabilities(prepare(rg, predictor.card.preprocessing)[None])[0]
                wanted = predictor.labels[int(np.argmax(p))]
            with self._torch_lock:
                if job.cancelled():
                    return None
                model = self._torch(model_path)
                saliency = explain(model, rg, [wanted], method)[0]
            return wanted, shown_map(saliency, method, model.card.preprocessing)

        def done(result):
            if result is not None:
                self.overlays.put(key, result)
                current = self.view_model.state
                if (self.current == rg.path and model_path == self.model_path
                        and (current.overlay_method, current.overlay_label) == (method, label)):
                    self._show_overlay(rg.path, method, *result)

        self.workers.submit(explaining, name="overlay", key="overlay", priority=1, on_done=done,
                            on_error=lambda message: self.overlay_panel.status.setText(f"saliency failed: {message}"))

    def _show_overlay(self, path: str, method: str, label: str, unit_map: np.ndarray) -> None:
        self.viewer.set_overlay(unit_map)
        self.overlay_panel.status.setText(f"{method} saliency of {label}")
        self.overlay_shown.emit(path)

    # ------------------------------------------------------------------ scan
    def start_scan(self, method: str = "gradient") -> None:
        paths = self.browser.paths()
        if not paths or self.model_path is None:
            self.scan_panel.status.setText("Open a folder and a model first.")
            return
        model_path = self.model_path
        self.scan_panel.set_running(True, len(paths))
        self.scan_panel.model.root = self.folder or ""
        self.scan_panel.status.setText(f"Scanning {len(paths)} image(s) with {method} …")
        self.scan_result = None

        stop = threading.Event()  # Cancel stops the scan but keeps (and reports) what it did

        def scanning(job):
            from ..model import load
            from ..scan import scan

            model = load(model_path)
            return scan(paths, model, None, method=method, report=False,
                        cancelled=lambda: stop.is_set() or job.cancelled(),
                        progress=lambda done, total, record: job.emit((done, total, record))), model.card

        self._scan_stop = stop
        self._scan_job = self.workers.submit(scanning, name="scan", key="scan", priority=-2,
                                             on_item=self._scanned, on_done=self._scan_done,
                                             on_error=self._scan_failed)

    def _scanned(self, item) -> None:
        done, total, record = item
        self.scan_panel.progress.setRange(0, total)
        self.scan_panel.progress.setValue(done)
        self.scan_panel.model.add(record)
        if not record.ok:
            self.browser.mark_bad(record.path, without_path(record.path, record.error))

    def _scan_done(self, outcome) -> None:
        result, card = outcome
        self.scan_result, self._scan_card = result, card
        self._scan_job = None
        self.scan_panel.set_running(False)
        self.scan_panel.model.set_records([*result.ranked, *result.errors])
        self.scan_panel.progress.setValue(len(result.records))
        self.scan_panel.export.setEnabled(True)
        from ..scan.run import flagged

        n_flagged = sum(flagged(r) for r in result.ranked)
        verdicts = sum(r.verdict == "trigger" for r in result.ranked)
        verdict = result.verdict.get("sentence", "") if result.verdict else ""
        self.scan_panel.status.setText(
            f"{'Done' if result.complete else 'Stopped'}: {len(result.ranked)} ranked, {len(result.errors)} unreadable, "
            f"{n_flagged} flagged by a detector, {verdicts} collapse when what was found is hidden "
            f"({result.seconds:.1f} s). {verdict} Click a row to open it.")
        self.scan_finished.emit(result)

    def _scan_failed(self, message: str) -> None:
        self._scan_job = None
        self.scan_panel.set_running(False)
        self.scan_panel.status.setText(f"Scan failed: {message}")

    def cancel_scan(self) -> None:
        """Stop the scan between batches; the records so far stay in the table."""
        if self._scan_job is None:
            return
        self._scan_stop.set()
        self.scan_panel.cancel.setEnabled(False)
        self.scan_panel.status.setText(f"Stopping after {len(self.scan_panel.model.records)} image(s) …")

    # ------------------------------------------------------------------ audit
    def start_audit(self, budget: int | None = None) -> None:
        """Audit the open model with the open folder's images as clean radiographs (cxrinspect.audit)."""
        paths = self.browser.paths()
        if not paths or self.model_path is None:
            self.audit_panel.status.setText("Open a folder of clean radiographs and a model first.")
            return
        model_path = self.model_path
        stop = threading.Event()
        self.audit_panel.set_running(True)
        self.audit_panel.status.setText(f"Auditing the model with {len(paths)} image(s) …")

        def auditing(job):
            from ..audit import audit
            from ..audit.run import BUDGET
            from ..model import load

            return audit(paths, load(model_path), None, budget=budget or BUDGET,
                         cancelled=lambda: stop.is_set() or job.cancelled(),
                         progress=lambda done, total, info: job.emit((done, total, info)))

        self._audit_stop = stop
        self._audit_job = self.workers.submit(auditing, name="audit", key="audit", priority=-2,
                                              on_item=self._audit_step, on_done=self._audit_done,
                                              on_error=self._audit_failed)

    def _audit_step(self, item) -> None:
        done, total, info = item
        self.audit_panel.progress.setRange(0, total)
        self.audit_panel.progress.setValue(done)
        self.audit_panel.status.setText(describe_progress(done, total, info))

    def _audit_done(self, result) -> None:
        self._audit_job = None
        self.audit_panel.set_running(False)
        doc = result.doc
        self.audit_panel.status.setText(f"{'Done' if result.complete else 'Stopped'}: {doc['steps']} steps, "
                                        f"{doc['images']} image(s), {len(doc['errors'])} unreadable "
                                        f"({result.seconds:.1f} s).")
        self.audit_panel.show_result(result)
        self.audit_finished.emit(result)

    def _audit_failed(self, message: str) -> None:
        self._audit_job = None
        self.audit_panel.set_running(False)
        self.audit_panel.status.setText(f"Audit failed: {message}")

    def cancel_audit(self) -> None:
        if self._audit_job is None:
            return
        self._audit_stop.set()
        self.audit_panel.cancel.setEnabled(False)
        self.audit_panel.status.setText("Stopping the audit after this step …")

    def open_record(self, record) -> None:
        """Open a scanned image with its hotspot outlined."""
        self._pending_hotspot = (record.path, record.hotspot) if record.ok and record.hotspot else None
        if record.path == self.current and self.radiograph is not None:
            self.viewer.set_hotspot(self._pending_hotspot[1] if self._pending_hotspot else None)
        elif not self.browser.select(record.path):
            self.show_image(record.path)

    def export_report_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export the scan report to a folder")
        if folder:
            self.export_report(folder)

    def export_report(self, folder: str) -> dict | None:
        """ranking.csv, report.json and report.html of the last scan into ``folder``."""
        if self.scan_result is None:
            return None
        from ..scan import SUSPICIOUS, write_report

        files = write_report(folder, self.scan_result, self._scan_card, threshold=SUSPICIOUS)
        self.scan_panel.status.setText(f"Report written: {files.get('html')}")
        return files

    # ------------------------------------------------------------------ export the view
    def export_view_dialog(self) -> None:
        default = os.path.splitext(self.radiograph.name)[0] + "-view.png" if self.radiograph else "view.png"
        path, _ = QFileDialog.getSaveFileName(self, "Export the view as PNG", default, "PNG image (*.png)")
        if path:
            self.export_view(path)

    def export_view(self, path: str) -> bool:
        ok = self.viewer.export_png(path)
        self.statusBar().showMessage(f"Saved {path}" if ok else f"Could not write {path}", 5000)
        return ok

    # ------------------------------------------------------------------ drag and drop, closing
    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event):
        for url in event.mimeData().urls():
            path = url.toLocalFile()
            if os.path.isdir(path):
                self.open_folder(path)
                return
            if os.path.isfile(path):
                self.open_folder(os.path.dirname(path), select=path)
                return

    def closeEvent(self, event):
        if not self._closed:
            self._closed = True
            self.prefs.save_window(self.saveGeometry(), self.saveState())
            self.prefs.save_overlay(self.view_model.state)
            if self.folder:
                self.prefs.remember_folder(self.folder)
            self.prefs.sync()
            self.workers.shutdown()
        super().closeEvent(event)
