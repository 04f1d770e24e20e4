"""MHA, NRRD and NIfTI written with SimpleITK from a real radiograph, read back unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from cxrinspect.imaging import ImageReadError, load, render

SUFFIXES = [".mha", ".nrrd", ".nii", ".nii.gz"]


@pytest.fixture(scope="module")
def rg1_pixels(fixtures_dir):
    """The real RG1 chest, 15-bit values in uint16."""
    return load(fixtures_dir / "dicom" / "rg1_small_uncompressed.dcm").pixels


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_16_bit_radiograph_round_trips(rg1_pixels, tmp_path, suffix):
    image = sitk.GetImageFromArray(rg1_pixels)
    image.SetSpacing((0.3, 0.4))  # (x, y) in ITK: columns 0.3 mm, rows 0.4 mm
    path = tmp_path / f"rg1{suffix}"
    sitk.WriteImage(image, str(path))
    rg = load(path)
    assert rg.format == "itk"
    assert rg.pixels.dtype == np.uint16 and rg.shape == rg1_pixels.shape
    assert np.array_equal(rg.pixels, rg1_pixels)
    assert rg.pixel_spacing == pytest.approx((0.4, 0.3))  # (row, column)
    assert rg.window.low == rg1_pixels.min() and rg.window.high == rg1_pixels.max()
    assert rg.metadata["size"] == "460x488"


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_8_bit_and_float_images_round_trip(kermany_grey, tmp_path, suffix):
    for array in (kermany_grey, kermany_grey.astype(np.float32) / 255.0 - 0.25):
        path = tmp_path / f"k_{array.dtype}{suffix}"
        sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
        rg = load(path)
        np.testing.assert_array_equal(rg.pixels, array.astype(np.float32))
        view = render(rg)
        assert view.min() == 0 and view.max() == 255


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_detected_by_content_when_misnamed(rg1_pixels, tmp_path, suffix):
    original = tmp_path / f"rg1{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(rg1_pixels), str(original))
    renamed = tmp_path / "rg1_export.dat"
    renamed.write_bytes(original.read_bytes())
    rg = load(renamed)
    assert rg.format == "itk" and np.array_equal(rg.pixels, rg1_pixels)


def test_colour_image_is_converted_to_grey_with_a_warning(kermany_grey, tmp_path):
    g = kermany_grey.astype(np.float64)
    rgb = np.stack([g, g * 0.8, g * 0.5], axis=-1).round().astype(np.uint8)
    path = tmp_path / "rgb.mha"
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(path))
    rg = load(path)
    assert any("grey" in w for w in rg.warnings)
    np.testing.assert_allclose(rg.pixels, rgb @ np.array([0.299, 0.587, 0.114]), atol=1e-3)


def test_volume_gives_the_first_slice_and_a_warning(rg1_pixels, tmp_path):
    volume = np.stack([rg1_pixels, rg1_pixels[::-1], rg1_pixels[:, ::-1]])
    path = tmp_path / "volume.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(volume), str(path))
    rg = load(path)
    assert np.array_equal(rg.pixels, rg1_pixels)
    assert any("3 slices" in w for w in rg.warnings)


def test_header_claiming_a_huge_image_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.mha"
    path.write_bytes(b"ObjectType = Image\nNDims = 2\nDimSize = 100000 100000\nElementType = MET_USHORT\n"
                     b"ElementDataFile = LOCAL\n" + b"\x00" * 64)
    with pytest.raises(ImageReadError) as e:
        load(path)
    assert str(path) in str(e.value) and "limit" in str(e.value)


def test_corrupt_nifti_is_an_image_read_error(tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + b"not really gzip" * 10)
    with pytest.raises(ImageReadError) as e:
        load(path)
    assert str(path) in str(e.value)
