"""Example pipeline: enhance an image with DPE, then feed the enhanced image to a segmentation infer task.

Any MONAI Label segmentation task works as the second stage, typically a ``BundleInferTask`` on a MONAI model-zoo
bundle such as ``spleen_ct_segmentation`` (see ``main.py``). The enhanced image keeps the input's units (HU for CT,
the scanner's values for MR, the same bit depth for PNG/TIFF), so the segmentation bundle's own preprocessing
(e.g. ``ScaleIntensityRanged`` on HU) applies unchanged. The result is the segmentation's label file; the
enhancement's details are added to the result JSON under ``"enhancement"``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferTask

from dpe_monai.integrations.monailabel.lib.infers.enhance import SERIES_AS_FOLDER, EnhanceInfer

__all__ = ["EnhanceThenSegment"]

logger = logging.getLogger(__name__)


class EnhanceThenSegment(InferTask):
    """Run ``enhance`` on the request's image, then ``segment`` on the enhanced image.

    Args:
        enhance: the DPE enhancement task.
        segment: a MONAI Label segmentation infer task (e.g. ``BundleInferTask``); its type, labels and
            dimension are this task's.
        keep_enhanced: keep the intermediate enhanced file (its path is reported in the result JSON).
        description: shown by MONAI Label clients.
    """

    def __init__(
        self,
        enhance: EnhanceInfer,
        segment: InferTask,
        keep_enhanced: bool = False,
        description: str = "DPE enhancement followed by segmentation of the enhanced image",
    ) -> None:
        super().__init__(
            type=segment.type,
            labels=segment.labels,
            dimension=segment.dimension,
            description=description,
            config={**enhance.config(), **segment.config()},
        )
        self.enhance = enhance
        self.segment = segment
        self.keep_enhanced = keep_enhanced

    def is_valid(self) -> bool:
        return self.enhance.is_valid() and self.segment.is_valid()

    def __call__(self, request: dict[str, Any], callbacks: Any = None) -> tuple[Any, dict]:
        """Enhance, segment the enhanced image, return ``(label file, result JSON)``."""
        enhanced, enhance_json = self.enhance({**request, SERIES_AS_FOLDER: True})
        logger.info(f"Enhanced image for segmentation: {enhanced}")
        try:
            seg_request = {k: v for k, v in request.items() if k != SERIES_AS_FOLDER}
            seg_request["image"] = enhanced
            label, result = self.segment(seg_request) if callbacks is None else self.segment(seg_request, callbacks)
        finally:
            if not self.keep_enhanced:
                _remove(enhanced)
        result = dict(result)
        result["enhancement"] = {**enhance_json, "file": enhanced if self.keep_enhanced else None}
        return label, result


def _remove(path: str | os.PathLike) -> None:
    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
