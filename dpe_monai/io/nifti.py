"""NIfTI reading and writing with the source's affine, header, shape and on-disk dtype."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener
from nibabel.volumeutils import array_to_file

from dpe_monai.io.image import BadImageError, NativeImage

__all__ = ["read_nifti", "write_nifti"]


def read_nifti(path: str | Path) -> NativeImage:
    """Read a 2-D or 3-D NIfTI (a trailing singleton 4th dimension is accepted) as ``(1, i, j[, k])``.

    Raises:
        BadImageError: empty, truncated or unreadable files, or 4-D/5-D data.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise BadImageError(path, "file is empty (0 bytes)")
    try:
        img = nib.load(path)
        shape = img.shape
        squeezed = tuple(s for i, s in enumerate(shape) if i < 3 or s != 1)
        if len(squeezed) > 3:
            ndim = len(shape)
            while ndim > 3 and shape[ndim - 1] == 1:
                ndim -= 1
            raise BadImageError(path, f"{ndim}-D data of shape {shape} is not supported (2-D or 3-D only)")
        data = np.asarray(img.dataobj, dtype=np.float64).reshape(squeezed)
    except BadImageError:
        raise
    except nib.filebasedimages.ImageFileError as e:
        raise BadImageError(path, "not a readable NIfTI file (no valid NIfTI header)") from e
    except Exception as e:  # nibabel raises many types for broken files
        raise BadImageError(path, f"not a readable NIfTI file ({type(e).__name__}: {e})") from e
    if data.ndim < 2:
        raise BadImageError(path, f"{data.ndim}-D data is not an image")
    slope, inter = getattr(img.dataobj, "slope", 1.0), getattr(img.dataobj, "inter", 0.0)
    info = {"affine": img.affine, "header": img.header.copy(), "shape": shape, "slope": slope, "inter": inter}
    return NativeImage(array=data[None], kind="nifti", sources=[path], dtype=img.get_data_dtype(), info=info)


def write_nifti(image: NativeImage, values: np.ndarray, out_path: str | Path) -> None:
    """Write ``values`` (``(1, *spatial)``, scaled units) with the source's header, affine, shape, on-disk dtype and
    scaling (``scl_slope``/``scl_inter``), byte for byte in the header: the header is written as read and the raw
    samples are ``(value - inter) / slope`` rounded to the on-disk dtype.
    """
    header = image.info["header"].copy()
    slope, inter = float(image.info["slope"]), float(image.info["inter"])
    raw = (values[0] - inter) / slope
    dtype = np.dtype(image.dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        raw = np.clip(np.rint(raw), info.min, info.max)
    raw = raw.astype(dtype).reshape(image.info["shape"])
    header.set_data_dtype(dtype)
    if tuple(header.get_data_shape()) != raw.shape:  # set_data_shape also resets unused pixdim entries to 1
        header.set_data_shape(raw.shape)
    if slope != 1.0 or inter != 0.0:
        header.set_slope_inter(slope, inter)
    with ImageOpener(str(out_path), "wb") as f:
        header.write_to(f)
        array_to_file(raw, f, dtype, offset=header.get_data_offset(), order="F")
