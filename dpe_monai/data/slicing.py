"""Turning volumes and large images into 2-D items: storage intensities, slicing, tiling, filtering, boxes.

Conventions:

* 2-D arrays are numpy display layout ``(rows, cols)`` or ``(rows, cols, 3)``;
* volumes are ``(n0, n1, n2)`` (optionally ``(..., 3)``); slicing along axis ``a`` gives 2-D planes of the other two
  axes. For NIfTI volumes brought to RAS+ (``nibabel.as_closest_canonical``) the axes are sagittal, coronal and
  axial, and :func:`display_plane` rotates each plane so superior (or anterior) is up;
* boxes are ``[x0, y0, x1, y1]`` in pixels of the stored 2-D image (x = column), half-open like
  ``skimage.measure.regionprops`` bounding boxes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from skimage.measure import regionprops

__all__ = [
    "StorageInfo",
    "display_plane",
    "evenly_spaced",
    "foreground_fraction",
    "foreground_threshold",
    "instance_boxes",
    "intensity_range",
    "iter_planes",
    "relative_std",
    "tile_origins",
    "to_storage",
]

RAS_PLANES = ("sagittal", "coronal", "axial")


@dataclass(frozen=True)
class StorageInfo:
    """How source values were mapped to stored values.

    Attributes:
        bit_depth: bits per sample of the stored file (8 or 16).
        source_dtype: numpy dtype name of the source values (after DICOM rescale, if any).
        source_range: ``[low, high]`` of the source values mapped to ``[0, 2**bit_depth - 1]`` (``None``: unchanged).
    """

    bit_depth: int
    source_dtype: str
    source_range: tuple[float, float] | None


def to_storage(values: np.ndarray) -> tuple[np.ndarray, StorageInfo]:
    """Map a whole subject's values (a volume or an image) to the stored integer type.

    ``uint8`` (and ``bool``) data are kept as they are. Every other type (12-16-bit integers, DICOM modality values,
    float) becomes ``uint16`` by one linear map of the subject's ``[min, max]`` onto ``[0, 65535]``: no clipping,
    every distinct source level of a <=16-bit source stays distinct, and all slices/tiles of a subject share the map
    (``source_range`` records it, so ``value = low + stored / 65535 * (high - low)`` recovers the source units).

    Args:
        values: the subject's array, any shape.

    Returns:
        ``(stored, info)``.
    """
    if values.dtype == np.uint8 or values.dtype == np.bool_:
        return values.astype(np.uint8, copy=False), StorageInfo(8, str(values.dtype), None)
    lo, hi = float(np.min(values)), float(np.max(values))
    scale = 65535.0 / (hi - lo) if hi > lo else 0.0
    stored = np.rint((values.astype(np.float64) - lo) * scale).astype(np.uint16)
    return stored, StorageInfo(16, str(values.dtype), (lo, hi))


def _luminance(arr: np.ndarray) -> np.ndarray:
    """Grayscale view (mean over a trailing RGB axis)."""
    return arr.mean(axis=-1) if arr.ndim >= 3 and arr.shape[-1] == 3 else arr


def _luminance_sample(values: np.ndarray, size: int = 2_000_000) -> np.ndarray:
    """Luminance of a regular subsample of at most ``size`` pixels (keeps big volumes cheap)."""
    rgb = values.ndim >= 3 and values.shape[-1] == 3
    flat = values.reshape(-1, 3) if rgb else values.reshape(-1)
    flat = flat[:: max(1, len(flat) // size)]
    return flat.mean(axis=-1) if rgb else flat


def foreground_threshold(values: np.ndarray, fraction: float = 0.1) -> float:
    """Intensity above which a pixel counts as foreground: ``min + fraction * (p99.5 - min)`` of the subject."""
    flat = _luminance_sample(values)
    lo = float(flat.min())
    return lo + fraction * (float(np.percentile(flat, 99.5)) - lo)


def foreground_fraction(plane: np.ndarray, threshold: float) -> float:
    """Fraction of the plane's pixels above ``threshold`` (luminance for RGB)."""
    return float(np.mean(_luminance(plane) > threshold))


def intensity_range(values: np.ndarray) -> float:
    """``p99.5 - min`` of the subject's luminance: the scale for :func:`relative_std`."""
    flat = _luminance_sample(values)
    return float(np.percentile(flat, 99.5) - flat.min())


def relative_std(plane: np.ndarray, scale: float) -> float:
    """Standard deviation of the plane's luminance over ``scale`` (0 for a uniform plane)."""
    return float(np.std(_luminance(plane))) / scale if scale > 0 else 0.0


def display_plane(plane: np.ndarray, ras: bool) -> np.ndarray:
    """Rotate a plane cut from a RAS+ volume so the second in-plane axis points up; other planes unchanged."""
    return np.ascontiguousarray(np.rot90(plane) if ras else plane)


def iter_planes(
    volume: np.ndarray, axes: tuple[int, ...] = (0, 1, 2), ras: bool = False, min_side: int = 24
) -> Iterator[tuple[str, int, int, np.ndarray]]:
    """Yield every 2-D plane of a volume along the given axes.

    Args:
        volume: ``(n0, n1, n2)`` or ``(n0, n1, n2, 3)``.
        axes: slicing axes.
        ras: the volume is RAS+ oriented (names planes sagittal/coronal/axial and rotates them for display).
        min_side: planes whose smaller side is below this are skipped (thin directions of anisotropic volumes).

    Yields:
        ``(orientation, axis, index, plane)``; orientation is ``sagittal``/``coronal``/``axial`` for RAS volumes,
        else ``axis0``/``axis1``/``axis2``.
    """
    for axis in axes:
        plane_shape = [s for i, s in enumerate(volume.shape[:3]) if i != axis]
        if min(plane_shape) < min_side:
            continue
        name = RAS_PLANES[axis] if ras else f"axis{axis}"
        for index in range(volume.shape[axis]):
            yield name, axis, index, display_plane(volume[(slice(None),) * axis + (index,)], ras)


def tile_origins(length: int, tile: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)``; the last tile is flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, tile))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def evenly_spaced(n: int, k: int | None) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``k`` is ``None`` or ``>= n``)."""
    if k is None or k >= n:
        return list(range(n))
    if k <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


def instance_boxes(instances: np.ndarray) -> tuple[list[list[int]], list[int]]:
    """Bounding boxes of an instance label image.

    Args:
        instances: ``(rows, cols)`` integer labels, 0 = background.

    Returns:
        ``(boxes, ids)``: ``[x0, y0, x1, y1]`` per instance (half-open) and the instance ids, in id order.
    """
    boxes, ids = [], []
    for region in regionprops(instances.astype(np.int64, copy=False)):
        r0, c0, r1, c1 = region.bbox
        boxes.append([int(c0), int(r0), int(c1), int(r1)])
        ids.append(int(region.label))
    return boxes, ids
