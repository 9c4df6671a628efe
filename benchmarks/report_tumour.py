"""Report section of the tumour tasks (``downstream.json`` -> ``tasks.tumour``, written by :mod:`benchmarks.tumour`)."""

from __future__ import annotations

import math
from typing import Any

from benchmarks.report_downstream import WEAK_TASK_GAP, ci_text, paired_verdict, versus_best_table

__all__ = ["tumour_section", "tumour_verdict"]

CLASSICAL_EXCLUDED = ("degraded", "clean", "oracle")


def _value(v: dict | None) -> float:
    x = (v or {}).get("value")
    return math.nan if x is None else float(x)


def _best_classical(summary: dict, metric: str) -> tuple[str | None, float]:
    rec = {k: _value(v.get(metric)) for k, v in summary["recovery"].items()}
    rec = {k: v for k, v in rec.items() if not k.startswith("dpe") and k not in CLASSICAL_EXCLUDED and v == v}
    if not rec:
        return None, math.nan
    best = max(rec, key=rec.get)
    return best, rec[best]


def _stale_oracle(r: dict) -> list[str]:
    """A note when the oracle row was scored by another definition of the ceiling than the current one."""
    from dpe_monai.baselines import OracleEnhancer

    recorded = r.get("methods", {}).get("oracle", {}).get("function")
    if recorded is None or OracleEnhancer.definition in recorded:
        return []
    return [
        f"Note: the oracle row was scored by an earlier definition of the ceiling ({recorded}), not the current one "
        f"({OracleEnhancer.definition}); rerun the command above to refresh it.",
        "",
    ]


def tumour_section(r: dict | None, ctx: dict, heading: str = "### tumour") -> list[str]:
    """Pooled tables per degradation (scores, recovery, image quality), then the per-fold recovery, under
    ``heading`` (followed by the fold split)."""
    if not r:
        return []
    fmt, table, labels = ctx["fmt"], ctx["table"], ctx["labels"]
    out = [
        f"{heading} (real masks, cross-validated, {r.get('split', 'patient')} folds)",
        "",
        f"Command: `{r.get('command', '')}`",
        "",
    ]
    out += [f"Caveat: {r['caveat']}", ""]
    out += _stale_oracle(r)
    out += ["Protocol:", ""]
    out += [f"- {k}: {v}" for k, v in r["protocol"].items()] + [""]
    for setting, summary in r["pooled"].items():
        pats = ", ".join(f"{p} {n}" for p, n in summary["patients"].items())
        out += [
            f"**{setting}** ({r['settings'][setting]}): {summary['n_slices']} tumour slices of "
            f"{summary['n_patients']} patients ({pats}), both folds pooled. Brackets: 95 % bootstrap interval.",
            "",
        ]
        rows = []
        for name, v in summary["inputs"].items():
            rec = summary["recovery"].get(name, {})
            rows.append(
                [
                    labels.get(name, name),
                    ci_text(v.get("dice"), fmt),
                    ci_text(rec.get("dice"), fmt, 2) if rec else "",
                    ci_text(v.get("mAP_50"), fmt),
                    ci_text(rec.get("mAP_50"), fmt, 2) if rec else "",
                    fmt(v.get("psnr")),
                    fmt(v.get("ssim"), 3),
                    fmt(v.get("delta_e")),
                ]
            )
        header = ["input", "tumour Dice", "recovery (Dice)", "AP@0.5", "recovery (AP)", "PSNR", "SSIM", "DeltaE"]
        out += [table(header, rows), ""] + _small_gap_lines(summary, fmt) + _versus_best(summary, ctx)
    fold_rows = []
    for fold, f in r["folds"].items():
        for setting in r["settings"]:
            s = f.get(setting)
            if not s:
                continue
            best, best_rec = _best_classical(s, "dice")
            row = [fold, ", ".join(f["test_patients"]), setting, str(s["n_slices"])]
            row += [ci_text(s["recovery"].get(k, {}).get("dice"), fmt, 2) for k in ("dpe", "dpe_gradprom")]
            weak = (
                f" (not evidence: the degradation costs {fmt(_gap(s, 'dice')[0], 3)} Dice)" if _weak(s, "dice") else ""
            )
            row += [f"{labels.get(best, best)} {fmt(best_rec)}{weak}" if best else "n/a"]
            fold_rows.append(row)
    header = ["fold", "test patients", "degradation", "slices", "DPE recovery (Dice)", "GradProm recovery (Dice)",
              "best classical (Dice)"]  # fmt: skip
    out += ["Per fold (each fold's own U-Net, detector and task-driven fine-tune):", "", table(header, fold_rows), ""]
    return out + _fine_tune_lines(r, fmt)


def _gap(summary: dict, metric: str) -> tuple[float, float, float]:
    """``(clean - degraded, clean, degraded)`` of ``metric`` over the pooled slices."""
    clean, degraded = (_value(summary["inputs"].get(k, {}).get(metric)) for k in ("clean", "degraded"))
    return clean - degraded, clean, degraded


def _weak(summary: dict, metric: str) -> bool:
    """Whether the degradation costs the task model less than :data:`WEAK_TASK_GAP` of ``metric`` (or improves it):
    recovery divides by that cost, so it is no evidence for or against a method (False when not recorded)."""
    return _gap(summary, metric)[0] < WEAK_TASK_GAP


def _small_gap_lines(summary: dict, fmt: Any) -> list[str]:
    """A warning per task metric whose degradation costs the task model less than :data:`WEAK_TASK_GAP`: recovery
    divides by that cost, so its values and intervals there say little for or against a method."""
    lines = []
    for metric, name in (("dice", "Dice"), ("mAP_50", "AP@0.5")):
        gap, clean, degraded = _gap(summary, metric)
        if _weak(summary, metric):
            lines.append(
                f"**Warning:** the degradation costs the task model only {fmt(gap, 3)} {name} (clean {fmt(clean, 3)}, "
                f"degraded {fmt(degraded, 3)}; flagged below {WEAK_TASK_GAP}). Recovery divides by that cost, so "
                f"its {name} recoveries and their intervals are not evidence for or against a method."
            )
    return [*lines, ""] if lines else []


def _versus_best(summary: dict, ctx: dict) -> list[str]:
    """Each network's (and the oracle's) recovery minus the best classical method's, per task metric."""
    vs = summary.get("versus_best") or {}
    names = [k for k in summary["recovery"] if k.startswith("dpe") or k == "oracle"]
    sample = f"{summary['n_slices']} slices"
    weak = frozenset(c for c, m in (("Dice", "dice"), ("AP", "mAP_50")) if _weak(summary, m))
    return versus_best_table({"Dice": vs.get("dice"), "AP": vs.get("mAP_50")}, names, ctx, sample, weak)


def _fine_tune_lines(r: dict, fmt: Any) -> list[str]:
    """Each fine-tune's logged curves (per-epoch means): task loss first -> last, gradient cosine, promoted share."""
    lines = []
    for fold, f in r["folds"].items():
        for name, info in f.get("task_driven", {}).items():
            c = info.get("training") or {}
            if not c.get("task_loss"):
                continue
            cos, prom = c.get("cosine") or [math.nan], c.get("promoted") or [math.nan]
            lines.append(
                f"- fold {fold}, {name}: task loss {fmt(c['task_loss'][0], 3)} -> {fmt(c['task_loss'][-1], 3)}"
                + (f" (on the clean crops {fmt(c['task_loss_clean'][-1], 3)})" if c.get("task_loss_clean") else "")
                + ", "
                f"enhancement loss {fmt(c['enhancement_loss'][0], 3)} -> {fmt(c['enhancement_loss'][-1], 3)} "
                f"(epoch means, {len(c['task_loss'])} epochs); gradient cosine {fmt(min(cos), 3)} to "
                f"{fmt(max(cos), 3)}, promoted share {fmt(min(prom), 2)} to {fmt(max(prom), 2)} (per-epoch means)"
            )
    return ["Task-driven fine-tunes as logged (MLflow, per-epoch means):", "", *lines, ""] if lines else []


def tumour_verdict(r: dict | None, ctx: dict, suffix: str = "") -> list[str]:
    """One line per degradation: task-driven vs DPE vs the best classical method, and the PSNR it costs; DPE vs the
    best classical method alone when the run has no task-driven fine-tune. ``suffix`` follows "tumour" in each line.
    """
    if not r:
        return []
    fmt, labels = ctx["fmt"], ctx["labels"]
    out = []
    for setting, s in r["pooled"].items():
        for metric in ("dice", "mAP_50"):
            rec = {k: _value(v.get(metric)) for k, v in s["recovery"].items()}
            best, best_rec = _best_classical(s, metric)
            if "dpe" not in rec:
                continue
            small = _weak(s, metric)
            weak = f" (the degradation costs this task model less than {WEAK_TASK_GAP}: not evidence either way)"
            if "dpe_gradprom" not in rec:
                out.append(
                    f"- tumour{suffix} {metric} ({setting}, {s['n_slices']} slices): recovery DPE {fmt(rec['dpe'])} "
                    f"vs best classical {labels.get(best, best)} {fmt(best_rec)}"
                    + (weak if small else "")
                    + _paired_dpe(s, metric, fmt)
                    + "."
                )
                continue
            tuned, plain = rec["dpe_gradprom"], rec["dpe"]
            wins = tuned > plain and tuned > best_rec
            band = s["recovery"]["dpe_gradprom"].get(metric) or {}
            low = band.get("low")
            within = wins and low is not None and low <= max(plain, best_rec)
            dpsnr = s["inputs"]["dpe_gradprom"]["psnr"] - s["inputs"]["dpe"]["psnr"]
            out.append(
                f"- tumour{suffix} {metric} ({setting}, {s['n_slices']} slices): "
                + (
                    "task-driven ahead, within its bootstrap interval (not a significant win)"
                    if within
                    else ("**task-driven wins**" if wins else "task-driven does not win")
                )
                + f", recovery GradProm {fmt(tuned)} vs DPE {fmt(plain)} vs best classical "
                f"{labels.get(best, best)} {fmt(best_rec)}; PSNR change vs DPE {fmt(dpsnr)} dB"
                + (weak if small else "")
                + _paired_dpe(s, metric, fmt)
                + "."
            )
    return out


def _paired_dpe(summary: dict, metric: str, fmt: Any) -> str:
    """``; DPE minus the best classical: d [low, high], tie`` from the paired bootstrap, if recorded."""
    d = ((summary.get("versus_best") or {}).get(metric) or {}).get("difference", {}).get("dpe")
    word = paired_verdict(d)
    if word is None or _weak(summary, metric):  # no verdict where recovery is not evidence
        return ""
    word = "a tie within the slices' noise" if word == "tie" else word
    return f"; DPE minus best classical {fmt(d['value'])} [{fmt(d['low'])}, {fmt(d['high'])}], {word}"


def task_floor_section(r: dict | None, ctx: dict) -> list[str]:
    """The task-driven fine-tunes' task loss per epoch against the frozen U-Net's loss on the clean crops."""
    if not r:
        return []
    fmt, table = ctx["fmt"], ctx["table"]
    st = r["settings"]
    out = [
        "### Why the task-driven fine-tune has nothing to gain here: the task loss is at its floor",
        "",
        f"Command: `{r['command']}` ({st['config']}, {st['split']} folds, {st['epochs']} x {st['epoch_length']} "
        f"iterations, U-Net of {st['segmenter_iterations']} iterations, seed {st['seed']}). Per epoch (means over its "
        "iterations): the frozen U-Net's DiceCE on the enhanced crops (task loss) and on the clean crops of the same "
        "batch (the floor: no enhancement can do better than the clean image), the gradient cosine between the "
        "enhancement and task losses, and the share of steps where GradProm promoted the task gradient.",
        "",
    ]
    for name, run in r["runs"].items():
        c = run["curves"]
        rows = [
            [str(i + 1)]
            + [fmt(c.get(k, [math.nan] * (i + 1))[i], 3) for k in ("task_loss", "task_loss_clean")]
            + [fmt(run["gap_to_floor"][i], 3)]
            + [fmt(c.get(k, [math.nan] * (i + 1))[i], d) for k, d in (("cosine", 3), ("promoted", 2))]
            for i in range(len(c.get("task_loss", [])))
        ]
        header = ["epoch", "task loss", "floor (clean crops)", "gap", "cosine", "promoted"]
        out += [f"**{name}**", "", table(header, rows), ""]
    return out
