"""Input checks of the downstream evaluators: one line naming the item (its file) and the problem.

A user's datalist with a class index past ``num_classes``, a label of another size than its image, boxes outside the
image or no ``"boxes"`` at all used to train silently (padding, cropping or "no objects") and then fail deep inside
MONAI or torch, or score a number that meant nothing. These run before training and while scoring; they change
no result of valid data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["check_boxes", "check_classes", "check_items", "check_label", "check_scored"]


def _name(item: Mapping[str, Any]) -> str:
    return str(item.get("image", item.get("id", "<item without 'image'>")))


def check_items(items: Sequence[Mapping[str, Any]], split: str, keys: Sequence[str]) -> None:
    """Every item of ``split`` has ``keys``, and there is at least one item.

    Raises:
        ValueError: no items, or an item without one of ``keys`` (named by its image).
    """
    if not items:
        raise ValueError(f"the {split} items are empty: nothing to train on or score")
    for item in items:
        missing = [k for k in keys if k not in item]
        if missing:
            raise ValueError(f"{_name(item)}: this {split} item has no {', '.join(map(repr, missing))}")


def check_classes(num_classes: int, class_names: Sequence[str] | None) -> None:
    """A segmentation needs ``num_classes >= 2`` (background included) and, if given, one name per class.

    Raises:
        ValueError: naming the mismatch.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes}: a segmentation needs at least 2 classes (background included)")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class_names for num_classes={num_classes}: give one name per class")


def check_label(item: Mapping[str, Any], image: torch.Tensor, label: torch.Tensor, num_classes: int) -> None:
    """A loaded label ``(H, W)`` matches its image ``(C, H, W)`` in size and holds class indices ``0..num_classes-1``;
    a label file with several channels (an RGB or RGBA PNG) holds the same index in each of them.

    The evaluators read a label through its first channel, so a colour-coded label (red for one class, green for
    another) would train on its red channel alone.

    Raises:
        ValueError: naming the label file and the problem.
    """
    where = item.get("label", _name(item))
    if isinstance(where, (str, os.PathLike)):
        from monai.transforms import LoadImage

        raw = torch.as_tensor(LoadImage(image_only=True, ensure_channel_first=True, dtype=None)(where))
        if raw.shape[0] > 1 and not bool((raw == raw[:1]).all()):
            raise ValueError(
                f"{where}: a label with {raw.shape[0]} channels that differ (a colour-coded label?): store one class "
                "index per pixel, as a single-channel image"
            )
    if tuple(label.shape) != tuple(image.shape[-2:]):
        raise ValueError(
            f"{where}: label of size {tuple(label.shape)} does not match its image {_name(item)} of size "
            f"{tuple(image.shape[-2:])}"
        )
    lo, hi = int(label.min()), int(label.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"{where}: class indices {lo}..{hi} are outside 0..{num_classes - 1} (num_classes={num_classes})"
        )


def check_boxes(item: Mapping[str, Any], image_shape: Sequence[int], num_classes: int) -> None:
    """An item's ``"boxes"`` are ``[[x0, y0, x1, y1], ...]`` inside the image (x along the first spatial axis of
    ``image_shape`` ``(C, X, Y)``, MONAI's convention) with ``x1 > x0``, ``y1 > y0``, and its ``"labels"`` (if any)
    are one class index ``0..num_classes-1`` per box. An empty list means an image without objects.

    Raises:
        ValueError: naming the image and the problem.
    """
    boxes = np.asarray(item["boxes"], dtype=np.float64)
    if boxes.size and (boxes.ndim != 2 or boxes.shape[1] != 4):
        raise ValueError(f"{_name(item)}: boxes must be [[x0, y0, x1, y1], ...]; got an array of shape {boxes.shape}")
    boxes = boxes.reshape(-1, 4)
    if not np.isfinite(boxes).all():
        raise ValueError(f"{_name(item)}: boxes hold NaN/inf coordinates")
    if (boxes[:, 2] <= boxes[:, 0]).any() or (boxes[:, 3] <= boxes[:, 1]).any():
        raise ValueError(f"{_name(item)}: every box needs x1 > x0 and y1 > y0 ([x0, y0, x1, y1])")
    size = tuple(int(s) for s in image_shape[-2:])
    if (boxes[:, :2] < 0).any() or (boxes[:, 2] > size[0]).any() or (boxes[:, 3] > size[1]).any():
        raise ValueError(f"{_name(item)}: boxes reach outside the image of size {size} (x, y)")
    labels = item.get("labels")
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(boxes):
            raise ValueError(f"{_name(item)}: {len(labels)} labels for {len(boxes)} boxes")
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"{_name(item)}: box labels {int(labels.min())}..{int(labels.max())} are outside "
                f"0..{num_classes - 1} ({num_classes} class names)"
            )


def check_scored(n: int, given: int, skipped: int) -> None:
    """An evaluation scored at least one item.

    Raises:
        ValueError: nothing was scored, with why (the luminance gate) and the override.
    """
    if n:
        return
    if not given:
        raise ValueError("the test items are empty: nothing to score")
    raise ValueError(
        f"none of the {given} test items was scored: {skipped} are at or under the simulator's luminance gate (mean "
        "L8 <= 100, e.g. scans with a wide black background), which leaves them undegraded; pass "
        "degrade_kwargs={'brightness_threshold': None} to degrade and score them"
    )
