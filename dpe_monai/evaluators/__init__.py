"""Reusable evaluators: image quality (Table II protocol) and downstream segmentation / detection with recovery.

Every evaluator takes enhancement callables ``(B, C, H, W) [0, 1] -> same`` (a DPE :class:`~dpe_monai.inference.
Enhancer`, a :class:`~dpe_monai.baselines.ClassicalEnhancer`, any ``torch.nn.Module`` or function) and items of any
MONAI datalist (:func:`load_datalist`). Submodules are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EnhanceFn": "dpe_monai.evaluators.common",
    "load_datalist": "dpe_monai.evaluators.common",
    "load_clean": "dpe_monai.evaluators.common",
    "degrade": "dpe_monai.evaluators.common",
    "enhance": "dpe_monai.evaluators.common",
    "save_json": "dpe_monai.evaluators.common",
    "paired_set": "dpe_monai.evaluators.quality",
    "QualityScorer": "dpe_monai.evaluators.quality",
    "score_enhancers": "dpe_monai.evaluators.quality",
    "SegmentationEvaluator": "dpe_monai.evaluators.segmentation",
    "evaluate_segmentation": "dpe_monai.evaluators.segmentation",
    "train_segmenter": "dpe_monai.evaluators.segmentation",
    "DetectionEvaluator": "dpe_monai.evaluators.detection",
    "evaluate_detection": "dpe_monai.evaluators.detection",
    "train_detector": "dpe_monai.evaluators.detection",
    "build_detector": "dpe_monai.evaluators.detection",
    "mni_slab_datalist": "dpe_monai.evaluators.datasets",
    "mni_lesion_datalist": "dpe_monai.evaluators.datasets",
    "stardist_crops_datalist": "dpe_monai.evaluators.datasets",
}

# eager: the function ``recovery`` shares its name with its module, which a lazy lookup would return instead
from dpe_monai.evaluators.recovery import recovery as recovery  # noqa: E402
from dpe_monai.evaluators.recovery import recovery_table as recovery_table  # noqa: E402

__all__ = sorted([*_EXPORTS, "recovery", "recovery_table"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dpe_monai.evaluators' has no attribute {name!r}")
