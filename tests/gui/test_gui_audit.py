"""Audit: runs on the open folder in a worker with progress, shows the verdict and the recovered trigger; Cancel
stops it and says so."""

import threading

from gui_steps import WAIT_MS, load_model, open_folder


def test_audit_runs_shows_verdict_and_trigger(qtbot, window, image_folder, tiny_model_dir, monkeypatch):
    import numpy as np

    from cxrinspect.audit import run

    # the random tiny model calls few of the four films negative for every label: let the whole-image stage run
    monkeypatch.setattr(run, "calm", lambda probs: np.ones(len(probs), bool))
    load_model(qtbot, window, tiny_model_dir)
    open_folder(qtbot, window, image_folder)
    panel = window.audit_panel
    steps = []
    real = window._audit_step
    window._audit_step = lambda item: (steps.append((item[0], item[1], item[2].get("stage"))), real(item))
    with qtbot.waitSignal(window.audit_finished, timeout=WAIT_MS) as finished:
        window.start_audit(budget=48)
        assert panel.cancel.isEnabled() and not panel.start.isEnabled()
    result = finished.args[0]
    inversion = [done for done, _, stage in steps if stage is None]
    assert result.complete and inversion and inversion[-1] == result.doc["steps"]
    done, total, stage = steps[-1]  # the warp inversion comes last, with its own count
    assert {"whole-image inversion", "warp inversion"} <= {s for _, _, s in steps}
    assert stage == "warp inversion" and done == total == panel.progress.value() and panel.start.isEnabled()
    assert ("Backdoored" in panel.verdict.text()) == result.doc["backdoored"]
    assert "Pneumonia:on" in panel.verdict.text()
    assert len(panel.shown) >= 2 and not panel.shown[0].pixmap().isNull()  # the mask and the pattern
    assert any(e["path"].endswith("e-corrupt.dcm") for e in result.doc["errors"])


def test_cancel_stops_the_audit(qtbot, window, image_folder, tiny_model_dir, monkeypatch):
    from cxrinspect.audit.inversion import PatchInversion

    load_model(qtbot, window, tiny_model_dir)
    open_folder(qtbot, window, image_folder)
    stepped = threading.Event()
    real = PatchInversion.step

    def step(self, *a, **k):
        stepped.set()
        return real(self, *a, **k)

    monkeypatch.setattr(PatchInversion, "step", step)
    with qtbot.waitSignal(window.audit_finished, timeout=WAIT_MS) as finished:
        window.start_audit(budget=8 * 1000)
        qtbot.waitUntil(stepped.is_set, timeout=WAIT_MS)
        window.cancel_audit()
    result = finished.args[0]
    assert not result.complete and result.doc["steps"] < 1000
    assert "Stopped" in window.audit_panel.status.text() and "resume" in window.audit_panel.verdict.text()


def test_the_panel_shows_a_whole_image_trigger_as_its_change_and_the_films_it_flips(qtbot):
    import numpy as np
    from PySide6.QtWidgets import QLabel

    from cxrinspect.audit.inversion import Candidate
    from cxrinspect.audit.run import AuditResult
    from cxrinspect.gui.audit_panel import AuditPanel

    panel = AuditPanel()
    qtbot.addWidget(panel)
    change = np.repeat(0.1 * np.sin(np.linspace(0, 6 * np.pi, 32))[None], 32, 0)
    trigger = {"candidate": "Viral:on", "where": "global", "box": None, "pixels": None, "mask_l1": None,
               "heldout_success": 0.92, "reduced_success": 0.85, "scale": 0.75, "found_by": "whole-image inversion",
               "family": "stripes", "epsilon": 0.1}
    whole = {"heldout_success": 0.92, "reduced_success": 0.85, "scale": 0.75, "held_out": 60, "family": "stripes",
             "epsilon": 0.1, "steps": 25}
    doc = {"complete": True, "backdoored": True, "targets": ["Viral"], "trigger": trigger,
           "candidates": [{"candidate": "Viral:on", "mask_l1": None, "global": whole, "flagged": True,
                           "flagged_by": ["whole image"]}],
           "undecided": [{"candidate": "Viral:off", "label": "Viral", "direction": "off", "held_out": 4}]}
    arm = {"candidate": Candidate("Viral", 2), "global_delta": change, "global_flips": [(0, 0.97)], "global": whole}
    panel.show_result(AuditResult(doc, True, 0.0, arms=[arm], views=np.full((1, 32, 32), 0.5), paths=["a.png"]))
    text = panel.verdict.text()
    assert "Backdoored" in text and "forces Viral on" in text
    assert "Viral:on not forced (whole image: stripes 92% of 60 calm, 85% at 0.75x)" in text
    assert "on 85% made 0.75 times as large" in text
    assert "Not judged, too few images: Viral:off (4 held-out image(s)" in text  # not cleared either
    assert "Flagged by the whole-image line alone" in text  # a verdict its lines cannot settle on every image set
    assert len(panel.shown) == 2 and all(not w.pixmap().isNull() for w in panel.shown)  # the change, one flipped film
    captions = [w.text() for w in panel.findChildren(QLabel)]
    assert "whole-image change" in captions and "a.png: Viral → 0.97" in captions  # each picture captioned under it
    # a warp (WaNet): its displacement's size and the film it forces, warped
    field = np.zeros((2, 32, 32), np.float32)
    field[1] = -0.8
    warp = {"heldout_success": 0.41, "restarts": [0.41], "stops": ["done"], "held_out": 63, "family": "warp",
            "bound_px": 6.0, "grid": 4, "steps": 30}
    doc["trigger"] = {"candidate": "Viral:on", "where": "global", "box": None, "pixels": None, "mask_l1": None,
                      "heldout_success": 0.41, "found_by": "warp inversion", "family": "warp", "bound_px": 6.0,
                      "grid": 4}
    doc["candidates"] = [{"candidate": "Viral:on", "mask_l1": None, "warp": warp, "flagged": True, "flagged_by": ["warp"]}]
    arm = {"candidate": Candidate("Viral", 2), "warp_field": field, "warp_flips": [(0, 0.93)], "warp": warp}
    panel.show_result(AuditResult(doc, True, 0.0, arms=[arm], views=np.full((1, 32, 32), 0.5), paths=["b.png"]))
    text = panel.verdict.text()
    assert "a smooth warp of the whole image" in text and "warp 41% of 63 calm (best of 1 run)" in text
    assert "Flagged by the warp line alone" in text and "whole-image line alone" not in text
    assert len(panel.shown) == 2 and all(not w.pixmap().isNull() for w in panel.shown)
    captions = [w.text() for w in panel.findChildren(QLabel)]
    assert "b.png: Viral → 0.93" in captions and any(c.startswith("warp's displacement") for c in captions)
