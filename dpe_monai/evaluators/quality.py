"""Full-reference image quality of any set of enhancement callables on any datalist (the Table II protocol).

Protocol (recorded by :func:`protocol`): each item is loaded as the bundle's ``evaluate.json`` loads it (float32 RGB
in [0, 1] through the intensity contract: 8-bit files /255, others their percentile window; centre crop to
``max_side``), degraded by the simulator seeded per item (seed, item id), enhanced by every method from the same
degraded tensor, and scored against the clean tensor in float (no 8-bit rounding): PSNR (data range 1), SSIM (MONAI,
11x11 Gaussian window, per channel), CIEDE2000 DeltaE (sRGB -> Lab D65) and the feature distance of
:class:`~dpe_monai.metrics.FeatureDistanceMetric`. Items the simulator's luminance gate leaves untouched are not
scored (their input equals the reference).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from dpe_monai.evaluators.common import (
    EnhanceFn,
    clean_transforms,
    degrade,
    enhance,
    for_item,
    item_id,
    load_clean,
    save_json,
    timed,
)
from dpe_monai.evaluators.verdict import LOWER_IS_BETTER
from dpe_monai.markdown import markdown_table

__all__ = [
    "METRICS",
    "LOWER_IS_BETTER",
    "paired_set",
    "pair_transforms",
    "with_ids",
    "QualityScorer",
    "QualitySaver",
    "score_enhancers",
    "summarise",
    "protocol",
    "quality_table",
]

#: groups with fewer scored images are reported but left out of the mean of group means
MIN_GROUP_N = 5

METRICS = ("psnr", "ssim", "delta_e", "feature_distance")


def protocol(seed: int, mode: str, max_side: int | None, feature_backbone: str | None) -> dict[str, Any]:
    """The scoring protocol as a plain dict, stored beside the numbers."""
    return {
        "seed": seed,
        "degradation": f"dpe_monai.transforms.SeededLowQualityd(mode={mode!r}): the simulator seeded per item by "
        "(seed, item id); item id = the datalist's 'id', else the image path's last three parts",
        "value_range": "float32 [0, 1]; no 8-bit rounding",
        "loading": (
            "LoadImaged -> IntensityWindowd(auto: the intensity contract, 8-bit /255, else the 0.5-99.5 % percentile "
            "window over the body) -> ToRGBd (grey replicated)"
        ),
        "grey_images": "replicated to RGB before the simulator (as in training and evaluate.json), so its noise is "
        "drawn per channel and degraded grey images carry chroma noise",
        "crop": f"centre crop to {max_side}" if max_side else "none",
        "colour_space": "metrics on RGB; DeltaE via skimage rgb2lab (sRGB, D65, 2 deg) + deltaE_ciede2000",
        "psnr": "10 log10(1 / MSE) over all pixels and channels (MONAI PSNRMetric, max_val=1)",
        "ssim": "MONAI SSIMMetric(spatial_dims=2, data_range=1), Gaussian 11x11, sigma 1.5, mean over channels",
        "feature_distance": f"FeatureDistanceMetric(backbone={feature_backbone!r}) (LPIPS-like, not LPIPS)"
        if feature_backbone
        else "not computed",
        "skipped": "items left untouched by the simulator's luminance gate (input == reference) are not scored",
        "average": f"'average' = mean of the means of the groups with at least {MIN_GROUP_N} scored images (the paper's"
        " Table II; a smaller group is reported but would let one image carry the headline); 'pooled' = mean over"
        " all images",
    }


def with_ids(items: Sequence[Mapping[str, Any]]) -> list[dict]:
    """The items with their stable ``"id"`` (:func:`~dpe_monai.evaluators.common.item_id`) filled in."""
    return [{**item, "id": item_id(item)} for item in items]


def pair_transforms(seed: int = 0, mode: str = "paper", max_side: int | None = 1024, **degrade_kwargs: Any) -> list:
    """The protocol's loading and degradation as MONAI transforms, for items passed through :func:`with_ids`.

    :func:`~dpe_monai.evaluators.common.clean_transforms` then ``SeededLowQualityd`` keyed by the item's ``"id"``
    (writes ``"lq"`` and ``"lq_params"``): the same pairs as :func:`paired_set`, for the bundle's ``evaluate.json``.
    """
    from dpe_monai.transforms import SeededLowQualityd

    degrader = SeededLowQualityd(
        keys="image", lq_keys="lq", params_key="lq_params", seed=seed, id_key="id", mode=mode, **degrade_kwargs
    )
    return [*clean_transforms("image", max_side), degrader]


def paired_set(
    items: Sequence[Mapping[str, Any]],
    seed: int = 0,
    mode: str = "paper",
    max_side: int | None = 1024,
    limit_per_group: int | None = None,
    group_key: str = "modality_group",
    **degrade_kwargs: Any,
) -> tuple[list[dict], list[str]]:
    """Load and degrade every item; returns ``(pairs, skipped_ids)``.

    Each pair: ``id``, ``group`` (``item[group_key]`` or ``"all"``), ``modality``, ``source``, ``image`` (clean,
    ``(3, H, W)``), ``lq`` (degraded) and ``lq_params``. ``limit_per_group`` keeps the first N degraded items of
    each group (CI runs).
    """
    pairs, skipped = [], []
    count: dict[str, int] = defaultdict(int)
    for item in items:
        group = str(item.get(group_key, "all"))
        if limit_per_group is not None and count[group] >= limit_per_group:
            continue
        ident = item_id(item)
        loaded = load_clean(item, max_side=max_side)
        clean = loaded["image"]
        lq, params = degrade(clean, seed, ident, mode=mode, **degrade_kwargs)
        if not params["applied"]:
            skipped.append(ident)
            continue
        count[group] += 1
        pairs.append(
            {
                "id": ident,
                "group": group,
                "modality": item.get("modality"),
                "source": item.get("source"),
                "subject": str(item.get("subject", ident)),
                "image": clean,
                "lq": lq,
                "lq_params": params,
                "relative": loaded["relative"],
            }
        )
    return pairs, skipped


def subjects_per_group(pairs: list[dict]) -> dict[str, int]:
    """Number of distinct subjects (``item["subject"]``, else the item id) among the pairs of each group."""
    subjects: dict[str, set[str]] = defaultdict(set)
    for p in pairs:
        subjects[p["group"]].add(p.get("subject", p["id"]))
    return {g: len(s) for g, s in sorted(subjects.items())}


class QualityScorer:
    """PSNR, SSIM, DeltaE and feature distance of one prediction against its reference (``(3, H, W)`` in [0, 1]).

    Args:
        feature_backbone: backbone of the feature distance (``"hed_vgg16"``; ``"random"`` for tests; ``None`` skips
            the metric).
    """

    def __init__(self, feature_backbone: str | None = "hed_vgg16") -> None:
        from monai.metrics import PSNRMetric, SSIMMetric

        from dpe_monai.metrics import FeatureDistanceMetric

        self.psnr = PSNRMetric(max_val=1.0)
        self.ssim = SSIMMetric(spatial_dims=2, data_range=1.0)
        self.fd = FeatureDistanceMetric(backbone=feature_backbone) if feature_backbone else None

    def __call__(self, pred: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
        from dpe_monai.metrics import compute_delta_e

        p, r = pred[None].float(), ref[None].float()
        out = {
            "psnr": float(self.psnr(p, r).item()),
            "delta_e": float(compute_delta_e(p, r)[0]),
        }
        # MONAI's SSIM needs each side >= the 11-pixel window; smaller images get no SSIM.
        out["ssim"] = float(self.ssim(p, r).item()) if min(p.shape[-2:]) >= 11 else math.nan
        if self.fd is not None:
            out["feature_distance"] = float(self.fd(p, r).item())
        for metric in (self.psnr, self.ssim, self.fd):
            if metric is not None:
                metric.reset()  # used per image only: keep the cumulative buffers empty
        return out


def score_enhancers(
    pairs: Sequence[Mapping[str, Any]],
    enhancers: Mapping[str, EnhanceFn],
    scorer: QualityScorer | None = None,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Score every enhancement callable on every pair.

    Args:
        pairs: from :func:`paired_set`.
        enhancers: name -> callable ``(B, 3, H, W) [0,1] -> same``; the identity (``"input"``) is added if absent.
        scorer: a :class:`QualityScorer` (default with the HED VGG-16 feature distance).
        keep: called with each pair; where True the pair's outputs are kept (``"outputs"``, for image grids).

    Returns:
        ``{"per_image": [...], "summary": ..., "seconds_per_image": {...}, "outputs": {id: {name: tensor}}}``.
    """
    scorer = scorer or QualityScorer()
    enhancers = {"input": lambda x: x, **dict(enhancers)}
    per_image, outputs = [], {}
    seconds: dict[str, float] = defaultdict(float)
    for pair in pairs:
        rec = {k: pair[k] for k in ("id", "group", "modality", "source", "lq_params")}
        rec["shape"] = list(pair["image"].shape)
        rec["metrics"] = {}
        kept = {} if keep is not None and keep(pair) else None
        for name, fn in enhancers.items():
            fn = for_item(fn, pair.get("relative"), pair["lq_params"])
            out, sec = timed(lambda fn=fn, lq=pair["lq"], at=f"{name} on {pair['id']}": enhance(fn, lq, at))
            seconds[name] += sec
            rec["metrics"][name] = scorer(out, pair["image"])
            if kept is not None:
                kept[name] = out
        if kept is not None:
            kept["reference"] = pair["image"]
            outputs[pair["id"]] = kept
        per_image.append(rec)
    n = max(len(pairs), 1)
    return {
        "per_image": per_image,
        "summary": summarise(per_image, list(enhancers)),
        "seconds_per_image": {k: v / n for k, v in seconds.items()},
        "outputs": outputs,
    }


def _stats(values: list[float]) -> dict[str, float]:
    arr = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"mean": math.nan, "std": math.nan, "median": math.nan, "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std()), "median": float(np.median(arr)), "n": int(arr.size)}


def summarise(
    per_image: Sequence[Mapping[str, Any]], methods: Sequence[str], min_group_n: int = MIN_GROUP_N
) -> dict[str, Any]:
    """Per method: per group ``{metric: {mean, std, median, n}}``, ``average`` and ``pooled``.

    ``average`` is the mean of the group means over groups with at least ``min_group_n`` scored images (all groups
    if none has that many), so a headline never rests on a group of one image; ``pooled`` is over all images.
    """
    counts: dict[str, int] = {}
    for r in per_image:
        counts[r["group"]] = counts.get(r["group"], 0) + 1
    groups = sorted(counts)
    headline = [g for g in groups if counts[g] >= min_group_n] or groups
    summary: dict[str, Any] = {}
    for name in methods:
        entry: dict[str, Any] = {}
        metric_names = sorted({m for r in per_image for m in r["metrics"].get(name, {})})
        for g in groups:
            rows = [r["metrics"][name] for r in per_image if r["group"] == g and name in r["metrics"]]
            entry[g] = {m: _stats([row[m] for row in rows if m in row]) for m in metric_names}
        entry["average"] = {
            m: float(np.nanmean([entry[g][m]["mean"] for g in headline])) if headline else math.nan
            for m in metric_names
        }
        rows = [r["metrics"][name] for r in per_image if name in r["metrics"]]
        entry["pooled"] = {m: _stats([row[m] for row in rows if m in row]) for m in metric_names}
        summary[name] = entry
    return summary


class QualitySaver:
    """Ignite handler for a MONAI evaluator: score each item with :class:`QualityScorer`, write the protocol's files.

    Reads ``pred``/``label`` (``(3, H, W)`` in [0, 1]) from the evaluator's output and ``id``, ``group_key`` and
    ``lq_params`` from its batch; items the simulator left untouched are not scored. At the end of the run it
    writes ``<output_dir>/quality.json`` (protocol, per-image metrics, :func:`summarise` summary) and
    ``quality.md`` (:func:`quality_table`); ``self.result`` holds the same dict.

    Args:
        output_dir: folder of the two files.
        method: name of the evaluated method (the summary's key).
        feature_backbone: see :class:`QualityScorer` (None: no feature distance).
        protocol: stored beside the numbers (e.g. :func:`protocol`).
        group_key: batch key of the item's group (``"all"`` when absent).
    """

    def __init__(
        self,
        output_dir: str,
        method: str = "dpe",
        feature_backbone: str | None = None,
        protocol: Mapping[str, Any] | None = None,
        group_key: str = "modality_group",
    ) -> None:
        self.output_dir = output_dir
        self.method = method
        self.scorer = QualityScorer(feature_backbone)
        self.protocol = dict(protocol or {})
        self.group_key = group_key
        self.records: list[dict] = []
        self.skipped: list[str] = []
        self.result: dict[str, Any] = {}

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._score)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Any) -> None:
        self.records, self.skipped = [], []

    def _score(self, engine: Any) -> None:
        from monai.data import decollate_batch

        batch, output = engine.state.batch, engine.state.output
        batch = decollate_batch(batch) if isinstance(batch, Mapping) else batch
        output = decollate_batch(output) if isinstance(output, Mapping) else output
        for item, out in zip(batch, output):
            ident = str(item.get("id"))
            params = item.get("lq_params") or {}
            if not bool(params.get("applied", True)):
                self.skipped.append(ident)
                continue
            pred, ref = (
                torch.as_tensor(out[k]).detach().float().cpu().as_subclass(torch.Tensor) for k in ("pred", "label")
            )
            self.records.append(
                {
                    "id": ident,
                    "group": str(item.get(self.group_key, "all")),
                    "metrics": {self.method: self.scorer(pred.clamp(0.0, 1.0), ref)},
                }
            )

    def _write(self, engine: Any) -> None:
        from pathlib import Path

        summary = summarise(self.records, [self.method])
        self.result = {
            "method": self.method,
            "protocol": self.protocol,
            "skipped": self.skipped,
            "per_image": self.records,
            "summary": summary,
        }
        save_json(Path(self.output_dir) / "quality.json", self.result)
        (Path(self.output_dir) / "quality.md").write_text(quality_table(summary, [self.method]) + "\n")


_FORMATS = {"psnr": "{:.2f}", "ssim": "{:.3f}", "delta_e": "{:.2f}", "feature_distance": "{:.4f}"}
_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "delta_e": "DeltaE", "feature_distance": "feature distance"}


def _cell(values: Mapping[str, Any], metrics: Sequence[str]) -> str:
    out = []
    for m in metrics:
        v = values.get(m, math.nan)
        v = v["mean"] if isinstance(v, Mapping) else v
        out.append(_FORMATS.get(m, "{:.4f}").format(v) if v is not None and math.isfinite(v) else "-")
    return " / ".join(out)


def quality_table(
    summary: Mapping[str, Any],
    methods: Sequence[str],
    labels: Mapping[str, str] | None = None,
    metrics: Sequence[str] = ("psnr", "ssim", "delta_e"),
) -> str:
    """Markdown table of a :func:`summarise` summary: one row per group, then all images pooled and the average.

    Each method gets one column ``PSNR / SSIM / DeltaE`` (``metrics``); ``labels`` renames methods. ``n`` is the
    number of scored images of the first method.
    """
    labels = dict(labels or {})
    first = summary[methods[0]]
    groups = sorted(g for g in first if g not in ("average", "pooled"))
    head = ["group", "n"] + [f"{labels.get(m, m)} " + " / ".join(_NAMES.get(k, k) for k in metrics) for m in methods]

    def n_of(stats: Mapping[str, Any]) -> int:
        return max((int(v.get("n", 0)) for v in stats.values() if isinstance(v, Mapping)), default=0)

    headline = [g for g in groups if n_of(first[g]) >= MIN_GROUP_N] or groups  # as summarise() averages
    rows = [
        [g if g in headline else f"{g} (n < {MIN_GROUP_N}: not in the mean of groups)", n_of(first[g])]
        + [_cell(summary[m].get(g, {}), metrics) for m in methods]
        for g in groups
    ]
    rows.append(
        ["all images (pooled)", n_of(first["pooled"])] + [_cell(summary[m]["pooled"], metrics) for m in methods]
    )
    mean_row = "mean of group means" + (f" (groups with n >= {MIN_GROUP_N})" if headline != groups else "")
    rows.append([mean_row, "-"] + [_cell(summary[m]["average"], metrics) for m in methods])
    return markdown_table(head, rows)
