"""Folder discovery: recursive, natural order, hidden things skipped, non-images and unreadable folders reported."""

from __future__ import annotations

import os
import shutil

import pytest

from cxrinspect.imaging import discover, natural_key


@pytest.fixture
def tree(tmp_path, dicom_dir, images_dir):
    """A small archive made of real files:

    root/img1.jpeg img2.jpeg img10.jpeg   (natural order 1, 2, 10; plain sort would give 1, 10, 2)
    root/IMG3.JPEG                        (upper case)
    root/series2/IM000001                 (DICOM, no extension)
    root/series10/scan.dcm                (DICOM)
    root/notes.txt, root/series2/DICOMDIR.txt  (not images)
    root/.thumb.jpeg, root/.cache/x.dcm   (hidden: skipped)
    """
    root = tmp_path / "root"
    jpeg = images_dir / "IM-0001-0001.jpeg"
    for name in ("img1.jpeg", "img2.jpeg", "img10.jpeg", "IMG3.JPEG", ".thumb.jpeg"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(jpeg, root / name)
    for rel in ("series2/IM000001", "series10/scan.dcm", ".cache/x.dcm"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(dicom_dir / "rg1_small_j2k_lossless.dcm", root / rel)
    (root / "notes.txt").write_text("reading list\n")
    (root / "series2" / "DICOMDIR.txt").write_text("index\n")
    return root


def rel(root, paths):
    return [os.path.relpath(p, root) for p in paths]


def test_recursive_natural_order_hidden_skipped(tree):
    found = discover([tree])
    assert rel(tree, found.images) == ["img1.jpeg", "img2.jpeg", "IMG3.JPEG", "img10.jpeg",
                                       os.path.join("series2", "IM000001"), os.path.join("series10", "scan.dcm")]
    assert not any(".thumb" in p or ".cache" in p for p in found.images)
    assert not any(".thumb" in p or ".cache" in p for p, _ in found.skipped)  # hidden: not even reported


def test_non_images_are_reported_in_skipped_not_fatal(tree):
    found = discover([tree])
    skipped = {os.path.relpath(p, tree): reason for p, reason in found.skipped}
    assert skipped == {"notes.txt": "not an image file", os.path.join("series2", "DICOMDIR.txt"): "not an image file"}
    assert found.errors == []  # a non-image is not a failure


def test_files_named_as_images_are_kept_even_when_broken(tree):
    """A corrupt scan.png must fail in the batch with its own error, not vanish as 'not an image'."""
    (tree / "broken.png").write_text("this is not a PNG")
    (tree / "empty.dcm").write_bytes(b"")
    found = discover([tree])
    assert str(tree / "broken.png") in found.images and str(tree / "empty.dcm") in found.images


def test_named_files_are_kept_and_missing_paths_are_errors(tree, tmp_path):
    text = tree / "notes.txt"
    missing = tmp_path / "nowhere.dcm"
    found = discover([text, missing, tree / "img2.jpeg"])
    assert found.images == [str(text), str(tree / "img2.jpeg")]  # named on purpose: kept, in the given order
    assert found.skipped == found.errors == [(str(missing), "no such file or directory")]


def test_a_file_given_twice_is_listed_once(tree):
    found = discover([tree / "img1.jpeg", tree, tree / "img1.jpeg"])
    assert found.images.count(str(tree / "img1.jpeg")) == 1


def test_unreadable_directory_is_reported_not_fatal(tree, block_folder):
    blocked = block_folder(tree / "series2")
    found = discover([tree])
    assert rel(tree, found.images) == ["img1.jpeg", "img2.jpeg", "IMG3.JPEG", "img10.jpeg",
                                       os.path.join("series10", "scan.dcm")]
    assert (blocked, "cannot read directory (Permission denied)") in found.skipped
    assert found.errors == [(blocked, "cannot read directory (Permission denied)")]


def test_natural_key():
    names = ["img10.png", "img2.png", "IMG1.png", "img2b.png", "img02a.png", "a/b100", "a/b20"]
    assert sorted(names, key=natural_key) == ["a/b20", "a/b100", "IMG1.png", "img2.png", "img02a.png", "img2b.png",
                                              "img10.png"]
    # digits other than 0-9: '²' is not a decimal digit (stays text), Arabic-Indic '٣' is one (reads as 3)
    assert sorted(["img1²", "img10", "img2"], key=natural_key) == ["img1²", "img2", "img10"]
    assert sorted(["x١٠", "x٣"], key=natural_key) == ["x٣", "x١٠"]


def test_check_content_off_keeps_everything_not_hidden(tree):
    found = discover([tree], check_content=False)
    assert str(tree / "notes.txt") in found.images
    assert not any(".thumb" in p for p in found.images)
