"""Infer tasks of the DPE MONAI Label app, and :func:`build_infers` that ``main.py`` registers."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from monailabel.interfaces.tasks.infer_v2 import InferTask

from dpe_monai.integrations.monailabel.lib.infers.enhance import EnhanceInfer
from dpe_monai.integrations.monailabel.lib.infers.enhance_then_segment import EnhanceThenSegment

__all__ = ["EnhanceInfer", "EnhanceThenSegment", "build_infers"]

logger = logging.getLogger(__name__)


def _default_bundle() -> str:
    from dpe_monai.cli import default_bundle

    return str(default_bundle())


def build_infers(conf: dict[str, str], segment: InferTask | None = None) -> dict[str, InferTask]:
    """The app's infer tasks, from MONAI Label ``--conf`` values (all optional strings).

    ``dpe_bundle`` (default ``$DPE_MONAI_BUNDLE`` or the repository's bundle), ``dpe_weights``, ``precision``,
    ``tile_size``, ``overlap``, ``axis``, ``max_pixels``; ``segmentation_bundle``: a MONAI segmentation bundle
    folder (e.g. the model zoo's ``spleen_ct_segmentation``) for the enhance-then-segment example.

    Returns:
        ``{"dpe_enhance": EnhanceInfer}``, plus ``"segment"`` and ``"dpe_enhance_then_segment"`` when a
        segmentation task is given (``segment``) or configured (``segmentation_bundle``).
    """
    enhance = EnhanceInfer(
        conf.get("dpe_bundle") or os.environ.get("DPE_MONAI_BUNDLE") or _default_bundle(),
        weights=conf.get("dpe_weights"),
        precision=conf.get("precision", "auto"),
        tile_size=int(conf.get("tile_size", 1024)),
        overlap=float(conf.get("overlap", 0.25)),
        axis=int(conf.get("axis", 2)),
        max_pixels=int(conf.get("max_pixels", 256 * 2**20)),
    )
    if not enhance.is_valid():
        logger.warning(f"DPE bundle {enhance.bundle} has no configs/inference.json or weights; dpe_enhance is invalid")
    infers: dict[str, InferTask] = {"dpe_enhance": enhance}
    if segment is None and conf.get("segmentation_bundle"):
        from monailabel.tasks.infer.bundle import BundleInferTask

        segment = BundleInferTask(str(Path(conf["segmentation_bundle"])), conf)
    if segment is not None:
        infers["segment"] = segment
        infers["dpe_enhance_then_segment"] = EnhanceThenSegment(enhance, segment)
    return infers
