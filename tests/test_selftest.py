"""`cxrinspect self-test` names what fails and exits non-zero; `--version` prints the version."""

import shutil

import pytest

from cxrinspect import __version__, cli, selftest
from cxrinspect.resources import root


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"cxrinspect {__version__}"


def test_a_failed_step_is_named_and_the_exit_code_is_1(monkeypatch, tmp_path, capsys):
    (tmp_path / "samples").mkdir()  # no DICOMs, no model
    monkeypatch.setenv("CXRINSPECT_RESOURCES", str(tmp_path))
    assert selftest.run(only=["decode DICOM", "saliency map"]) == 1
    out = capsys.readouterr().out
    assert "FAIL decode DICOM: StepFailed: no DICOM samples in" in out
    assert "FAIL saliency map:" in out and "bundled model missing" in out
    assert out.strip().endswith("self-test FAILED: decode DICOM, saliency map")


def test_an_undecodable_dicom_fails_the_decode_step(monkeypatch, tmp_path, capsys):
    samples = tmp_path / "samples"
    samples.mkdir()
    good = root() / "samples" / "cr-chest-jpeg-baseline.dcm"
    data = bytearray(good.read_bytes())
    bad = samples / "broken.dcm"
    bad.write_bytes(bytes(data[: len(data) // 2]))  # the JPEG stream cut in half
    shutil.copy(good, samples / good.name)
    monkeypatch.setenv("CXRINSPECT_RESOURCES", str(tmp_path))
    assert selftest.run(only=["decode DICOM"]) == 1
    assert "broken.dcm" in capsys.readouterr().out


def test_the_decode_step_passes_on_the_bundled_samples(capsys):
    assert selftest.run(only=["decode DICOM"]) == 0
    out = capsys.readouterr().out
    assert "JPEG Baseline" in out and "JPEG 2000" in out and "MONOCHROME1" in out
