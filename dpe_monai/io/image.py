"""``NativeImage``: an image as stored on disk, with what is needed to write a result back in the same format."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BadFileWarning",
    "BadImageError",
    "NativeImage",
    "check_values",
    "describe_error",
    "monai_layout",
    "native_values",
]


class BadImageError(ValueError):
    """A file that cannot be read (or enhanced); the message is one line naming the file and the problem.

    Args:
        path: the offending file.
        problem: what is wrong with it, in words (collapsed to one line).
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        problem = " ".join(str(problem).split())  # always one line, whatever the underlying library said
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class BadFileWarning(UserWarning):
    """A file was skipped (e.g. while scanning a folder); the message names the file and the problem."""


def describe_error(exc: BaseException, limit: int = 200) -> str:
    """``"Type: first line of the message"``, cut to ``limit`` characters (some libraries embed whole tracebacks)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class NativeImage:
    """An image in its file's own units and layout.

    Attributes:
        array: ``(C, *spatial)`` float64 values in the file's units after any rescale (DICOM slope/intercept,
            NIfTI scl_slope/inter) and with MONOCHROME1 inverted so brighter means higher; C = 1 or 3;
            spatial = (rows, cols) for 2-D files, (rows, cols, slices) for DICOM series/multi-frame files and
            multi-page TIFF stacks, NIfTI's (i, j, k) for volumes.
        kind: ``"png"``, ``"jpeg"``, ``"bmp"``, ``"tiff"``, ``"nifti"`` or ``"dicom"``.
        sources: the file (or the DICOM series' files in slice order) it came from.
        dtype: the stored sample dtype (what the written result is cast back to).
        info: format-specific details the writer needs (PIL mode, NIfTI header, DICOM headers...). ``"unwritable"``
            holds a one-line reason when the file was decoded from a layout that cannot be written back as read
            (:data:`~dpe_monai.io.formats.UNWRITABLE_LAYOUTS`; only ``read_image(..., strict=False)`` returns those).
    """

    array: np.ndarray
    kind: str
    sources: list[Path]
    dtype: np.dtype
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def spatial_dims(self) -> int:
        return self.array.ndim - 1

    def container_range(self) -> tuple[float, float]:
        """The range the stored format can represent, in ``array`` units (the default enhancement window).

        8/16-bit PNG/TIFF/JPEG: the integer dtype's range (0..255 / 0..65535); DICOM: ``BitsStored`` through
        rescale slope/intercept; NIfTI and float or 32-bit data: the image's own min..max (no display range).
        """
        if self.kind == "dicom":
            from dpe_monai.io.dicom import modality_range

            return modality_range(self.info["headers"][0])
        dtype = np.dtype(self.dtype)
        if self.kind != "nifti" and dtype.kind == "u" and dtype.itemsize <= 2:
            return 0.0, float(np.iinfo(dtype).max)
        return float(self.array.min()), float(self.array.max())

    @property
    def name(self) -> str:
        """Display name: the file, or the series folder and its first file."""
        return str(self.sources[0]) if len(self.sources) == 1 else f"{self.sources[0]} (+{len(self.sources) - 1})"


#: the smallest side of an image (of a volume's largest slice plane) the file layer lets through: a 3x3 colour
#: image came back white, its percentiles and noise estimate being those of 9 pixels
MIN_SIDE = 8


def check_values(path: str | Path, array: np.ndarray, max_pixels: int | None = None) -> None:
    """Reject arrays an enhancer cannot take: NaN/inf, constant images, images under :data:`MIN_SIDE` pixels a
    side, too many pixels.

    Args:
        path: file name for the message.
        array: ``(C, *spatial)`` values.
        max_pixels: largest allowed number of spatial elements (None = no limit).

    Raises:
        BadImageError: naming the file and the problem.
    """
    spatial = array.shape[1:]
    plane = spatial if len(spatial) == 2 else sorted(spatial)[-2:]  # a volume: its largest slice plane
    if min(plane) < MIN_SIDE:
        raise BadImageError(
            path,
            f"image is too small to enhance (spatial size {tuple(spatial)}; at least {MIN_SIDE} pixels a side: "
            "its whole-image statistics decide how it is enhanced)",
        )
    n = int(np.prod(spatial))
    if max_pixels is not None and n > max_pixels:
        raise BadImageError(path, f"image has {n} pixels, over the limit of {max_pixels} (raise --max-pixels)")
    finite = np.isfinite(array)
    if not finite.all():
        bad = int((~finite).sum())
        raise BadImageError(path, f"image contains {bad} NaN/inf values")
    if float(array.max()) == float(array.min()):
        raise BadImageError(path, f"image is constant (every value is {float(array.min()):g}); nothing to enhance")


def native_values(image: NativeImage) -> np.ndarray:
    """``image.array`` in the stored sample type when that holds every value exactly, else float64.

    An 8-bit PNG comes back ``uint8``, a 16-bit TIFF ``uint16``, an int16 NIfTI without scaling ``int16``; a CT with a
    rescale intercept (negative HU in an unsigned container) or a scaled NIfTI stays float64.
    """
    stored = image.array.astype(image.dtype)
    return stored if np.array_equal(stored, image.array) else image.array


def monai_layout(image: NativeImage, array: np.ndarray | None = None) -> np.ndarray:
    """``(C, rows, cols[, depth])`` -> MONAI's spatial convention ``(C, x, y[, depth])`` (first spatial axis = columns),
    as MONAI's ``PILReader``/``PydicomReader`` give it; NIfTI arrays are already ``(C, i, j, k)`` and stay as they are.
    """
    arr = image.array if array is None else array
    return arr if image.kind == "nifti" else np.swapaxes(arr, 1, 2)
