"""DICOM radiographs: every encoding, the display pipeline of PS3.3 C.11, detection by content, headers edited in tmp_path."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from cxrinspect.imaging import Window, load, presentation, render
from cxrinspect.imaging.formats import sniff

FIXTURES = {  # name: (rows, columns, transfer syntax name, photometric)
    "cr_chest_jpeg_baseline.dcm": (1024, 1024, "JPEG Baseline (Process 1)", "MONOCHROME2"),
    "cr_chest_monochrome1.dcm": (1024, 1024, "JPEG Baseline (Process 1)", "MONOCHROME1"),
    "rg1_small_j2k_lossless.dcm": (488, 460, "JPEG 2000 Image Compression (Lossless Only)", "MONOCHROME1"),
    "rg1_small_j2k_lossy.dcm": (488, 460, "JPEG 2000 Image Compression", "MONOCHROME1"),
    "rg1_small_uncompressed.dcm": (488, 460, "Explicit VR Little Endian", "MONOCHROME1"),
    "rg1_small_multiframe.dcm": (244, 230, "Explicit VR Little Endian", "MONOCHROME1"),
}
SHARED = {
    "RG1_J2KR.dcm": (1955, 1841, "JPEG 2000 Image Compression (Lossless Only)", "MONOCHROME1"),
    "RG1_J2KI.dcm": (1955, 1841, "JPEG 2000 Image Compression", "MONOCHROME1"),
    "siim_cr_chest_jpeg_baseline.dcm": (1024, 1024, "JPEG Baseline (Process 1)", "MONOCHROME2"),
    "siim_cr_chest_monochrome1.dcm": (1024, 1024, "JPEG Baseline (Process 1)", "MONOCHROME1"),
}


def check_loaded(rg, rows, cols, syntax, photometric):
    assert rg.format == "dicom"
    assert rg.shape == (rows, cols)
    assert rg.pixels.dtype in (np.uint16, np.float32)
    assert rg.pixels.flags.c_contiguous
    assert rg.metadata["transfer_syntax"] == syntax
    assert rg.metadata["photometric"] == photometric
    assert rg.inverted == (photometric == "MONOCHROME1")
    assert rg.pixels.std() > 10  # a real image, not a constant
    view = render(rg)
    assert view.dtype == np.uint8 and view.shape == (rows, cols)
    assert view.min() < 64 and view.max() > 192  # uses the grey range


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_every_fixture_encoding_loads(dicom_dir, name):
    check_loaded(load(dicom_dir / name), *FIXTURES[name])


@pytest.fixture(scope="module")
def shared_dicom(shared_data):
    """load() of a file in ../shared/data/dicom, each decoded once per module (RG1 is 1955x1841 J2K: ~1 s)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load(shared_data / "dicom" / name)
        return cache[name]

    return get


@pytest.mark.parametrize("name", sorted(SHARED))
def test_every_shared_original_loads(shared_dicom, name):
    check_loaded(shared_dicom(name), *SHARED[name])


def test_rg1_keeps_full_depth_and_its_window(dicom_dir):
    rg = load(dicom_dir / "rg1_small_uncompressed.dcm")
    assert rg.pixels.dtype == np.uint16
    assert rg.pixels.max() > 255 * 4  # 15-bit data, not squeezed to 8 bits
    assert len(np.unique(rg.pixels)) > 1000
    assert rg.window == Window(15000, 30000)
    assert rg.metadata["bits_stored"] == 15


def test_j2k_lossless_is_bit_exact(dicom_dir):
    raw = load(dicom_dir / "rg1_small_uncompressed.dcm").pixels
    j2k = load(dicom_dir / "rg1_small_j2k_lossless.dcm").pixels
    assert np.array_equal(raw, j2k)


def assert_lossy_close(lossless, lossy):
    a, b = lossless.pixels.astype(np.float64), lossy.pixels.astype(np.float64)
    assert not np.array_equal(a, b), "the lossy file decoded bit-exact: not a lossy test any more"
    assert np.abs(a - b).mean() < 0.05 * a.std()
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999
    views = np.abs(render(lossless).astype(int) - render(lossy).astype(int))
    assert views.mean() < 1.5 and np.percentile(views, 99) <= 8


def test_j2k_lossy_is_close_to_lossless(dicom_dir):
    assert_lossy_close(load(dicom_dir / "rg1_small_j2k_lossless.dcm"), load(dicom_dir / "rg1_small_j2k_lossy.dcm"))


def test_shared_j2k_lossy_is_close_to_lossless(shared_dicom):
    assert_lossy_close(shared_dicom("RG1_J2KR.dcm"), shared_dicom("RG1_J2KI.dcm"))


def test_fixture_is_the_original_downsampled(dicom_dir, shared_dicom):
    """The committed fixture is what tests/fixtures/build.py says: RG1 area-averaged 4x."""
    a = shared_dicom("RG1_J2KR.dcm").pixels.astype(np.float64)
    h, w = a.shape[0] // 4 * 4, a.shape[1] // 4 * 4
    small = a[:h, :w].reshape(h // 4, 4, w // 4, 4).mean(axis=(1, 3)).round()
    assert np.array_equal(small, load(dicom_dir / "rg1_small_uncompressed.dcm").pixels)


# ---------------------------------------------------------------- photometric inversion
def assert_exact_inverse(mono2_path, mono1_path):
    mono2, mono1 = load(mono2_path), load(mono1_path)
    assert np.array_equal(mono2.pixels, mono1.pixels)  # the same stored pixels...
    assert not mono2.inverted and mono1.inverted
    a, b = render(mono2), render(mono1)
    assert np.array_equal(b.astype(int), 255 - a.astype(int))  # ...displayed as exact negatives


def test_siim_monochrome1_renders_as_exact_inverse(dicom_dir):
    assert_exact_inverse(dicom_dir / "cr_chest_jpeg_baseline.dcm", dicom_dir / "cr_chest_monochrome1.dcm")


def test_shared_siim_monochrome1_renders_as_exact_inverse(shared_data):
    d = shared_data / "dicom"
    assert_exact_inverse(d / "siim_cr_chest_jpeg_baseline.dcm", d / "siim_cr_chest_monochrome1.dcm")


def region_means(view):
    """Mean grey of the two upper lung fields and of the central spine/mediastinum column.

    Regions chosen by looking at `cxrinspect render` of RG1 (a PA chest): lungs at 15-35% height,
    15-32% / 62-80% width; the spine and mediastinum at 45-53% width, 15-60% height.
    """
    h, w = view.shape
    v = view.astype(np.float64)

    def mean(y0, y1, x0, x1):
        return v[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)].mean()

    return mean(.15, .35, .15, .32), mean(.15, .35, .62, .80), mean(.15, .60, .45, .53)


def assert_dark_lungs_bright_spine(rg):
    assert rg.metadata["photometric"] == "MONOCHROME1"
    left, right, spine = region_means(render(rg))
    # measured: lungs about 153 and 139, spine about 220 of 255; a wrong inversion gives the reverse
    assert spine > 190
    assert spine - max(left, right) > 40
    # the user's invert flips it back: bright lungs, dark spine
    left, right, spine = region_means(render(rg, invert=True))
    assert spine < min(left, right) - 40


@pytest.mark.parametrize("name", ["rg1_small_j2k_lossless.dcm", "rg1_small_j2k_lossy.dcm",
                                  "rg1_small_uncompressed.dcm", "rg1_small_multiframe.dcm"])
def test_rg1_shows_dark_lungs_and_bright_spine(dicom_dir, name):
    assert_dark_lungs_bright_spine(load(dicom_dir / name))


@pytest.mark.parametrize("name", ["RG1_J2KR.dcm", "RG1_J2KI.dcm"])
def test_shared_rg1_shows_dark_lungs_and_bright_spine(shared_dicom, name):
    assert_dark_lungs_bright_spine(shared_dicom(name))


def test_monochrome1_with_presentation_lut_inverse_is_one_inversion(edited_dicom):
    """Weasis #372: MONOCHROME1 + Presentation LUT Shape INVERSE is the same inversion said twice."""
    mono1 = edited_dicom("rg1_small_uncompressed.dcm", name="mono1.dcm")
    both = edited_dicom("rg1_small_uncompressed.dcm", lambda ds: setattr(ds, "PresentationLUTShape", "INVERSE"),
                        name="mono1_inverse.dcm")
    mono2 = edited_dicom("rg1_small_uncompressed.dcm", lambda ds: setattr(ds, "PhotometricInterpretation", "MONOCHROME2"),
                         name="mono2.dcm")
    rg = load(both)
    assert rg.metadata["presentation_lut_shape"] == "INVERSE" and rg.inverted
    assert np.array_equal(render(rg), render(load(mono1)))
    assert np.array_equal(render(rg).astype(int), 255 - render(load(mono2)).astype(int))
    assert_dark_lungs_bright_spine(rg)


def test_monochrome2_with_presentation_lut_inverse_is_one_inversion(edited_dicom):
    def edit(ds):
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PresentationLUTShape = "INVERSE"

    plain = load(edited_dicom("cr_chest_jpeg_baseline.dcm", name="plain.dcm"))
    inverse = load(edited_dicom("cr_chest_jpeg_baseline.dcm", edit, name="inverse.dcm"))
    assert inverse.inverted
    assert np.array_equal(render(inverse).astype(int), 255 - render(plain).astype(int))


def test_presentation_lut_identity_does_not_invert(edited_dicom):
    plain = load(edited_dicom("cr_chest_jpeg_baseline.dcm", name="plain.dcm"))
    identity = load(edited_dicom("cr_chest_jpeg_baseline.dcm",
                                 lambda ds: setattr(ds, "PresentationLUTShape", "IDENTITY"), name="identity.dcm"))
    assert not identity.inverted
    assert np.array_equal(render(identity), render(plain))


def test_monochrome1_is_inverted_after_the_voi_window(edited_dicom, dicom_window):
    """cornerstone3D #2215: invert the windowed output (1 - window(x)), never the input (window(max - x))."""
    center, width = 9000.0, 2000.0  # narrow: a band of the lung-field values

    def edit(ds):
        ds.WindowCenter, ds.WindowWidth = center, width

    rg = load(edited_dicom("rg1_small_uncompressed.dcm", edit))
    assert rg.window == Window(center, width) and rg.inverted
    x = rg.pixels
    out = presentation(rg)
    expected = 1.0 - dicom_window(x, center, width)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # pixels inside the window get intermediate greys, in reverse order of their values
    inside = (x > center - width / 2) & (x < center + width / 2)
    assert inside.sum() > 1000
    i, j = np.argmin(np.where(inside, x, np.inf)), np.argmax(np.where(inside, x, -np.inf))
    assert out.flat[i] > out.flat[j]
    # the wrong order (invert the stored values, then window) gives a different image here
    for top in (2 ** 15 - 1, float(x.max()) + float(x.min())):
        wrong = dicom_window(top - x.astype(np.float64), center, width)
        assert np.abs(out - wrong).mean() > 0.2
    # the rendered pixels follow the same rule
    view = render(rg)
    np.testing.assert_array_equal(view, np.rint(expected * 255).astype(np.uint8))


def voi_lut_item(table: np.ndarray, first: int, bits: int, vr: str) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(table) % 65536, first, bits]
    if vr == "OW":
        item.add_new(0x00283006, "OW", table.astype("<u2").tobytes())
    else:
        item.add_new(0x00283006, "US", [int(v) for v in table])
    item.LUTExplanation = "test curve"
    return item


@pytest.mark.parametrize("vr", ["US", "OW"])
def test_voi_lut_wider_than_the_data_range(edited_dicom, vr):
    """Weasis #373: a VOI LUT whose input range is far wider than the data's; the output must follow the table."""
    first, n, bits = 500, 30000, 12  # input range 500..30499; the data is about 1050..26330
    table = np.rint(4095 * np.sqrt(np.linspace(0, 1, n))).astype(np.uint16)  # non-linear, 0..4095

    def edit(ds):
        del ds.WindowCenter, ds.WindowWidth
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelRepresentation = 0
        ds.VOILUTSequence = [voi_lut_item(table, first, bits, vr)]

    rg = load(edited_dicom("rg1_small_uncompressed.dcm", edit))
    assert rg.voi_lut is not None and rg.voi_lut.table.size == n
    x = rg.pixels.astype(np.int64)
    assert first < x.min() and x.max() < first + n - 1  # the LUT is wider than the data on both sides
    expected = table[x - first] / 4095.0
    out = presentation(rg)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert 0.1 < out.min() and out.max() < 0.95  # not stretched to the data's own range (about 0.14..0.93)
    np.testing.assert_array_equal(render(rg), np.rint(expected * 255).astype(np.uint8))
    # the default window spans the LUT's input range, so a first user adjustment starts from it
    assert rg.window.low <= x.min() and rg.window.high >= x.max()
    # an explicit window still works (the LUT is only the default)
    np.testing.assert_array_equal(render(rg, Window(15000, 30000)),
                                  render(load(edited_dicom("rg1_small_uncompressed.dcm", name="ref.dcm")),
                                         Window(15000, 30000), invert=True))


def test_voi_lut_clamps_values_outside_its_range(edited_dicom):
    first, n = 10000, 8192
    table = np.linspace(0, 65535, n).round().astype(np.uint16)

    def edit(ds):
        del ds.WindowCenter, ds.WindowWidth
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.VOILUTSequence = [voi_lut_item(table, first, 16, "US")]

    rg = load(edited_dicom("rg1_small_uncompressed.dcm", edit))
    x = rg.pixels.astype(np.int64)
    out = presentation(rg)
    assert (x < first).any() and (x > first + n - 1).any()
    assert np.all(out[x < first] == 0.0) and np.all(out[x > first + n - 1] == 1.0)
    np.testing.assert_allclose(out, table[np.clip(x - first, 0, n - 1)] / 65535.0, atol=1e-6)


def test_rescale_slope_and_intercept_are_applied(edited_dicom):
    def edit(ds):
        ds.RescaleSlope, ds.RescaleIntercept = 2, -3000
        ds.WindowCenter, ds.WindowWidth = 2 * 15000 - 3000, 2 * 30000  # the same window in modality units

    stored = load(edited_dicom("rg1_small_uncompressed.dcm", name="stored.dcm"))
    rg = load(edited_dicom("rg1_small_uncompressed.dcm", edit))
    np.testing.assert_array_equal(rg.pixels, stored.pixels.astype(np.float64) * 2 - 3000)
    assert rg.pixels.dtype == np.float32 and rg.pixels.min() < 0  # modality values may be negative
    assert "slope 2" in rg.metadata["rescale"] and "intercept -3000" in rg.metadata["rescale"]
    assert np.abs(render(rg).astype(int) - render(stored).astype(int)).max() <= 1


def test_multiframe_gives_the_first_frame_and_a_warning(dicom_dir):
    rg = load(dicom_dir / "rg1_small_multiframe.dcm")
    assert rg.metadata["frames"] == 3
    assert any("multi-frame" in w and "3 frames" in w and "first" in w for w in rg.warnings)
    # build.py stored [frame, frame flipped up-down, frame flipped left-right], frame = uncompressed[::2, ::2]
    frame = load(dicom_dir / "rg1_small_uncompressed.dcm").pixels[::2, ::2]
    assert np.array_equal(rg.pixels, frame)
    assert not np.array_equal(rg.pixels, frame[::-1]) and not np.array_equal(rg.pixels, frame[:, ::-1])


def test_single_frame_has_no_warnings(dicom_dir):
    assert load(dicom_dir / "rg1_small_j2k_lossless.dcm").warnings == []


# ---------------------------------------------------------------- detection by content
@pytest.mark.parametrize("fixture", ["rg1_small_j2k_lossless.dcm", "cr_chest_jpeg_baseline.dcm"])
@pytest.mark.parametrize("new_name", ["IM000123", "scan.png", "image.jpg", "study.txt"])
def test_dicom_is_detected_by_content_not_name(dicom_dir, tmp_path, fixture, new_name):
    copy = tmp_path / new_name
    shutil.copy(dicom_dir / fixture, copy)
    assert sniff(str(copy)) == "dicom"  # the DICM magic at byte 128, whatever the name says
    rg = load(copy)
    assert rg.format == "dicom"
    assert np.array_equal(rg.pixels, load(dicom_dir / fixture).pixels)


def test_dicom_without_preamble_loads(dicom_dir, tmp_path):
    """A data set written with its file meta but without the 128-byte preamble and 'DICM'."""
    ds = pydicom.dcmread(dicom_dir / "rg1_small_j2k_lossless.dcm")
    ds.preamble = None
    out = tmp_path / "no_preamble"
    ds.save_as(out, enforce_file_format=False)
    head = out.read_bytes()[:132]
    assert head[128:132] != b"DICM" and head[:2] == b"\x02\x00"  # starts straight with group 0002
    rg = load(out)
    assert rg.format == "dicom" and rg.inverted
    assert np.array_equal(rg.pixels, load(dicom_dir / "rg1_small_uncompressed.dcm").pixels)


def test_bare_implicit_vr_dataset_without_file_meta_loads(dicom_dir, tmp_path):
    """Old archives hold bare data sets: no preamble, no file meta, implicit VR little endian."""
    ds = pydicom.dcmread(dicom_dir / "rg1_small_uncompressed.dcm")
    ds.preamble = None
    del ds.file_meta
    out = tmp_path / "bare.dcm"
    ds.save_as(out, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert out.read_bytes()[:2] == b"\x08\x00"  # starts with group 0008, no meta
    rg = load(out)
    assert np.array_equal(rg.pixels, load(dicom_dir / "rg1_small_uncompressed.dcm").pixels)
    assert rg.inverted and rg.window == Window(15000, 30000)
    assert "no file meta" in rg.metadata["transfer_syntax"]


# ---------------------------------------------------------------- metadata and malformed headers
def test_identity_is_kept_apart_from_the_printable_summary(dicom_dir):
    rg = load(dicom_dir / "rg1_small_j2k_lossless.dcm")
    assert rg.identity["PatientName"] == "CompressedSamples^RG1"
    assert rg.identity["PatientID"] == "9RG1"
    assert rg.identity["PatientBirthDate"] == "19400305"
    summary = repr(rg.metadata)
    for value in rg.identity.values():
        assert value not in summary
    assert rg.metadata["Modality"] == "CR" and rg.metadata["BodyPartExamined"] == "CHEST"
    assert rg.header is not None and "PixelData" not in rg.header  # header kept for tag browsers, pixels dropped


def test_malformed_window_tags_are_ignored_with_a_warning(dicom_dir, tmp_path):
    data = (dicom_dir / "rg1_small_uncompressed.dcm").read_bytes()
    assert data.count(b"15000 ") == 1  # Window Center '15000', padded to even length
    bad = tmp_path / "bad_window.dcm"
    bad.write_bytes(data.replace(b"15000 ", b"abcde "))
    rg = load(bad)
    assert any("Window" in w for w in rg.warnings)
    assert rg.window == Window.from_range(float(rg.pixels.min()), float(rg.pixels.max()))


def test_pixel_spacing(edited_dicom):
    rg = load(edited_dicom("rg1_small_uncompressed.dcm", lambda ds: setattr(ds, "PixelSpacing", [0.4, 0.3])))
    assert rg.pixel_spacing == (0.4, 0.3)
    # RG1 itself says 0\0: unknown, not zero
    assert load(edited_dicom("rg1_small_uncompressed.dcm", name="orig.dcm")).pixel_spacing is None
    # a single value (VM 1, malformed) is ignored, not a crash
    assert load(edited_dicom("rg1_small_uncompressed.dcm", lambda ds: setattr(ds, "PixelSpacing", "0.5"),
                             name="vm1.dcm")).pixel_spacing is None


def test_malformed_voi_lut_is_ignored_with_a_warning(edited_dicom):
    def edit(ds):
        del ds.WindowCenter, ds.WindowWidth
        item = Dataset()
        item.LUTExplanation = "descriptor missing"
        item.add_new(0x00283006, "US", [0, 100, 200])
        ds.VOILUTSequence = [item]

    rg = load(edited_dicom("rg1_small_uncompressed.dcm", edit))
    assert rg.voi_lut is None and any("VOI LUT" in w for w in rg.warnings)
    assert rg.window == Window.from_range(float(rg.pixels.min()), float(rg.pixels.max()))
