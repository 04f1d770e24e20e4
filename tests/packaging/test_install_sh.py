"""packaging/install.sh installs per user from an unpacked tarball and --uninstall removes exactly what
it installed (files that were there before stay). Runs on a tiny stand-in bundle."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def fake_tarball(tmp_path: Path) -> Path:
    top = tmp_path / "cxrinspect-0.1.0"
    app = top / "cxrinspect"
    icons = app / "_internal" / "resources" / "icons"
    icons.mkdir(parents=True)
    exe = app / "cxrinspect"
    exe.write_text("#!/bin/sh\necho cxrinspect 0.1.0\n")
    exe.chmod(0o755)
    (app / "cxrinspect-train").symlink_to("cxrinspect")
    (app / "_internal" / "lib.so").write_bytes(b"x")
    for f in (ROOT / "resources" / "icons").iterdir():
        shutil.copy(f, icons / f.name)
    (top / "share").mkdir()
    for f in ("cxrinspect.desktop", "io.github.cxrinspect.metainfo.xml"):
        shutil.copy(ROOT / "packaging" / f, top / "share" / f)
    shutil.copy(ROOT / "packaging" / "install.sh", top / "install.sh")
    return top


def tree(home: Path) -> set[str]:
    return {str(p.relative_to(home)) for p in home.rglob("*")}


@pytest.mark.skipif(not shutil.which("bash"), reason="needs bash")
def test_install_then_uninstall_leaves_the_home_as_it_was(tmp_path):
    top = fake_tarball(tmp_path)
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "mine").write_text("a user's own file")
    before = tree(home)
    env = {**os.environ, "HOME": str(home)}
    env.pop("XDG_DATA_HOME", None)
    env.pop("PREFIX", None)
    r = subprocess.run([str(top / "install.sh")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert subprocess.run([str(home / ".local/bin/cxrinspect")], capture_output=True, text=True).stdout.strip() \
        == "cxrinspect 0.1.0"
    desktop = (home / ".local/share/applications/cxrinspect.desktop").read_text()
    assert f"Exec={home}/.local/lib/cxrinspect/cxrinspect %f" in desktop
    assert "MimeType=application/dicom;" in desktop
    assert (home / ".local/share/icons/hicolor/48x48/apps/cxrinspect.png").is_file()
    assert (home / ".local/share/icons/hicolor/scalable/apps/cxrinspect.svg").is_file()
    assert (home / ".local/lib/cxrinspect/install-manifest.txt").is_file()
    # installing again over an install is an update, not a second copy
    assert subprocess.run([str(top / "install.sh")], env=env, capture_output=True).returncode == 0
    r = subprocess.run([str(top / "install.sh"), "--uninstall"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert tree(home) == before


def test_uninstall_without_an_install_says_so(tmp_path):
    top = fake_tarball(tmp_path)
    env = {**os.environ, "HOME": str(tmp_path / "empty")}
    env.pop("XDG_DATA_HOME", None)
    r = subprocess.run([str(top / "install.sh"), "--uninstall"], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "nothing to uninstall" in r.stderr


def test_desktop_entry_and_metainfo_validate():
    desktop = (ROOT / "packaging" / "cxrinspect.desktop").read_text()
    assert "MimeType=application/dicom;image/png;image/jpeg;" in desktop
    if shutil.which("desktop-file-validate"):
        r = subprocess.run(["desktop-file-validate", str(ROOT / "packaging" / "cxrinspect.desktop")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    if shutil.which("appstreamcli"):
        r = subprocess.run(["appstreamcli", "validate", "--no-net",
                            str(ROOT / "packaging" / "io.github.cxrinspect.metainfo.xml")], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
