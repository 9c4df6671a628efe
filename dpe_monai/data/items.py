"""From a :class:`~dpe_monai.data.sources.SourceImage` to written 2-D datalist items.

* intensities: one map per source image (:func:`~dpe_monai.data.slicing.to_storage`): 8-bit stays 8-bit, everything
  else becomes 16-bit, so all slices/tiles of a subject share one scale;
* volumes: every plane along the three axes (``frames``: along the first axis only); planes whose foreground
  fraction is below the image's ``min_foreground`` (mostly background) or whose standard deviation is below
  ``min_std`` of the subject's range (uniform) are dropped;
* large 2-D images (more than 1.5 x 512^2 pixels) are cut into 256^2 tiles (edge tiles flush with the border),
  filtered the same way; smaller images are kept whole;
* labels are cut exactly like their image and saved next to it; ``boxes`` are recomputed per item.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from skimage.measure import label as connected_components

from dpe_monai.data.slicing import (
    evenly_spaced,
    foreground_fraction,
    foreground_threshold,
    instance_boxes,
    intensity_range,
    iter_planes,
    relative_std,
    tile_origins,
    to_storage,
)
from dpe_monai.data.sources import SourceImage, Subject
from dpe_monai.io.raster import write_lossless

__all__ = ["TILE", "TILE_ABOVE", "expand", "write_item"]

TILE = 256
TILE_ABOVE = int(1.5 * 512 * 512)
LABEL_CLASSES = {"tissue": {"0": "background", "1": "CSF", "2": "GM", "3": "WM"}}

Plane = tuple[dict, np.ndarray, dict[str, np.ndarray]]


def _candidates(image: SourceImage, stored: np.ndarray) -> list[tuple[dict, tuple]]:
    """Every kept plane/tile as ``(fields, index expression)``; filtering is done on the stored values."""
    threshold, scale = foreground_threshold(stored), intensity_range(stored)

    def informative(plane: np.ndarray) -> bool:
        return (
            foreground_fraction(plane, threshold) >= image.min_foreground
            and relative_std(plane, scale) >= image.min_std
        )

    out: list[tuple[dict, tuple]] = []
    if image.kind in ("volume", "frames"):
        axes = (image.axes or (0, 1, 2)) if image.kind == "volume" else (0,)
        for orientation, axis, index, plane in iter_planes(stored, axes, ras=image.ras, min_side=image.min_side):
            if informative(plane):
                name = "frame" if image.kind == "frames" else orientation
                out.append(({"orientation": name, "slice_index": index}, ("plane", axis, index)))
        return out
    h, w = stored.shape[:2]
    if h * w <= TILE_ABOVE:
        return [({}, ("whole",))]
    for y0 in tile_origins(h, TILE):
        for x0 in tile_origins(w, TILE):
            y1, x1 = min(y0 + TILE, h), min(x0 + TILE, w)
            if informative(stored[y0:y1, x0:x1]):
                out.append(({"crop": [x0, y0, x1, y1]}, ("tile", y0, y1, x0, x1)))
    return out


def _cut(arr: np.ndarray, where: tuple, ras: bool) -> np.ndarray:
    """Apply an index expression from :func:`_candidates` to an image or label array."""
    if where[0] == "whole":
        return arr
    if where[0] == "tile":
        _, y0, y1, x0, x1 = where
        return arr[y0:y1, x0:x1]
    _, axis, index = where
    plane = arr[(slice(None),) * axis + (index,)]
    return np.ascontiguousarray(np.rot90(plane) if ras else plane)


def expand(image: SourceImage, limit: int | None = None) -> Iterator[Plane]:
    """2-D items of one source image.

    Args:
        image: the source image.
        limit: keep at most this many (spread evenly over the candidates), ``None`` for all.

    Yields:
        ``(fields, plane, label_planes)``: item fields (``bit_depth``, ``orientation``/``slice_index`` or ``crop``,
        ``source_range``...), the stored 2-D array (``uint8``/``uint16``) and its label planes.
    """
    stored, info = to_storage(image.array)
    base: dict = {"bit_depth": info.bit_depth, "source_dtype": info.source_dtype}
    if info.source_range is not None:
        base["source_range"] = [round(info.source_range[0], 6), round(info.source_range[1], 6)]
    candidates = _candidates(image, stored)
    for i in evenly_spaced(len(candidates), limit):
        fields, where = candidates[i]
        plane = _cut(stored, where, image.ras)
        labels = {key: _cut(arr, where, image.ras) for key, arr in image.labels.items()}
        if image.sparse_labels:
            labels = {key: arr for key, arr in labels.items() if np.any(arr)}
        yield {**base, **fields}, plane, labels


def _item_stem(image: SourceImage, fields: dict) -> str:
    """File stem of an item: the image name plus its plane or tile position."""
    if "orientation" in fields:
        return f"{image.name}_{fields['orientation']}{fields['slice_index']:03d}"
    if "crop" in fields:
        x0, y0 = fields["crop"][:2]
        return f"{image.name}_y{y0:04d}x{x0:04d}"
    return image.name


def _label_array(arr: np.ndarray) -> np.ndarray:
    """Labels as the smallest unsigned type that holds them."""
    arr = np.asarray(arr)
    return arr.astype(np.uint8) if int(arr.max(initial=0)) <= 255 else arr.astype(np.uint16)


def write_item(
    root: Path, subject: Subject, image: SourceImage, fields: dict, plane: np.ndarray, labels: dict[str, np.ndarray]
) -> dict:
    """Write one item's image (and labels) under ``root`` and return its datalist entry (paths relative to root).

    Args:
        root: the collection folder.
        subject: the subject the item comes from.
        image: the source image it was cut from.
        fields: fields from :func:`expand`.
        plane: the stored 2-D array.
        labels: its label planes.

    Returns:
        The datalist item.
    """
    stem = _item_stem(image, fields)
    rel = Path(subject.modality_group) / subject.source / stem
    item: dict = {"image": write_lossless(root / "images" / rel, plane).relative_to(root).as_posix()}
    for key, arr in labels.items():
        item[key] = write_lossless(root / "labels" / f"{rel}_{key}", _label_array(arr)).relative_to(root).as_posix()
    if image.boxes and "label" in labels:
        lab = labels["label"]
        instances = connected_components(lab > 0) if image.label_kind == "lesion" else lab
        item["boxes"], _ = instance_boxes(instances)
    if labels:
        item["label_kind"] = image.label_kind
        if image.label_kind in LABEL_CLASSES:
            item["label_classes"] = LABEL_CLASSES[image.label_kind]
    item.update(
        modality_group=subject.modality_group,
        modality=subject.modality,
        source=subject.source,
        subject=subject.subject,
        channels=3 if plane.ndim == 3 else 1,
        height=int(plane.shape[0]),
        width=int(plane.shape[1]),
    )
    item.update(fields)
    item.update(image.meta)
    if subject.synthetic:
        item["synthetic"] = True
    return item
