"""Size of the frozen build: unpacked bundle, its biggest parts, and the tarball.

    python bench/package_size.py [dist/cxrinspect] [dist/cxrinspect-<version>-linux-x86_64.tar.gz]

Goal (issue 12): under 900 MB unpacked with CPU torch. Prints MB (10^6 bytes) per top-level part of
_internal/ and the 15 biggest files.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

GOAL_MB = 900


def size(path: Path) -> int:
    if path.is_symlink():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main(argv: list[str]) -> int:
    from cxrinspect import __version__

    bundle = Path(argv[0] if argv else "dist/cxrinspect")
    tarball = Path(argv[1] if len(argv) > 1 else f"dist/cxrinspect-{__version__}-linux-x86_64.tar.gz")
    if not bundle.is_dir():
        print(f"package_size: no bundle at {bundle} (make package)", file=sys.stderr)
        return 1
    total = size(bundle)
    mb = lambda n: n / 1e6  # noqa: E731
    print(f"unpacked {bundle}: {mb(total):.0f} MB (goal {GOAL_MB} MB: {'met' if mb(total) < GOAL_MB else 'NOT met'})")
    if tarball.is_file():
        print(f"tarball {tarball}: {mb(tarball.stat().st_size):.0f} MB")
    internal = bundle / "_internal"
    parts = sorted(((size(p), p.name) for p in internal.iterdir()), reverse=True)
    print("\nbiggest parts of _internal/:")
    for n, name in parts[:15]:
        print(f"  {mb(n):8.1f} MB  {100 * n / total:5.1f}%  {name}")
    files = sorted(((f.stat().st_size, f) for f in bundle.rglob("*") if f.is_file() and not f.is_symlink()),
                   key=lambda t: t[0], reverse=True)
    print("\nbiggest files:")
    for n, f in files[:15]:
        print(f"  {mb(n):8.1f} MB  {f.relative_to(bundle)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
