"""The `cxrinspect` command: predict over folders with good and bad files, render, info (PHI hidden)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxrinspect import cli
from cxrinspect.imaging import Window, load, render
from cxrinspect.model import load as load_model
from cxrinspect.model import preprocess

LABELS = ["Pneumonia", "Bacterial", "Viral"]  # the tiny model's labels (tests/conftest.py)
RG1_PHI = ["CompressedSamples^RG1", "9RG1", "19400305", "Philips Medical Systems Hamburg", "26210", "exam Number"]
FAST = ["--backend", "torch", "--device", "cpu", "--quiet"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Keep the ONNX cache out of the home directory."""
    monkeypatch.setenv("CXRINSPECT_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def model_dir(tiny_model_dir):
    """A tiny DenseNet saved as a self-describing model directory (3 labels, 1 channel, 32 px)."""
    assert load_model(tiny_model_dir).labels == LABELS
    return tiny_model_dir


@pytest.fixture
def good_dir(tmp_path, fixtures_dir):
    """Real radiographs only: two Kermany JPEGs, an RG1 J2K DICOM, the multi-frame DICOM (in a subfolder)."""
    d = tmp_path / "good"
    (d / "series").mkdir(parents=True)
    shutil.copy(fixtures_dir / "images" / "IM-0001-0001.jpeg", d / "img2.jpeg")
    shutil.copy(fixtures_dir / "images" / "person1000_virus_1681.jpeg", d / "img10.jpeg")
    shutil.copy(fixtures_dir / "dicom" / "rg1_small_j2k_lossless.dcm", d / "series" / "IM0001")
    shutil.copy(fixtures_dir / "dicom" / "rg1_small_multiframe.dcm", d / "series" / "multi.dcm")
    return d


@pytest.fixture
def mixed_dir(good_dir, fixtures_dir):
    """The good folder plus broken files named as images and one harmless non-image."""
    (good_dir / "empty.png").write_bytes(b"")
    (good_dir / "report.dcm").write_text("not a DICOM file, just text")
    data = (fixtures_dir / "images" / "IM-0003-0001.jpeg").read_bytes()
    (good_dir / "cut.jpeg").write_bytes(data[: len(data) // 2])
    dicom = (fixtures_dir / "dicom" / "rg1_small_uncompressed.dcm").read_bytes()
    (good_dir / "series" / "cut.dcm").write_bytes(dicom[: len(dicom) * 2 // 3])
    (good_dir / "README.txt").write_text("study notes\n")
    return good_dir


BAD_REASONS = {"empty.png": "file is empty", "report.dcm": "not a recognised image format",
               "cut.jpeg": "truncated", "cut.dcm": "pixel data"}


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_csv(path_or_text) -> list[dict]:
    text = Path(path_or_text).read_text() if isinstance(path_or_text, Path) else path_or_text
    return list(csv.DictReader(io.StringIO(text)))


def expected_probabilities(model_dir, path) -> np.ndarray:
    """What the model says about one file through the single preprocessing path, one image at a time."""
    model = load_model(model_dir)
    x = preprocess(load(path), model.card.preprocessing)[None]
    with torch.no_grad():
        return torch.sigmoid(model.network.eval()(x))[0].numpy()


# ---------------------------------------------------------------- predict
def test_predict_batch_with_bad_files_continues_and_exits_3(capsys, model_dir, mixed_dir, tmp_path):
    out_csv = tmp_path / "results" / "predictions.csv"
    code, out, err = run(capsys, "predict", mixed_dir, "--model", model_dir, "--out", out_csv, *FAST)
    assert code == cli.EXIT_SOME_FAILED == 3
    rows = read_csv(out_csv)
    assert list(rows[0]) == ["path", "status", "error", "warnings", *LABELS]
    by_name = {Path(r["path"]).name: r for r in rows}
    # every image-named file is a row, in natural order; the README is skipped (reported, not a failure)
    assert [os.path.relpath(r["path"], mixed_dir) for r in rows] == [
        "cut.jpeg", "empty.png", "img2.jpeg", "img10.jpeg", "report.dcm",
        os.path.join("series", "cut.dcm"), os.path.join("series", "IM0001"), os.path.join("series", "multi.dcm")]
    assert "README.txt" in err and "not an image file" in err
    for name, reason in BAD_REASONS.items():
        row = by_name[name]
        assert row["status"] == "error"
        assert row["path"] in row["error"] and reason in row["error"]
        assert all(row[label] == "" for label in LABELS)
        assert row["error"] in err  # each failure is also named on stderr
    good = [r for r in rows if r["status"] == "ok"]
    assert len(good) == 4
    for row in good:
        assert row["error"] == ""
        probs = np.array([float(row[label]) for label in LABELS])
        assert np.all((probs > 0) & (probs < 1))
        np.testing.assert_allclose(probs, expected_probabilities(model_dir, row["path"]), atol=2e-5)
    assert "multi-frame" in by_name["multi.dcm"]["warnings"]
    assert "4 predicted, 4 failed" in err


def test_predict_all_good_exits_0_with_csv_on_stdout(capsys, model_dir, good_dir):
    code, out, err = run(capsys, "predict", good_dir, "--model", model_dir, *FAST)
    assert code == cli.EXIT_OK == 0
    rows = read_csv(out)
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert "4 predicted, 0 failed" in err


def test_predict_jsonl(capsys, model_dir, mixed_dir, tmp_path):
    out_jsonl = tmp_path / "predictions.jsonl"
    code, out, err = run(capsys, "predict", mixed_dir, "--model", model_dir, "--out", out_jsonl, *FAST)
    assert code == 3 and out == ""
    records = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert len(records) == 8
    for r in records:
        assert set(r) == {"path", "status", "error", "warnings", *LABELS}
        if r["status"] == "ok":
            assert all(isinstance(r[label], float) and 0 < r[label] < 1 for label in LABELS)
        else:
            assert all(r[label] is None for label in LABELS) and r["path"] in r["error"]
    assert sorted(Path(r["path"]).name for r in records if r["status"] == "error") == sorted(BAD_REASONS)


@pytest.mark.parametrize("suffix", [".txt", ".json", ".csv.gz", ""])
def test_predict_out_with_a_bad_suffix_is_a_usage_error(capsys, model_dir, good_dir, tmp_path, suffix):
    target = tmp_path / f"predictions{suffix}"
    code, out, err = run(capsys, "predict", good_dir, "--model", model_dir, "--out", target, *FAST)
    assert code == cli.EXIT_USAGE == 2
    assert ".csv or .jsonl" in err
    assert not target.exists()


def test_predict_missing_path_is_a_failure_row(capsys, model_dir, good_dir, tmp_path):
    missing = tmp_path / "not_there.dcm"
    code, out, err = run(capsys, "predict", good_dir / "img2.jpeg", missing, "--model", model_dir, *FAST)
    assert code == 3
    rows = {r["path"]: r for r in read_csv(out)}
    assert rows[str(good_dir / "img2.jpeg")]["status"] == "ok"
    assert rows[str(missing)]["status"] == "error" and "no such file" in rows[str(missing)]["error"]


def test_predict_unreadable_folder_is_a_failure_row_not_fatal(capsys, model_dir, good_dir, block_folder):
    blocked = block_folder(good_dir / "series")
    code, out, err = run(capsys, "predict", good_dir, "--model", model_dir, *FAST)
    assert code == 3
    rows = read_csv(out)
    assert [r["status"] for r in rows].count("ok") == 2  # the two JPEGs beside the blocked folder
    [failed] = [r for r in rows if r["status"] == "error"]
    assert failed["path"] == blocked and "cannot read directory" in failed["error"]


def test_predict_without_a_usable_model_is_fatal(capsys, good_dir, tmp_path):
    code, out, err = run(capsys, "predict", good_dir, "--model", tmp_path / "no_model", *FAST)
    assert code == cli.EXIT_FATAL == 1
    assert "no_model" in err


def test_predict_with_no_images_is_fatal(capsys, model_dir, tmp_path):
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here")
    code, out, err = run(capsys, "predict", empty, "--model", model_dir, *FAST)
    assert code == 1 and "no image files" in err


def test_predict_default_backend_agrees_with_torch(capsys, model_dir, good_dir):
    """The default CPU path (onnxruntime, exported into the cache) gives the torch numbers."""
    code, out, _ = run(capsys, "predict", good_dir, "--model", model_dir, "--quiet", "--device", "cpu")
    assert code == 0
    code, ref, _ = run(capsys, "predict", good_dir, "--model", model_dir, *FAST)
    for a, b in zip(read_csv(out), read_csv(ref), strict=True):
        assert a["path"] == b["path"]
        np.testing.assert_allclose([float(a[k]) for k in LABELS], [float(b[k]) for k in LABELS], atol=1e-4)


# ---------------------------------------------------------------- render
@pytest.mark.parametrize("fixture, options, window, invert", [
    ("dicom/rg1_small_j2k_lossless.dcm", [], None, False),
    ("dicom/rg1_small_j2k_lossless.dcm", ["--window", "9000", "4000"], Window(9000, 4000), False),
    ("dicom/cr_chest_monochrome1.dcm", ["--invert"], None, True),
    ("dicom/cr_chest_jpeg_baseline.dcm", ["--window", "100", "60", "--invert"], Window(100, 60), True),
    ("images/person1000_bacteria_2931.jpeg", [], None, False),
])
def test_render_writes_exactly_the_view(capsys, fixtures_dir, tmp_path, fixture, options, window, invert):
    out = tmp_path / "views" / "view.png"
    code, _, err = run(capsys, "render", fixtures_dir / fixture, "--out", out, *options)
    assert code == 0, err
    with Image.open(out) as img:
        assert img.format == "PNG" and img.mode == "L"
        written = np.asarray(img)
    expected = render(load(fixtures_dir / fixture), window, invert)
    assert np.array_equal(written, expected)
    assert not [p for p in out.parent.iterdir() if p != out]  # no temporary files left behind


def test_render_reports_warnings_and_bad_input(capsys, fixtures_dir, tmp_path):
    code, _, err = run(capsys, "render", fixtures_dir / "dicom" / "rg1_small_multiframe.dcm", "--out", tmp_path / "m.png")
    assert code == 0 and "multi-frame" in err
    bad = tmp_path / "bad.dcm"
    bad.write_text("not an image")
    code, _, err = run(capsys, "render", bad, "--out", tmp_path / "bad.png")
    assert code == 3 and str(bad) in err and not (tmp_path / "bad.png").exists()
    code, _, err = run(capsys, "render", fixtures_dir / "dicom" / "rg1_small_multiframe.dcm", "--out",
                       tmp_path / "w.png", "--window", "100", "0")
    assert code == 2 and "width" in err and not (tmp_path / "w.png").exists()


# ---------------------------------------------------------------- info
def test_info_hides_patient_identity_unless_asked(capsys, fixtures_dir):
    path = fixtures_dir / "dicom" / "rg1_small_j2k_lossless.dcm"
    code, out, _ = run(capsys, "info", path)
    assert code == 0
    for expected in ("DICOM", "460x488", "MONOCHROME1", "JPEG 2000 Image Compression (Lossless Only)", "15000/30000",
                     "CR", "hidden (10 field(s)", "--show-phi"):
        assert expected in out
    for phi in RG1_PHI:
        assert phi not in out
    code, out, _ = run(capsys, "info", path, "--show-phi")
    assert code == 0
    for phi in RG1_PHI:
        assert phi in out


def test_info_json(capsys, fixtures_dir):
    path = fixtures_dir / "dicom" / "rg1_small_multiframe.dcm"
    code, out, _ = run(capsys, "info", path, "--json")
    assert code == 0
    info = json.loads(out)
    assert info["file"] == str(path)
    assert info["format"] == "DICOM" and info["size"] == "230x244" and info["frames"] == 3
    assert info["photometric"] == "MONOCHROME1" and info["display_inverted"] is True
    assert info["bits_stored"] == 15 and info["window"] == "15000/30000"
    assert info["transfer_syntax"] == "Explicit VR Little Endian"
    assert info["identity"].startswith("hidden")
    assert any("multi-frame" in w for w in info["warnings"])
    for phi in RG1_PHI:
        assert phi not in out
    code, out, _ = run(capsys, "info", path, "--json", "--show-phi")
    identity = json.loads(out)["identity"]
    assert identity["PatientName"] == "CompressedSamples^RG1" and identity["PatientBirthDate"] == "19400305"


def test_info_on_siim_hides_its_patient_id(capsys, fixtures_dir):
    path = fixtures_dir / "dicom" / "cr_chest_jpeg_baseline.dcm"
    patient_id = load(path).identity["PatientID"]
    code, out, _ = run(capsys, "info", path, "--json")
    assert code == 0 and patient_id not in out
    assert json.loads(out)["transfer_syntax"] == "JPEG Baseline (Process 1)"


def test_info_on_a_raster_image_and_on_bad_input(capsys, fixtures_dir, tmp_path):
    code, out, _ = run(capsys, "info", fixtures_dir / "images" / "IM-0001-0001.jpeg", "--json")
    info = json.loads(out)
    assert code == 0 and info["format"] == "JPEG" and info["size"] == "224x224" and "identity" not in info
    code, out, err = run(capsys, "info", tmp_path / "missing.dcm")
    assert code == 3 and "missing.dcm" in err and out == ""


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and all(c in out for c in ("predict", "render", "scan", "info", "import"))


def test_an_unknown_command_is_a_usage_error_not_a_window(capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_gui(name, *args, **kwargs):  # the desktop app must not start for a typo
        assert "gui" not in name, name
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gui)
    code, _, err = run(capsys, "predcit", "x.png")
    assert code == 2 and "'predcit' is neither a command" in err


def test_cli_defaults_mirror_the_core():
    from cxrinspect.saliency import METHODS
    from cxrinspect.scan import SUSPICIOUS

    assert cli.METHOD_CHOICES == METHODS and cli.SUSPICIOUS_DEFAULT == SUSPICIOUS


# ---------------------------------------------------------------- render --overlay and scan
def test_render_overlay_adds_the_map_and_a_colour_bar(capsys, model_dir, fixtures_dir, tmp_path):
    src = fixtures_dir / "images" / "IM-0001-0001.jpeg"
    plain, over = tmp_path / "plain.png", tmp_path / "over.png"
    assert run(capsys, "render", src, "--out", plain)[0] == 0
    code, _, err = run(capsys, "render", src, "--out", over, "--model", model_dir, "--overlay", "gradient",
                       "--label", "Viral", "--opacity", "0.7", "--device", "cpu")
    assert code == 0, err
    a, b = np.asarray(Image.open(plain)), np.asarray(Image.open(over).convert("RGB"))
    assert b.shape[0] == a.shape[0] and b.shape[1] > a.shape[1]  # the colour bar panel on the right
    image = b[:, : a.shape[1]].astype(int)
    assert (np.abs(image - a[..., None]).max(-1) > 20).mean() > 0.01  # colour where the map is hot
    assert (image.max(-1) - image.min(-1)).max() > 50  # and it is colour, not grey
    assert run(capsys, "render", src, "--out", over, "--model", model_dir, "--overlay", "cam", "--label", "Nope")[0] == 2
    assert run(capsys, "render", src, "--out", over, "--model", model_dir, "--overlay", "cam", "--opacity", "3")[0] == 2
    code, _, err = run(capsys, "render", src, "--out", over, "--model", tmp_path / "none", "--overlay", "cam")
    assert code == 1 and "none" in err


def test_scan_command_reports_and_exits_3_on_bad_files(capsys, model_dir, mixed_dir, tmp_path):
    out = tmp_path / "scan"
    code, _, err = run(capsys, "scan", mixed_dir, "--model", model_dir, "--out", out, "--device", "cpu", "--quiet")
    assert code == 3, err
    rows = read_csv(out / "ranking.csv")
    assert len(rows) == 4 and [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    assert {"path", "score", "rank", "verdict", "hotspot_top"} <= set(rows[0])
    report = json.loads((out / "report.json").read_text())
    assert {Path(e["path"]).name for e in report["errors"]} == set(BAD_REASONS)
    assert (out / "report.html").stat().st_size > 1000 and "report.html" in err
    code, _, err = run(capsys, "scan", mixed_dir, "--model", model_dir, "--out", out, "--device", "cpu", "--quiet")
    assert code == 1 and "--resume" in err
    code, _, err = run(capsys, "scan", mixed_dir, "--model", model_dir, "--out", out, "--resume", "--quiet")
    assert code == 3 and len(read_csv(out / "ranking.csv")) == 4
    assert len((out / "scan.jsonl").read_text().splitlines()) == 8  # nothing scanned twice
    code, _, err = run(capsys, "scan", mixed_dir, "--model", model_dir, "--out", tmp_path / "s2", "--label", "Virall")
    assert code == 2 and "Virall" in err


# ---------------------------------------------------------------- the installed console script
def test_installed_console_script(model_dir, fixtures_dir, tmp_path):
    """One real process through .venv/bin/cxrinspect: the entry point works and its exit code reaches the shell."""
    script = Path(sys.executable).with_name("cxrinspect")
    assert script.is_file(), f"console script missing beside {sys.executable}: is the package installed?"
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    out_csv = tmp_path / "p.csv"
    env = dict(os.environ, CXRINSPECT_CACHE=str(tmp_path / "cache"))
    result = subprocess.run([str(script), "predict", str(fixtures_dir / "images" / "IM-0001-0001.jpeg"), str(bad),
                             "--model", str(model_dir), "--out", str(out_csv), *FAST],
                            capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 3, result.stderr
    rows = read_csv(out_csv)
    assert [r["status"] for r in rows] == ["ok", "error"]
    assert "file is empty" in rows[1]["error"] and str(bad) in result.stderr
