"""The real window on a real X server (Xvfb): it starts, shows an image with prediction and overlay, and the
screenshots are saved ($CXRINSPECT_SCREENSHOTS, else the test's temporary folder; the path is printed)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DRIVER = Path(__file__).with_name("xvfb_driver.py")


@pytest.fixture
def xvfb():
    """A private Xvfb on a display it picks itself (-displayfd), stopped afterwards."""
    binary = shutil.which("Xvfb")
    if binary is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb; .ci/run does it)")
    read, write = os.pipe()
    server = subprocess.Popen([binary, "-displayfd", str(write), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                              pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(write)
    try:
        with os.fdopen(read) as f:
            display = f.readline().strip()
        if not display:
            pytest.fail(f"Xvfb did not start: {server.stderr.read().decode(errors='replace')[-2000:]}")
        yield f":{display}"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_real_window_under_xvfb(xvfb, image_folder, tiny_model_dir, tmp_path):
    from PySide6.QtGui import QImage

    out = Path(os.environ.get("CXRINSPECT_SCREENSHOTS") or tmp_path / "screenshots")
    env = {**os.environ, "DISPLAY": xvfb, "QT_QPA_PLATFORM": "xcb", "MPLBACKEND": "Agg"}
    env.pop("WAYLAND_DISPLAY", None)
    run = subprocess.run([sys.executable, str(DRIVER), str(image_folder), str(tiny_model_dir), str(out)], env=env,
                         check=False, capture_output=True, text=True, timeout=300)
    print(run.stdout)
    print(f"screenshots in {out}")
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert "platform xcb" in run.stdout
    for name in ("screen", "window", "view"):
        image = QImage(str(out / f"{name}.png"))
        assert not image.isNull() and image.width() > 300, name
        rgb = image.convertToFormat(QImage.Format.Format_RGB32)
        pixels = np.frombuffer(rgb.constBits(), np.uint8).reshape(rgb.height(), rgb.bytesPerLine() // 4, 4)
        assert pixels[..., :3].std() > 10, f"{name}.png is blank"
