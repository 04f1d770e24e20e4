# pylibjpeg finds its decoders through entry points (groups pylibjpeg.pixel_data_decoders,
# pylibjpeg.jpeg_decoders, pylibjpeg.jpeg_2000_decoders ...) that live in each plugin's dist-info:
# without that metadata JPEG and JPEG 2000 DICOMs fail only in the frozen app.
from PyInstaller.utils.hooks import collect_entry_point, copy_metadata

datas, hiddenimports = [], []
for dist in ("pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg"):
    datas += copy_metadata(dist)
for group in ("pylibjpeg.pixel_data_decoders", "pylibjpeg.jpeg_decoders", "pylibjpeg.jpeg_2000_decoders",
              "pylibjpeg.jpeg_ls_decoders", "pylibjpeg.pixel_data_encoders"):
    d, h = collect_entry_point(group)
    datas += d
    hiddenimports += h
hiddenimports += ["libjpeg", "openjpeg", "pydicom.pixels.decoders.pylibjpeg"]
