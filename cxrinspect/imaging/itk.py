"""MetaImage, NRRD and NIfTI 2-D images through SimpleITK."""

from __future__ import annotations

import numpy as np

from .limits import MAX_PIXELS
from .radiograph import ImageReadError, Radiograph, Window, luma

ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr", ".nii", ".nii.gz")


def _image_io(path: str) -> str:
    """SimpleITK chooses its reader by file name; for a misnamed file, name the reader its content asks for."""
    if path.lower().endswith(ITK_SUFFIXES):
        return ""
    with open(path, "rb") as f:
        head = f.read(200)
    if head.startswith(b"NRRD"):
        return "NrrdImageIO"
    if b"ObjectType" in head[:200]:
        return "MetaImageIO"
    return ""  # (ITK's NIfTI reader insists on a .nii/.nii.gz name whatever it is told)


def read_itk(path: str) -> Radiograph:
    import SimpleITK as sitk  # here, not at the top: only these formats need it, and it is slow to import

    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(path)
        io = _image_io(path)
        if io:
            reader.SetImageIO(io)
        reader.ReadImageInformation()
        size = reader.GetSize()
        if int(np.prod(size)) > MAX_PIXELS:
            raise ImageReadError(path, f"image claims {'x'.join(map(str, size))} voxels, over the limit of {MAX_PIXELS:,}")
        image = reader.Execute()
    except ImageReadError:
        raise
    except (RuntimeError, OSError) as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else "unknown error"
        raise ImageReadError(path, f"SimpleITK cannot read the file: {reason}") from e
    warnings = []
    arr = sitk.GetArrayFromImage(image)  # (z, y, x) or (y, x), components last
    if image.GetNumberOfComponentsPerPixel() > 1:
        arr = luma(arr)
        warnings.append("multi-component image converted to grey")
    while arr.ndim > 2:
        if arr.shape[0] > 1:
            warnings.append(f"{arr.ndim}-D image with {arr.shape[0]} slices: showing the first slice only")
        arr = arr[0]
    if arr.ndim != 2 or arr.size == 0:
        raise ImageReadError(path, f"not a 2-D image (array shape {arr.shape})")
    pixels = arr if arr.dtype == np.uint16 else arr.astype(np.float32)
    spacing = image.GetSpacing()
    window = Window.from_range(float(pixels.min()), float(pixels.max()))
    metadata = {"format": "ITK (" + (reader.GetImageIO() or "auto") + ")", "size": f"{arr.shape[1]}x{arr.shape[0]}",
                "pixel_type": image.GetPixelIDTypeAsString(), "window": f"{window.center:g}/{window.width:g}"}
    return Radiograph(path=path, pixels=np.ascontiguousarray(pixels), window=window, format="itk",
                      pixel_spacing=(float(spacing[1]), float(spacing[0])) if len(spacing) >= 2 else None,
                      metadata=metadata, warnings=warnings)
