"""Keep the items the simulator would degrade (Algorithm 1's luminance gate), for fair evaluation sets."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

__all__ = ["degradable_items"]


def degradable_items(items: Sequence[Mapping], threshold: float | None = 100.0, required: bool = False) -> list[dict]:
    """Items whose image passes the luminance gate ``mean L8 > threshold`` of :class:`RandLowQuality`.

    The paper builds its pairs only from images brighter than ``B_T``; darker images are taken to be low quality
    already and left as they are. An evaluation that kept them would score an untouched input against itself
    (infinite PSNR), so benchmarks and the demo drop them. Each kept item gets ``"luminance_l8"``.

    Args:
        items: MONAI datalist items with an ``"image"`` path (already resolved against the base dir).
        threshold: ``B_T`` on the 8-bit Lab lightness scale; None keeps every item (the simulator's gate off).
        required: raise when no item passes (an evaluation with nothing to score), naming the gate and its override.

    Raises:
        ValueError: ``required`` and no item passes.
    """
    from monai.transforms import LoadImage

    from dpe_monai.transforms import IntensityWindow, ToRGB, mean_luminance_l8

    load, window, rgb = (
        LoadImage(image_only=True, ensure_channel_first=True, dtype=None),
        IntensityWindow("auto"),
        ToRGB(),
    )
    kept = []
    for item in items:
        lum = mean_luminance_l8(rgb(window(load(item["image"]))))
        if threshold is None or lum > threshold:
            kept.append({**item, "luminance_l8": lum})
    if len(kept) < len(items):
        logging.getLogger(__name__).warning(
            "luminance gate: %d of %d images have mean L8 <= %g (already dark: the paper pairs only brighter "
            "images) and are left out",
            len(items) - len(kept),
            len(items),
            threshold,
        )
    if required and not kept:
        raise ValueError(
            f"none of the {len(items)} images passes the luminance gate (mean L8 > {threshold:g}): the paper leaves "
            "images this dark as they are, so there is nothing to degrade and score; set brightness_threshold to 0 "
            "(e.g. --brightness_threshold 0) to score them anyway"
            if items
            else "there are no images to score"
        )
    return kept
