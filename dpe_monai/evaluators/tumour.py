"""Tumour tasks on real masks: segmentation Dice, detection mAP and image quality of every input, per slice, with
bootstrap intervals over slices.

One pass over the test slices scores every input (degraded, each enhancer, clean) with both task networks and with
the quality metrics against the clean slice, so a trade-off between image quality and task recovery shows in one
table. Records from several folds (different task networks, different patients) can be pooled: Dice is per slice,
mAP is recomputed over the pooled detections.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from dpe_monai.evaluators.bootstrap import paired_recovery
from dpe_monai.evaluators.common import EnhanceFn, degrade, enhance, for_item, item_id, load_clean
from dpe_monai.evaluators.detection import _coco, _map, _target, detect
from dpe_monai.evaluators.segmentation import segment

__all__ = ["score_tumour_items", "summarise_tumour"]


def _dice(pred: torch.Tensor, ref: torch.Tensor) -> float:
    """Tumour Dice of two ``(H, W)`` binary maps (1.0 when both are empty)."""
    p, r = pred.bool(), ref.bool()
    denom = int(p.sum() + r.sum())
    return 1.0 if denom == 0 else 2.0 * int((p & r).sum()) / denom


def score_tumour_items(
    items: Sequence[Mapping[str, Any]],
    enhancers: Mapping[str, EnhanceFn],
    segmenter: torch.nn.Module | None,
    detector: torch.nn.Module | None,
    seed: int = 0,
    mode: str = "paper",
    fold: int | None = None,
    **degrade_kwargs: Any,
) -> list[dict[str, Any]]:
    """Score every input of every item.

    Args:
        items: test items with ``"image"``, ``"label"`` (0/1 map) and ``"boxes"``; an item's
            ``"degradation_mode"`` overrides ``mode``.
        enhancers: name -> enhancement callable (:func:`~dpe_monai.evaluators.common.for_item` binds the convention
            flag and, for the oracle, the true parameters).
        segmenter: binary U-Net (``segment`` -> class map), or None to skip Dice.
        detector: RetinaNet detector, or None to skip detection.
        seed: seed of the per-item degradation.
        mode: simulator mode.
        fold: recorded in each record.
        degrade_kwargs: forwarded to the simulator (e.g. ``brightness_threshold=None``).

    Returns:
        one record per item: ``id``, ``patient``, ``modality``, ``fold``, ``mode`` and per input ``dice``,
        ``psnr``, ``ssim``, ``delta_e`` (vs the clean slice) and ``detections``; ``target`` (boxes).
    """
    from dpe_monai.evaluators.quality import QualityScorer

    scorer = QualityScorer(feature_backbone=None)
    records = []
    for item in items:
        data = load_clean(item, label=True)
        clean, label = data["image"], data["label"]
        item_mode = item.get("degradation_mode", mode)
        lq, params = degrade(clean, seed, item_id(item), mode=item_mode, **degrade_kwargs)
        versions = {"degraded": lq}
        versions.update({k: enhance(for_item(fn, data["relative"], params), lq) for k, fn in enhancers.items()})
        versions["clean"] = clean
        rec: dict[str, Any] = {
            "id": item_id(item),
            "patient": item.get("patient"),
            "modality": item.get("modality"),
            "fold": fold,
            "mode": item_mode,
            "target": _target(item),
        }
        for metric in ("dice", "psnr", "ssim", "delta_e", "detections"):
            rec[metric] = {}
        for key, img in versions.items():
            if segmenter is not None:
                rec["dice"][key] = _dice(segment(segmenter, img[None])[0] == 1, label == 1)
            if detector is not None:
                rec["detections"][key] = detect(detector, img)
            q = scorer(img, clean)
            for metric in ("psnr", "ssim", "delta_e"):
                rec[metric][key] = q[metric]
        records.append(rec)
    return records


def _map50(records: Sequence[Mapping[str, Any]], key: str, metric: Any) -> float:
    return _map(metric, [r["detections"][key] for r in records], [r["target"] for r in records])["mAP_50"]


def _scores(records: Sequence[Mapping[str, Any]], inputs: Sequence[str], metric: str, coco: Any) -> Any:
    """``idx -> {input: score over the items idx}`` for ``metric`` (``"dice"``: mean; ``"mAP_50"``: pooled AP)."""
    if metric == "dice":
        arr = {k: np.asarray([r["dice"][k] for r in records], dtype=np.float64) for k in inputs}
        return lambda idx: {k: float(a[idx].mean()) for k, a in arr.items()}
    return lambda idx: {k: _map50([records[i] for i in idx], k, coco) for k in inputs}


def summarise_tumour(
    records: Sequence[Mapping[str, Any]],
    n_boot: int = 1000,
    n_boot_map: int = 200,
    seed: int = 0,
    baselines: Sequence[str] = (),
) -> dict[str, Any]:
    """Mean scores, recovery and bootstrap intervals (over slices, paired across inputs) of scored records.

    Each resample of slices is scored once for every input; recoveries are computed from the same resamples.

    Args:
        records: from :func:`score_tumour_items`.
        n_boot: resamples for Dice.
        n_boot_map: resamples for mAP (each recomputes COCO AP).
        seed: seed of the resampling.
        baselines: inputs to compare against (e.g. the classical methods): per metric, the one with the highest
            point recovery is "best", and every other enhancer gets the paired interval of its recovery minus the
            best's (the same resamples), so a loss or win can be told from noise.

    Returns:
        ``{"n_slices", "n_patients", "patients", "inputs": {input: {dice, mAP_50, psnr, ssim, delta_e}},
        "recovery": {enhancer: {dice, mAP_50}}, "versus_best": {metric: {"best", "difference": {enhancer: ...}}}}``;
        every task score, recovery and difference is a :func:`~dpe_monai.evaluators.bootstrap.bootstrap_ci` dict;
        quality metrics are plain means (the clean input's infinite PSNR left out).
    """
    n = len(records)
    if n == 0:
        return {"n_slices": 0, "n_patients": 0, "patients": {}, "inputs": {}, "recovery": {}}
    inputs = list(records[0]["psnr"])
    enhanced = [k for k in inputs if k not in ("degraded", "clean")]
    patients: dict[str, int] = {}
    for r in records:
        patients[str(r["patient"])] = patients.get(str(r["patient"]), 0) + 1
    out: dict[str, Any] = {"n_slices": n, "n_patients": len(patients), "patients": patients}
    out["inputs"] = {k: {} for k in inputs}
    out["recovery"] = {k: {} for k in enhanced}
    coco = _coco(["tumour"]) if records[0]["detections"] else None
    for metric, boots in (("dice", n_boot), ("mAP_50", n_boot_map)):
        if not records[0]["dice" if metric == "dice" else "detections"]:
            continue
        res = paired_recovery(_scores(records, inputs, metric, coco), n, inputs, baselines, boots, seed)
        for k in inputs:
            out["inputs"][k][metric] = res["scores"][k]
        for k in enhanced:
            out["recovery"][k][metric] = res["recovery"][k]
        if res["versus_best"]:
            out.setdefault("versus_best", {})[metric] = res["versus_best"]
    for k in inputs:
        for q in ("psnr", "ssim", "delta_e"):
            vals = np.asarray([r[q][k] for r in records], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            out["inputs"][k][q] = float(vals.mean()) if vals.size else math.nan
    return out
