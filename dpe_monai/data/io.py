"""Reading any supported image file through MONAI ``LoadImage`` readers, and writing collection files.

``load_image`` is the single entry point for user data: NIfTI (``NibabelReader``), DICOM files and series
(``PydicomReader``), PNG/JPEG/BMP (``PILReader``) and TIFF (:class:`TifffileReader`, a MONAI ``ImageReader`` on top
of ``tifffile`` that keeps 16-bit RGB, which Pillow and the ITK wheels cannot). It returns a channel-first
``MetaTensor`` in MONAI's spatial convention (first spatial axis = image x / columns), with exact values:
DICOM rescale slope/intercept applied, ``MONOCHROME1`` inverted, palette colour mapped to RGB.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from monai.data import ImageReader, MetaTensor, NibabelReader, PILReader, PydicomReader
from monai.data.utils import is_supported_format
from monai.transforms import LoadImage
from PIL import Image

from dpe_monai.data.dicom import apply_photometric, dicom_bit_depth, read_dicom_header, slice_sort_key, tag_int

__all__ = [
    "BadFileWarning",
    "BadImageError",
    "TifffileReader",
    "describe_error",
    "detect_format",
    "load_image",
    "to_display",
    "write_image",
]

#: file suffix -> format name; files with another suffix are checked for the DICOM preamble.
SUFFIX_FORMATS: dict[str, str] = {
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".ima": "dicom",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".bmp": "bmp",
    ".tif": "tiff",
    ".tiff": "tiff",
}


class BadFileWarning(UserWarning):
    """A file was skipped; the message names the file and the problem."""


class BadImageError(ValueError):
    """A file cannot be used as an image.

    Args:
        path: the offending file.
        reason: what is wrong with it, in words.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        reason = reason if "\n" not in reason else reason.split("\n", 1)[0] + " ...)"
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def describe_error(exc: BaseException, limit: int = 200) -> str:
    """``"Type: first line of the message"``, cut to ``limit`` characters (MONAI errors embed whole tracebacks)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TifffileReader(ImageReader):
    """MONAI ``ImageReader`` for TIFF files through ``tifffile`` (8/16-bit, grayscale/RGB, multi-page).

    Output follows ``PILReader``: axes 0 and 1 are swapped so the first spatial axis is x (columns); RGB(A) samples
    are the last axis and reported as ``original_channel_dim=-1``; a multi-page grayscale stack is a 3-D volume
    ``(x, y, page)``.
    """

    def verify_suffix(self, filename: Sequence[str | Path] | str | Path) -> bool:
        """Whether ``filename`` ends with ``.tif``/``.tiff``."""
        return is_supported_format(filename, ["tif", "tiff"])

    def read(self, data: Sequence[str | Path] | str | Path, **kwargs: Any) -> Any:
        """Read one file (or several, returned as a list) into numpy arrays."""
        names = [data] if isinstance(data, (str, Path)) else list(data)
        arrays = [tifffile.imread(str(name), **kwargs) for name in names]
        return arrays if len(arrays) > 1 else arrays[0]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """Return the array in MONAI's spatial convention and its metadata."""
        arr = np.asarray(img if not isinstance(img, list) else img[0])
        rgb = arr.ndim >= 3 and arr.shape[-1] in (3, 4)
        if rgb:
            arr = arr[..., :3]
        spatial_ndim = arr.ndim - int(rgb)
        if spatial_ndim == 3:  # (page, row, col) -> (row, col, page)
            arr = np.moveaxis(arr, 0, 2)
        arr = np.swapaxes(arr, 0, 1)
        meta = {
            "spatial_shape": np.asarray(arr.shape[:spatial_ndim]),
            "original_channel_dim": -1 if rgb else float("nan"),
            "affine": np.eye(spatial_ndim + 1),
        }
        return arr, meta


class NativeNibabelReader(NibabelReader):
    """``NibabelReader`` that returns native byte order (torch cannot take big-endian NIfTI data as is)."""

    def _get_array_data(self, img: Any, filename: Any) -> np.ndarray:
        arr = np.asarray(super()._get_array_data(img, filename))
        return arr.astype(arr.dtype.newbyteorder("="), copy=False)


class NativePydicomReader(PydicomReader):
    """``PydicomReader`` that returns native byte order (big-endian DICOM, e.g. Explicit VR Big Endian)."""

    def _get_array_data(self, img: Any, filename: Any) -> np.ndarray:
        arr = np.asarray(super()._get_array_data(img, filename))
        return arr.astype(arr.dtype.newbyteorder("="), copy=False)


@functools.cache
def _loader(kind: str, channel_last: bool = False) -> LoadImage:
    """One cached ``LoadImage`` per reader (building one instantiates every MONAI reader)."""
    readers: dict[str, ImageReader] = {
        "nifti": NativeNibabelReader(),
        "dicom": NativePydicomReader(channel_dim=-1 if channel_last else None),
        "pil": PILReader(converter=_pil_converter),
        "tiff": TifffileReader(),
    }
    return LoadImage(reader=readers[kind], image_only=True, ensure_channel_first=True, dtype=None)


def _pil_converter(image: Image.Image) -> Image.Image:
    """Bring palette/alpha/bilevel/CMYK Pillow modes to ``L``/``RGB``; 16-bit modes are left alone."""
    conversions = {"P": "RGB", "PA": "RGB", "RGBA": "RGB", "CMYK": "RGB", "YCbCr": "RGB", "LA": "L", "1": "L"}
    if image.mode == "P" and "transparency" not in image.info:
        palette = image.getpalette() or []
        is_gray = all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))
        return image.convert("L" if is_gray else "RGB")
    return image.convert(conversions[image.mode]) if image.mode in conversions else image


def detect_format(path: str | Path) -> str | None:
    """Format of an image file from its suffix, or ``"dicom"`` for suffix-less files with the DICOM preamble.

    Args:
        path: the file.

    Returns:
        ``"nifti"``, ``"dicom"``, ``"png"``, ``"jpeg"``, ``"bmp"``, ``"tiff"`` or ``None`` (not an image file).
    """
    name = Path(path).name.lower()
    for suffix, fmt in SUFFIX_FORMATS.items():
        if name.endswith(suffix):
            return fmt
    if "." not in name or name.rsplit(".", 1)[-1].isdigit():
        try:
            with open(path, "rb") as fh:
                head = fh.read(132)
            if head[128:132] == b"DICM":
                return "dicom"
        except OSError:
            return None
    return None


def _png_header(path: str | Path) -> tuple[int, int]:
    """``(bit_depth, colour_type)`` from a PNG's IHDR chunk (raises ``BadImageError`` if it is not a PNG)."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise BadImageError(path, "not a PNG file (bad signature)")
    return head[24], head[25]


def _bit_depth(array: np.ndarray) -> int:
    """Bits per sample of an integer array's container (8, 16, 32); float data counts as 32."""
    return 8 * array.dtype.itemsize if array.dtype != np.bool_ else 8


def _load_dicom(path: str | Path) -> MetaTensor:
    """One DICOM file through ``PydicomReader`` (+ MONOCHROME1 / palette handling and multi-frame axis order)."""
    ds = read_dicom_header(path)
    if "Rows" not in ds or "Columns" not in ds:
        raise BadImageError(path, f"DICOM file has no image (Modality {ds.get('Modality', 'unknown')})")
    rgb = tag_int(ds, "SamplesPerPixel", 1) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = _loader("dicom", channel_last=rgb)(str(path))
    arr = np.moveaxis(img.numpy(), 0, -1) if rgb else img.numpy()[0]  # (x, y[, frames][, 3])
    rows, cols, frames = tag_int(ds, "Rows", 0), tag_int(ds, "Columns", 0), tag_int(ds, "NumberOfFrames", 1) or 1
    if frames > 1 and arr.shape[:3] == (rows, frames, cols):  # PydicomReader swaps (frame, row) for multi-frame
        arr = np.moveaxis(arr, (0, 1, 2), (1, 2, 0))
    arr = apply_photometric(arr, ds)
    channels = 3 if arr.shape[-1] == 3 and (rgb or str(ds.get("PhotometricInterpretation")) == "PALETTE COLOR") else 1
    data = np.moveaxis(arr, -1, 0) if channels == 3 else arr[None]
    meta = dict(img.meta)
    meta.update(
        bit_depth=dicom_bit_depth(ds) if channels == 1 or rgb else 8 * arr.dtype.itemsize,
        photometric=str(ds.get("PhotometricInterpretation", "")),
        modality=str(ds.get("Modality", "")),
        patient_id=str(ds.get("PatientID", "")),
        series_uid=str(ds.get("SeriesInstanceUID", "")),
    )
    return MetaTensor(torch.as_tensor(np.ascontiguousarray(data)), meta=meta)


def _load_series(paths: Sequence[str | Path]) -> MetaTensor:
    """A multi-file DICOM series: each slice through :func:`_load_dicom`, stacked along the slice normal."""
    headers = []
    for p in paths:
        try:
            headers.append((read_dicom_header(p), str(p)))
        except Exception as exc:
            raise BadImageError(p, f"unreadable DICOM header ({describe_error(exc)})") from exc
    headers.sort(key=lambda h: slice_sort_key(h[0], h[1]))
    slices: list[MetaTensor] = []
    for _, p in headers:
        try:
            slices.append(_load_dicom(p))
        except BadImageError:
            raise
        except Exception as exc:
            raise BadImageError(p, f"cannot decode DICOM pixels ({describe_error(exc)})") from exc
    shapes = {tuple(s.shape) for s in slices}
    if len(shapes) != 1:
        raise BadImageError(headers[0][1], f"slices of one series differ in shape: {sorted(shapes)}")
    stacked = torch.as_tensor(np.stack([s.numpy() for s in slices], axis=-1))
    meta = dict(slices[0].meta)
    meta["filename_or_obj"] = [p for _, p in headers]
    meta["spatial_shape"] = np.asarray(stacked.shape[1:])
    return MetaTensor(stacked, meta=meta)


def load_image(image: str | Path | Sequence[str | Path]) -> MetaTensor:
    """Load an image, volume or DICOM series through the MONAI reader for its format.

    Args:
        image: a file path, or a list of DICOM files forming one series (as produced by
            :func:`dpe_monai.data.folders.scan_folder`).

    Returns:
        A channel-first ``MetaTensor`` ``(C, x, y)`` or ``(C, x, y, z)`` with ``C`` 1 or 3 and values exactly as stored
        (DICOM: modality values after slope/intercept, ``MONOCHROME1`` inverted; palette mapped to RGB). 16-bit
        data keep their values (torch holds them as int32 where it lacks uint16). ``meta`` adds ``bit_depth`` (bits
        per sample of the file: 8, 16 or 32) and ``source_format``.

    Raises:
        BadImageError: the file is empty, unreadable, truncated, of an unsupported kind, or its dimensionality is
            neither a 2-D image nor a 3-D volume.
    """
    if not isinstance(image, (str, Path)):
        paths = [str(p) for p in image]
        if len(paths) > 1:
            out = _load_series(paths)
            out.meta["source_format"] = "dicom-series"
            return _check_dims(out, paths[0])
        image = paths[0]
    path = Path(image)
    if not path.is_file():
        raise BadImageError(path, "no such file")
    if path.stat().st_size == 0:
        raise BadImageError(path, "empty file (0 bytes)")
    fmt = detect_format(path)
    if fmt is None:
        raise BadImageError(path, "unsupported file type")
    try:
        if fmt == "dicom":
            out = _load_dicom(path)
        elif fmt == "png" and _png_header(path) in ((16, 2), (16, 6)):
            raise BadImageError(path, "16-bit RGB PNG cannot be read at full depth by Pillow or ITK; save it as TIFF")
        else:
            if fmt == "nifti":
                _check_nifti_shape(path)
            kind = {"nifti": "nifti", "tiff": "tiff"}.get(fmt, "pil")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = _loader(kind)(str(path))
            native = _native_dtype(path, fmt)
            out.meta["bit_depth"] = _bit_depth(np.empty(0, native)) if native is not None else _bit_depth(out.numpy())
    except BadImageError:
        raise
    except Exception as exc:
        raise BadImageError(path, f"unreadable or truncated {fmt} file ({describe_error(exc)})") from exc
    out.meta["source_format"] = fmt
    return _check_dims(out, path)


def _check_nifti_shape(path: Path) -> None:
    """Refuse 4-D+ NIfTI (time series, vector fields) before MONAI takes a last axis of 3 for RGB."""
    import nibabel as nib

    shape = tuple(int(s) for s in nib.load(str(path)).shape)
    if len(shape) > 3 and any(s > 1 for s in shape[3:]):
        raise BadImageError(path, f"unsupported dimensionality: {len(shape)}-D NIfTI {shape}; need a 2-D or 3-D image")


def _native_dtype(path: Path, fmt: str) -> np.dtype | None:
    """The stored sample type where MONAI widens it (16-bit PNG/TIFF come back as int32)."""
    if fmt == "png":
        depth, _ = _png_header(path)
        return np.dtype(np.uint16 if depth == 16 else np.uint8)
    if fmt == "nifti":
        import nibabel as nib

        return np.dtype(nib.load(str(path)).get_data_dtype())
    if fmt == "tiff":
        with tifffile.TiffFile(str(path)) as tif:
            return np.dtype(tif.pages[0].dtype)
    return None


def _check_dims(img: MetaTensor, path: str | Path) -> MetaTensor:
    """Accept ``(C, x, y)`` and ``(C, x, y, z)`` with ``C`` in {1, 3}; drop singleton spatial axes first."""
    shape = tuple(img.shape)
    spatial = [s for s in shape[1:] if s != 1]
    if img.shape[0] not in (1, 3) or len(spatial) not in (2, 3):
        raise BadImageError(
            path, f"unsupported dimensionality {shape} (channels first): need a 2-D image or 3-D volume"
        )
    if len(spatial) != len(shape) - 1:
        meta = dict(img.meta)
        img = MetaTensor(img.as_tensor().reshape(shape[0], *spatial), meta=meta)
        img.meta["spatial_shape"] = np.asarray(spatial)
    return img


def to_display(img: MetaTensor | np.ndarray) -> np.ndarray:
    """Channel-first MONAI layout -> numpy display layout.

    ``(C, x, y)`` becomes ``(rows, cols)`` or ``(rows, cols, 3)``; ``(C, x, y, z)`` becomes ``(z, rows, cols)`` or
    ``(z, rows, cols, 3)`` (a stack of 2-D frames in display orientation).
    """
    arr = img.numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    arr = np.swapaxes(arr, 1, 2)  # (C, y, x[, z])
    if arr.ndim == 4:
        arr = np.moveaxis(arr, 3, 1)  # (C, z, y, x)
    arr = np.moveaxis(arr, 0, -1)
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def write_image(path_stem: str | Path, array: np.ndarray) -> Path:
    """Write a 2-D image losslessly, keeping its bit depth.

    8-bit gray/RGB and 16-bit gray go to PNG; 16-bit RGB goes to zlib-compressed TIFF (Pillow cannot write it).

    Args:
        path_stem: destination without suffix.
        array: ``uint8`` or ``uint16``, ``(H, W)`` or ``(H, W, 3)``.

    Returns:
        The written file.
    """
    arr = np.ascontiguousarray(array)
    if arr.dtype not in (np.uint8, np.uint16) or arr.ndim not in (2, 3):
        raise ValueError(f"write_image needs uint8/uint16 (H, W[, 3]) data, got {arr.dtype} {arr.shape}")
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if arr.ndim == 3 and arr.dtype == np.uint16:
        out = stem.with_name(stem.name + ".tif")
        tifffile.imwrite(out, arr, photometric="rgb", compression="zlib")
        return out
    out = stem.with_name(stem.name + ".png")
    Image.fromarray(arr).save(out, compress_level=6)
    return out
