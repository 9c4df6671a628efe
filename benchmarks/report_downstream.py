"""Report section of the downstream tasks (``downstream.json``: segmentation, nuclei, lesions; the tumour task has
its own, :mod:`benchmarks.report_tumour`), and the paired "against the best classical method" tables of both."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmarks.plots import grouped_bars
from benchmarks.report_sections import _img

__all__ = [
    "augmented_section",
    "ci_text",
    "downstream_section",
    "is_weak_task",
    "paired_verdict",
    "small_test_set",
    "versus_best_table",
]


def ci_text(v: dict | None, fmt: Any, digits: int = 3) -> str:
    """``value [low, high]`` of a bootstrap interval dict, or "n/a"."""
    if not v or v.get("value") is None or (isinstance(v["value"], float) and math.isnan(v["value"])):
        return "n/a"
    low, high = v.get("low"), v.get("high")
    band = f" [{fmt(low, digits)}, {fmt(high, digits)}]" if low is not None and high is not None else ""
    return f"{fmt(v['value'], digits)}{band}"


def paired_verdict(d: dict | None) -> str | None:
    """``"wins"``, ``"loses"`` or ``"tie"`` for a paired difference interval (above, below or holding 0); None when
    it is missing or NaN."""
    if not d or any(x is None or math.isnan(x) for x in (d.get("low"), d.get("high"))):
        return None
    return "loses" if d["high"] < 0 else ("wins" if d["low"] > 0 else "tie")


def versus_best_table(
    versus: dict[str, dict | None], names: list[str], ctx: dict, sample: str, weak: frozenset[str] = frozenset()
) -> list[str]:
    """Each of ``names``' recovery minus the best classical method's, paired over the same bootstrap resamples
    (:func:`~dpe_monai.evaluators.bootstrap.paired_recovery`): an interval that holds 0 is a tie within the noise
    of ``sample``; one below 0 a loss, above 0 a win.

    Args:
        versus: column label (the metric) -> the ``versus_best`` record (``{"best", "difference"}``) or None.
        names: the inputs to list (networks and the oracle).
        ctx: the report's context (``fmt``, ``table``, ``labels``).
        sample: what was resampled, e.g. "24 slices".
        weak: the columns whose degradation costs the task model too little (:data:`WEAK_TASK_GAP`, or improves it):
            recovery divides by that cost, so their intervals get no verdict ("not evidence").
    """
    versus = {m: v for m, v in versus.items() if v}
    if not versus:
        return []
    fmt, table, labels = ctx["fmt"], ctx["table"], ctx["labels"]
    rows = []
    for name in names:
        cells = []
        for m, v in versus.items():
            d = v["difference"].get(name)
            word = "not evidence" if m in weak and d else paired_verdict(d)
            cells.append(ci_text(d, fmt, 2) + (f" ({word})" if word else "") if d else "n/a")
        rows.append([labels.get(name, name), *cells])
    header = ["input"] + [f"recovery minus {labels.get(v['best'], v['best'])} ({m})" for m, v in versus.items()]
    caption = (
        f"Against the best classical method: recovery difference, paired bootstrap over the same resamples of the "
        f"{sample} (95 %); an interval holding 0 is a tie within the noise of this test set."
    )
    return [caption, "", table(header, rows), ""]


#: below this clean-input score, or this clean - degraded gap, a task's recovery figures are flagged as unreliable
WEAK_TASK_SCORE, WEAK_TASK_GAP = 0.3, 0.1


def _task_scores(r: dict) -> tuple[str, float, float]:
    key = "mean_dice" if "mean_dice" in r["inputs"]["clean"] else "mAP_50"
    return key, r["inputs"]["clean"][key], r["inputs"]["degraded"][key]


def is_weak_task(r: dict) -> bool:
    """True when a downstream task model is too weak (clean score or clean - degraded gap) for recovery to mean much."""
    _, clean, degraded = _task_scores(r)
    return clean < WEAK_TASK_SCORE or clean - degraded < WEAK_TASK_GAP


#: detection tasks with fewer test boxes than this get a small-test-set note
SMALL_TEST_BOXES = 100


def small_test_set(r: dict) -> bool:
    """True for a detection task scored on fewer than :data:`SMALL_TEST_BOXES` boxes."""
    return "n_test_boxes" in r and r["n_test_boxes"] < SMALL_TEST_BOXES


def _weak_task(r: dict, fmt: Any) -> list[str]:
    """A warning line when the task model is too weak for its recovery figures to mean much."""
    small = (
        [
            f"Note: {r['n_test_boxes']} test boxes in {r['n_test']} images (below {SMALL_TEST_BOXES}); one box more or "
            "less found moves AP by a few points, so close rankings on this task are within noise.",
            "",
        ]
        if small_test_set(r)
        else []
    )
    if not is_weak_task(r):
        return small
    key, clean, degraded = _task_scores(r)
    return [
        f"**Warning:** the task model scores only {fmt(clean, 3)} ({key}) on clean inputs and {fmt(degraded, 3)} on "
        f"degraded ones (flagged below {WEAK_TASK_SCORE} clean or a gap below {WEAK_TASK_GAP}); its recovery "
        "figures rest on very few correct detections and should not be read as evidence for or against a method.",
        "",
    ] + small


def downstream_section(d: dict | None, ctx: dict) -> list[str]:
    """Scores and recovery per task, with the caveats, and a recovery bar chart."""
    out = ["## 4. Downstream tasks", ""]
    if d is None:
        return out + [f"Not run yet: `{ctx['commands']['downstream']}`.", ""]
    fmt, table, labels = ctx["fmt"], ctx["table"], ctx["labels"]
    out += [f"Latest run: `{d['command']}`  ", f"Machine: {ctx['machine_line'](d)}", "", "Protocol:", ""]
    out += [f"- {k}: {v}" for k, v in d["protocol"].items()] + [""]
    dpe = d.get("methods", {}).get("dpe") or {}
    if dpe and "bundle_version" not in dpe:  # scored before results recorded the bundle and the route (< 0.6.0)
        out += [
            f"DPE was scored with the weights `{dpe.get('checkpoint')}` (sha256 {dpe.get('checkpoint_sha256')}) "
            "before results recorded the bundle version and the route flag; since bundle 0.6.0 every grey input "
            "(all of these tasks' inputs) takes the scan path, so these rows may not describe the shipped bundle.",
            "",
        ]
    if dpe.get("bundle_version"):
        out += [f"DPE: bundle {dpe['bundle_version']}; {dpe.get('route', '')}.", ""]
    chart: dict[str, dict[str, Any]] = {}
    for task, r in d["tasks"].items():
        if task == "tumour":
            continue  # its own section (benchmarks/report_tumour.py)
        seg = "mean_dice" in next(iter(r["inputs"].values()))
        out += [
            f"### {task}",
            "",
            f"Command: `{r.get('command', d['command'])}`",
            "",
            f"Caveat: {r['caveat']}",
            "",
            f"{r['n_train']} clean training items ({r['train']['iterations']} iterations, "
            f"{fmt(r['train']['seconds'], 0)} s); {r['n_test']} held-out test items"
            + (f" with {r['n_test_boxes']} boxes" if "n_test_boxes" in r else "")
            + f"; {len(r['skipped'])} skipped by the luminance gate.",
            "",
        ]
        rows = []
        shift = seg and "intensity_bias" in r["inputs"]["clean"]
        for name, v in r["inputs"].items():
            rec = r["recovery"].get(name)
            if seg:
                cells = [fmt(x, 3) for x in v["dice"].values()] + [fmt(v["mean_dice"], 3)]
            else:
                cells = [
                    fmt(v["mAP_50"], 3),
                    fmt(rec) if name in r["recovery"] else "",
                    fmt(v["mAP_50_95"], 3),
                    fmt(r["recovery_50_95"].get(name)) if name in r["recovery"] else "",
                    fmt(v["AR_50"], 3),
                ]
            if seg:
                cells.append(fmt(rec) if name in r["recovery"] else "")
                if shift:
                    cells.append(" / ".join(f"{b:+.3f}" for b in list(v.get("intensity_bias", {}).values())[1:]))
            rows.append([labels.get(name, name)] + cells)
            if name in r["recovery"]:
                chart.setdefault(name, {})[task] = rec
        if seg:
            header = ["input"] + [f"Dice {c}" for c in r["class_names"]] + ["mean Dice (fg)", "recovery"]
            header += [f"intensity shift {'/'.join(r['class_names'][1:])}"] if shift else []
        else:
            header = ["input", "AP@0.5", "recovery (AP@0.5)", "mAP@0.5:0.95", "recovery (mAP)", "AR@0.5"]
        out += [table(header, rows), ""] + _weak_task(r, fmt)
        if shift:
            out += [
                "Intensity shift: the mean of (input - clean) over each class's pixels (all test images, [0, 1] "
                "units). A task model trained without intensity augmentation reads a shift as a change of tissue, "
                "so here it also scores how close an enhancer's intensity convention lands to the clean images' "
                "(which Algorithm 1 erased), beside how well it restores them.",
                "",
            ]
        boot = r.get("bootstrap") or {}
        names = [k for k in r["recovery"] if k.startswith("dpe") or k == "oracle"]
        metric = "mean Dice" if seg else "AP@0.5"
        sample = f"{r['n_test']} test images, {boot.get('n_boot')} resamples"
        out += versus_best_table({metric: boot.get("versus_best")}, names, ctx, sample)
    if chart:
        tasks = [t for t in d["tasks"] if t != "tumour"]
        chart = {m: {t: v.get(t) for t in tasks} for m, v in chart.items()}
        path = grouped_bars(
            chart,
            labels,
            "recovery (1 = clean, 0 = degraded)",
            "Downstream recovery",
            Path(ctx["figures_dir"]) / "downstream_recovery.png",
        )
        out += [_img(ctx, path, "recovery chart"), ""]
    return out


def augmented_section(plain: dict | None, aug: dict | None, ctx: dict) -> list[str]:
    """The same tasks with task models trained under nnU-Net's intensity augmentation, beside the plain ones.

    Args:
        plain: ``downstream.json`` (task models without intensity augmentation), or None.
        aug: ``downstream_augmented.json``, or None (a "not run yet" line with its command).
        ctx: the report's context (``fmt``, ``table``, ``labels``, ``machine_line``, ``commands``).

    Returns:
        Markdown lines: per task (the tumour task excepted: its own tables) both protocols' scores and recoveries
        side by side and the augmented run's paired difference against the best classical method.
    """
    out = ["### Task models trained with intensity augmentation", ""]
    if aug is None:
        return out + [f"Not run yet: `{ctx['commands']['downstream_augmented']}`.", ""]
    fmt, table, labels = ctx["fmt"], ctx["table"], ctx["labels"]
    out += [
        "The task models above train on clean images with flips only, so they learn their training images' exact "
        "intensity convention and noise level. Here the same tasks are rerun with task models trained under "
        "nnU-Net's default intensity augmentations (noise, blur, brightness, contrast, gamma on the z-scored image; "
        "`dpe_monai/evaluators/augmentation.py`, the published schedule, not tuned here), as practical segmenters "
        "and detectors are trained. Same test items, degradations and enhancers; both protocols are reported and "
        "neither replaces the other.",
        "",
        f"Machine: {ctx['machine_line'](aug)}",
        "",
    ]
    for task, r in aug["tasks"].items():
        if task == "tumour":
            continue  # its own tables (benchmarks/report_tumour.py), after these
        p = ((plain or {}).get("tasks") or {}).get(task)
        key = "mean_dice" if "mean_dice" in r["inputs"]["clean"] else "mAP_50"
        metric = "mean Dice" if key == "mean_dice" else "AP@0.5"
        out += [
            f"#### {task} (augmented task models)",
            "",
            f"Command: `{r.get('command', aug['command'])}`",
            "",
            f"{r['n_train']} clean training items ({r['train']['iterations']} iterations, augmentation "
            f"{r['train'].get('augmentation', 'none')}, {fmt(r['train']['seconds'], 0)} s); {r['n_test']} held-out "
            "test items" + (f" with {r['n_test_boxes']} boxes" if "n_test_boxes" in r else "") + ".",
            "",
        ]
        rows = []
        for name, v in r["inputs"].items():
            pv = (p or {}).get("inputs", {}).get(name)
            rows.append(
                [
                    labels.get(name, name),
                    fmt(pv[key], 3) if pv else "n/a",
                    fmt(p["recovery"][name]) if p and name in p["recovery"] else "",
                    fmt(v[key], 3),
                    fmt(r["recovery"][name]) if name in r["recovery"] else "",
                ]
            )
        header = ["input", f"{metric} (plain)", "recovery (plain)", f"{metric} (augmented)", "recovery (augmented)"]
        out += [table(header, rows), ""] + _weak_task(r, fmt)
        boot = r.get("bootstrap") or {}
        names = [k for k in r["recovery"] if k.startswith("dpe") or k == "oracle"]
        sample = f"{r['n_test']} test images, {boot.get('n_boot')} resamples"
        out += versus_best_table({f"{metric}, augmented": boot.get("versus_best")}, names, ctx, sample)
    return out
