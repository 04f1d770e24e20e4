"""Cold start to the first painted window: the frozen app versus `python -m cxrinspect.gui`, same run.

    python bench/startup.py [--frozen dist/cxrinspect/cxrinspect] [--runs 3] [FILE]

Each run starts a fresh process under Xvfb (or $DISPLAY / offscreen when there is no Xvfb) with
CXRINSPECT_FIRST_PAINT set: the app writes the seconds from its process start to the window's first
paint event and quits. Runs alternate frozen / source so machine load hits both alike. "Cold" here
means a new process; the OS file cache is warm after the first run (dropping it needs root and would
measure the disk). Prints each run, the medians and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def first_paint(cmd: list[str], env: dict, timeout: float = 300) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "first-paint.txt"
        e = {**env, "CXRINSPECT_FIRST_PAINT": str(out), "XDG_CONFIG_HOME": tmp}
        r = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=timeout)
        if not out.is_file():
            raise RuntimeError(f"{cmd[0]} exited {r.returncode} without painting: {r.stderr[-2000:]}")
        return float(out.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file", nargs="?", default=str(ROOT / "resources/samples/cr-chest-pa-monochrome1-j2k.dcm"))
    ap.add_argument("--frozen", default=str(ROOT / "dist/cxrinspect/cxrinspect"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not Path(args.frozen).is_file():
        print(f"startup: no frozen app at {args.frozen} (make package)", file=sys.stderr)
        return 1
    env = dict(os.environ, MPLBACKEND="Agg")
    xvfb = None
    if shutil.which("Xvfb"):
        display = f":{150 + os.getpid() % 100}"
        xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
    elif not env.get("DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    commands = {"frozen": [args.frozen, args.file], "source": [sys.executable, "-m", "cxrinspect.gui", args.file]}
    times: dict[str, list[float]] = {k: [] for k in commands}
    try:
        for i in range(args.runs):
            for name, cmd in commands.items():
                t = first_paint(cmd, env)
                times[name].append(t)
                print(f"run {i + 1} {name:<6} first paint {t:.2f} s", flush=True)
    finally:
        if xvfb:
            xvfb.terminate()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"median first paint: frozen {med['frozen']:.2f} s, source {med['source']:.2f} s "
          f"(frozen / source = {med['frozen'] / med['source']:.2f}); platform {env.get('QT_QPA_PLATFORM', 'xcb')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
