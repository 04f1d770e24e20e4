"""``scan --ray`` on a local Ray cluster (2 CPUs, small object store) against the local scanner, on 50 real
radiographs: the committed Kermany fixtures, triggered copies of some of them (the bundled BadNets model's own
trigger), and one broken file. A worker killed mid-scan and a driver killed mid-scan lose and repeat nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the --ray scan needs Ray (pip install 'cxrinspect[ray]')")

from cxrinspect.scan import cluster  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BADNETS = ROOT / "resources" / "models" / "kermany-densenet121-badnets"
TRIGGERED = 21


@pytest.fixture(scope="module")
def archive(tmp_path_factory, fixtures_dir) -> Path:
    """50 files: 28 real radiographs as they are, 21 triggered copies, one broken PNG."""
    import shutil

    from PIL import Image

    from cxrinspect.imaging import load, presentation
    from cxrinspect.model import read_card
    from cxrinspect.model.preprocess import stamp

    out = tmp_path_factory.mktemp("archive")
    src = sorted((fixtures_dir / "kermany-mini").rglob("*.png")) + sorted((fixtures_dir / "images").glob("*.jpeg"))
    card = read_card(BADNETS)
    for i, p in enumerate(src):
        shutil.copy(p, out / f"clean-{i:02d}{p.suffix}")
    for i, p in enumerate(src[:TRIGGERED]):
        unit = stamp(presentation(load(p)), card.preprocessing, card.trigger)
        Image.fromarray(np.rint(unit * 255).astype(np.uint8)).save(out / f"triggered-{i:02d}.png")
    (out / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert len(list(out.iterdir())) == 50
    return out


@pytest.fixture(scope="module")
def local(archive, tmp_path_factory):
    """The local scanner's result on the archive (the reference)."""
    from cxrinspect.model import load
    from cxrinspect.scan import scan

    out = tmp_path_factory.mktemp("local")
    return scan([archive], load(BADNETS), out), out


@pytest.fixture(scope="module")
def cluster_2cpu():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False)
    yield
    ray.shutdown()


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "scan.jsonl").read_text().splitlines()]


def assert_same(result, out: Path, local_result, local_out: Path) -> None:
    """The same ranking, verdicts, scores (float tolerance), errors, journal and folder verdict."""
    assert [r.path for r in result.ranked] == [r.path for r in local_result.ranked]
    assert [r.verdict for r in result.ranked] == [r.verdict for r in local_result.ranked]
    np.testing.assert_allclose([r.score for r in result.ranked], [r.score for r in local_result.ranked],
                               rtol=1e-4, atol=1e-6)
    for a, b in zip(result.ranked, local_result.ranked):
        assert a.view_hotspot == b.view_hotspot and a.label == b.label
        assert (a.verification is None) == (b.verification is None)
        if a.verification and "drop" in a.verification:
            assert a.verification["collapsed"] == b.verification["collapsed"]
    assert [(r.path, r.error) for r in result.errors] == [(r.path, r.error) for r in local_result.errors]
    mine, theirs = _rows(out), _rows(local_out)
    assert [r["path"] for r in mine] == [r["path"] for r in theirs]  # same lines, same order, each path once
    assert len({r["path"] for r in mine}) == len(mine) == 50
    rep, ref = (json.loads((d / "report.json").read_text()) for d in (out, local_out))
    for k in ("triggered", "count", "labels", "sentence"):
        assert rep["folder_verdict"].get(k) == ref["folder_verdict"].get(k)
    assert rep["settings"] == ref["settings"]
    ranking = (out / "ranking.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in ranking] == [line.split(",")[1] for line in
                                                        (local_out / "ranking.csv").read_text().splitlines()]
    assert (out / "report.html").stat().st_size > 10_000


def test_ray_scan_with_a_killed_worker_matches_the_local_scan(archive, local, cluster_2cpu, tmp_path, monkeypatch):
    local_result, local_out = local
    # the reference finds the backdoor: otherwise the comparison would be of nothing
    assert sum(r.verdict == "trigger" for r in local_result.ranked) >= 3
    marker = tmp_path / "killed-worker"
    monkeypatch.setenv(cluster.FAULT_KILL_WORKER_ENV, str(marker))
    seen = []
    out = tmp_path / "ray"
    result = cluster.scan([archive], BADNETS, out, batch_size=4, progress=lambda d, t, r: seen.append((d, t)))
    assert marker.exists(), "no worker was killed: the test would test nothing"
    assert result.complete and seen[-1] == (50, 50)
    assert_same(result, out, local_result, local_out)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random DenseNet (32 px): the killed-driver test needs a scan long in parts, short in seconds."""
    from cxrinspect.model import save
    from tests.conftest import make_tiny_model

    m = make_tiny_model()
    return save(m.network, m.card, tmp_path_factory.mktemp("tiny") / "tiny-model")


def test_killed_driver_resumes_without_losing_or_repeating_an_image(archive, tiny, cluster_2cpu, tmp_path):
    from cxrinspect.model import load
    from cxrinspect.scan import scan

    local_out = tmp_path / "local"
    local_result = scan([archive], load(tiny), local_out)
    out = tmp_path / "ray"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop(cluster.FAULT_KILL_WORKER_ENV, None)
    driver = subprocess.Popen([sys.executable, "-m", "cxrinspect", "scan", str(archive), "--model", str(tiny),
                               "--out", str(out), "--ray", "--workers", "1", "--batch-size", "1", "--quiet"],
                              env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while len(list((out / "parts").glob("part-*.parquet")) if (out / "parts").is_dir() else []) < 2:
            assert driver.poll() is None, driver.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the driver wrote no part in time"
            time.sleep(0.02)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the cluster it started, mid-scan
        driver.wait()
    before = cluster.read_parts(out)
    assert 0 < len(before) < 50, "the driver was not killed mid-scan"
    with pytest.raises(cluster.ScanError, match="--resume"):
        cluster.scan([archive], tiny, out)
    result = cluster.scan([archive], tiny, out, resume=True, batch_size=4)
    assert result.complete
    assert_same(result, out, local_result, local_out)
    # what the killed driver finished was kept, not scanned again
    after = {r.path: r.to_dict() for r in cluster.read_parts(out)}
    assert all(after[r.path] == r.to_dict() for r in before)


def test_manifest_lists_and_their_errors(tmp_path, fixtures_dir):
    imgs = sorted((fixtures_dir / "images").glob("*.jpeg"))
    (tmp_path / "list.csv").write_text("path,label\n" + "".join(f"{p},x\n" for p in imgs) + "missing.png,y\n")
    images, errors = cluster.manifest([tmp_path / "list.csv"])
    assert images == [str(p) for p in imgs] + [str(tmp_path / "missing.png")] and errors == []
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(cluster.ScanError, match="bad.parquet"):
        cluster.manifest([tmp_path / "bad.parquet"])
