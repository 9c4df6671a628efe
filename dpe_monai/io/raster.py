"""PNG / JPEG / BMP (Pillow) and TIFF (tifffile) reading and writing at the original bit depth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from dpe_monai.io.image import BadImageError, NativeImage

__all__ = ["read_raster", "write_raster", "RASTER_SUFFIXES"]

RASTER_SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp", ".tif": "tiff", ".tiff": "tiff"}
_PIL_OK = {"L": np.uint8, "RGB": np.uint8, "I;16": np.uint16, "I;16B": np.uint16, "I;16L": np.uint16, "I": np.int32}
_REJECT = {
    "P": "palette (indexed-colour) images are not supported; convert to RGB or grayscale first",
    "PA": "palette images with alpha are not supported",
    "RGBA": "RGBA images are not supported (4 channels); remove the alpha channel first",
    "LA": "grayscale+alpha images are not supported; remove the alpha channel first",
    "CMYK": "CMYK images are not supported",
    "1": "1-bit images are not supported",
}


def _channels_first(path: Path, arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim == 3 and arr.shape[-1] == 3:
        return np.moveaxis(arr, -1, 0)
    if arr.ndim == 3 and arr.shape[-1] == 4:
        raise BadImageError(path, "RGBA images are not supported (4 channels); remove the alpha channel first")
    raise BadImageError(path, f"unsupported array shape {arr.shape} ({arr.ndim}-D); expected a 2-D grey or RGB image")


def read_raster(path: str | Path) -> NativeImage:
    """Read a PNG/JPEG/BMP/TIFF file as a :class:`NativeImage` (``(C, rows, cols)``, C = 1 or 3).

    Raises:
        BadImageError: unreadable, palette, alpha, 1-bit, multi-page or >3-D files.
    """
    path = Path(path)
    kind = RASTER_SUFFIXES[path.suffix.lower()]
    if path.stat().st_size == 0:
        raise BadImageError(path, "file is empty (0 bytes)")
    if kind == "tiff":
        try:
            arr = tifffile.imread(path)
        except Exception as e:  # tifffile raises several types for corrupt files
            raise BadImageError(path, f"not a readable TIFF ({type(e).__name__}: {e})") from e
        info = {"photometric": "rgb" if arr.ndim == 3 and arr.shape[-1] == 3 else "minisblack"}
    else:
        try:
            with Image.open(path) as img:
                img.load()
                mode = img.mode
                if mode in _REJECT:
                    raise BadImageError(path, _REJECT[mode])
                if mode not in _PIL_OK:
                    raise BadImageError(path, f"unsupported image mode {mode!r}")
                arr = np.asarray(img)
                fmt = img.format
        except BadImageError:
            raise
        except UnidentifiedImageError as e:
            raise BadImageError(
                path, f"not a readable {kind.upper()} image (contents are not a known image format)"
            ) from e
        except (OSError, SyntaxError, ValueError) as e:
            raise BadImageError(path, f"not a readable {kind.upper()} image ({e})") from e
        if mode == "I":  # Pillow opens some 16-bit PNGs as 32-bit integers
            arr = arr.astype(np.uint16) if arr.min() >= 0 and arr.max() <= 65535 else arr
        info = {"mode": mode, "format": fmt}
    if arr.dtype.kind not in "uif":
        raise BadImageError(path, f"unsupported sample type {arr.dtype}")
    data = _channels_first(path, np.asarray(arr))
    return NativeImage(array=data.astype(np.float64), kind=kind, sources=[path], dtype=data.dtype, info=info)


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def write_raster(image: NativeImage, values: np.ndarray, out_path: str | Path) -> None:
    """Write ``values`` (``(C, rows, cols)``, the file's units) in ``image``'s format, bit depth and channels."""
    data = _cast(values, image.dtype)
    hwc = data[0] if data.shape[0] == 1 else np.moveaxis(data, 0, -1)
    if image.kind == "tiff":
        tifffile.imwrite(out_path, hwc, photometric=image.info.get("photometric", "minisblack"))
        return
    if data.dtype == np.uint16:
        pil = Image.fromarray(hwc.astype(np.uint16))
    else:
        pil = Image.fromarray(hwc)
    fmt = {"png": "PNG", "jpeg": "JPEG", "bmp": "BMP"}[image.kind]
    kwargs = {"quality": 95} if fmt == "JPEG" else {}
    pil.save(out_path, format=fmt, **kwargs)
