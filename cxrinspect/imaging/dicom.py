"""DICOM radiographs through pydicom, compressed syntaxes through pylibjpeg (JPEG, JPEG-LS, JPEG 2000)."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import apply_modality_lut, pixel_array
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .radiograph import ImageReadError, Radiograph, VoiLut, Window, luma
from .limits import MAX_PIXELS

IDENTITY_TAGS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "OtherPatientIDs",
                 "AccessionNumber", "InstitutionName", "ReferringPhysicianName", "StudyID", "StudyDate")
SUMMARY_TAGS = ("Modality", "BodyPartExamined", "ViewPosition", "Manufacturer", "ManufacturerModelName",
                "StudyDescription", "SeriesDescription")


def looks_like_bare_dicom(path: str) -> bool:
    """A DICOM data set written without the Part 10 preamble: parse the header and look for image tags."""
    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        return "Rows" in ds and "Columns" in ds and ("SOPClassUID" in ds or "PhotometricInterpretation" in ds)
    except Exception:
        return False


def _first(ds, keyword: str) -> float | None:
    """The first value of a numeric tag, or None when absent, empty or malformed (e.g. a DS of 'abc')."""
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        if isinstance(value, pydicom.multival.MultiValue):
            value = value[0] if len(value) else None
        value = None if value is None else float(value)
    except (ValueError, TypeError, OverflowError):
        return None
    return value if value is not None and np.isfinite(value) else None


def _lut_table(ds, item) -> np.ndarray:
    """LUT Data as numbers; the tag is 'US or OW', and as OW pydicom hands over raw bytes."""
    data = item.LUTData
    if isinstance(data, (bytes, bytearray)):
        entries = int(item.LUTDescriptor[0]) or 2 ** 16
        if len(data) == entries:  # one byte per entry
            return np.frombuffer(data, dtype=np.uint8).astype(np.float32)
        little = getattr(ds, "original_encoding", (None, True))[1] is not False
        return np.frombuffer(data[: len(data) // 2 * 2], dtype="<u2" if little else ">u2").astype(np.float32)
    return np.asarray(data if isinstance(data, (list, tuple, pydicom.multival.MultiValue)) else [data],
                      dtype=np.float32).ravel()


def _window(ds, pixels: np.ndarray, warnings: list[str]) -> tuple[Window, VoiLut | None]:
    """Default VOI: window tags, else the VOI LUT Sequence, else the data's range."""
    c, w = _first(ds, "WindowCenter"), _first(ds, "WindowWidth")
    if c is not None and w is not None and w >= 1:
        return Window(c, w), None
    if "WindowCenter" in ds or "WindowWidth" in ds:
        warnings.append("invalid Window Center/Width ignored")
    try:
        seq = ds.get("VOILUTSequence")
        if seq:
            item = seq[0]
            first = int(item.LUTDescriptor[1])
            if ds.get("PixelRepresentation", 0) == 1 and first >= 2 ** 15:
                first -= 2 ** 16
            table = _lut_table(ds, item)
            if table.size:
                lut = VoiLut(first_mapped=first, table=table, explanation=str(item.get("LUTExplanation", "")))
                return Window.from_range(first, first + table.size - 1), lut
    except (AttributeError, IndexError, KeyError, ValueError, TypeError) as e:
        warnings.append(f"invalid VOI LUT Sequence ignored ({e})")
    return Window.from_range(float(pixels.min()), float(pixels.max())), None


def _spacing(ds) -> tuple[float, float] | None:
    """Pixel Spacing (else Imager Pixel Spacing) as (row, column) mm, or None when absent or malformed."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            value = ds.get(keyword)
            if isinstance(value, pydicom.multival.MultiValue) and len(value) == 2:
                row, col = float(value[0]), float(value[1])
                if row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col):
                    return row, col
        except (ValueError, TypeError, OverflowError):
            pass
    return None


def _has_pixel_data_tag(path: str) -> bool:
    """Whether the bytes of the (7FE0,0010) Pixel Data tag occur in the file (little or big endian)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return b"\xe0\x7f\x10\x00" in data or b"\x7f\xe0\x00\x10" in data


def read_dicom(path: str) -> Radiograph:
    try:
        ds = pydicom.dcmread(path, force=True)
    except MemoryError:
        raise
    except Exception as e:  # InvalidDicomError, EOFError, struct.error, ...: a damaged header raises many types
        raise ImageReadError(path, f"not a readable DICOM file ({type(e).__name__}: {e})") from e
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        if _has_pixel_data_tag(path):  # pydicom drops encapsulated pixel data that the file's end cuts short
            raise ImageReadError(path, "DICOM pixel data is cut short (the file ends inside it)")
        raise ImageReadError(path, "DICOM file has no pixel data (not an image object)")
    no_meta = "TransferSyntaxUID" not in (getattr(ds, "file_meta", None) or {})
    if no_meta:
        # a bare data set (no Part 10 header): its encoding is how pydicom managed to read it, and
        # native pixel data decodes with that; pydicom refuses to decode without a transfer syntax
        implicit, little = getattr(ds, "original_encoding", (None, None))
        if implicit is not None:
            ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                              ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, ValueError, TypeError) as e:
        raise ImageReadError(path, f"DICOM image lacks a valid Rows/Columns/NumberOfFrames ({e})") from e
    if rows < 1 or cols < 1:
        raise ImageReadError(path, f"DICOM image size {rows}x{cols} is empty")
    if rows * cols > MAX_PIXELS:
        raise ImageReadError(path, f"DICOM image claims {cols}x{rows} pixels, over the limit of {MAX_PIXELS:,}")
    warnings = []
    if frames > 1:
        warnings.append(f"multi-frame DICOM ({frames} frames): showing the first frame only")
    try:
        # index=0 decodes only the first frame; a single-frame object is read whole
        arr = pixel_array(ds, index=0) if frames > 1 else ds.pixel_array
    except Exception as e:  # decoders raise many types; every one means "cannot decode"
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(ts, "name", ts) or "unknown transfer syntax"
        raise ImageReadError(path, f"cannot decode DICOM pixel data ({name}): {type(e).__name__}: {e}") from e
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if samples == 1 and arr.ndim == 3:
        raise ImageReadError(path, f"pixel data holds {arr.shape[0]} images of {rows}x{cols} but Number of Frames is "
                                   f"{frames}: Rows/Columns do not match the data")
    if samples > 1 or arr.ndim == 3:
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise ImageReadError(path, f"unsupported DICOM pixel layout {arr.shape} ({photometric})")
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space
            arr = convert_color_space(arr, photometric, "RGB")
        arr = luma(arr)
        warnings.append(f"colour DICOM ({photometric}) converted to grey (ITU-R BT.601 luma)")
        photometric = "MONOCHROME2"
    if arr.ndim != 2:
        raise ImageReadError(path, f"unexpected DICOM pixel array shape {arr.shape}")
    try:
        values = apply_modality_lut(arr, ds)
    except Exception as e:
        raise ImageReadError(path, f"invalid Modality LUT / rescale: {e}") from e
    values = values if values.dtype == np.uint16 else values.astype(np.uint16 if values.dtype == np.uint8 else np.float32)
    window, lut = _window(ds, values, warnings)
    shape = str(ds.get("PresentationLUTShape", "")).strip().upper()
    inverted = photometric == "MONOCHROME1" or shape == "INVERSE"
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    spacing = _spacing(ds)
    metadata = {
        "format": "DICOM",
        "size": f"{cols}x{rows}",
        "frames": frames,
        "bits_stored": int(ds.get("BitsStored", arr.dtype.itemsize * 8)),
        "photometric": str(ds.get("PhotometricInterpretation", "")),
        "presentation_lut_shape": shape or None,
        "transfer_syntax": (getattr(ts, "name", str(ts)) if ts else "unknown") + (" (no file meta)" if no_meta else ""),
        "window": f"{window.center:g}/{window.width:g}" + (" (VOI LUT)" if lut else ""),
        "rescale": f"slope {ds.get('RescaleSlope', 1)} intercept {ds.get('RescaleIntercept', 0)}",
    }
    metadata.update({t: str(ds.get(t)) for t in SUMMARY_TAGS if ds.get(t) not in (None, "")})
    identity = {t: str(ds.get(t)) for t in IDENTITY_TAGS if ds.get(t) not in (None, "")}
    for t in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if t in ds:
            del ds[t]
    return Radiograph(path=path, pixels=np.ascontiguousarray(values), window=window, format="dicom",
                      inverted=inverted, voi_lut=lut,
                      pixel_spacing=spacing,
                      metadata=metadata, identity=identity, warnings=warnings, header=ds)
