"""Write ``benchmarks/RESULTS.md`` and its charts from ``benchmarks/results/*.json`` (never typed by hand)::

    python -m benchmarks.report

Every number in the report is read from the JSON files written by ``benchmarks.quality``, ``benchmarks.ablation``,
``benchmarks.speed`` and ``benchmarks.downstream``; a missing file gives a "not run" note with its command.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import FIGURES, LABELS, REPO, RESULTS
from benchmarks.report_downstream import (
    augmented_section,
    downstream_section,
    is_weak_task,
    paired_verdict,
    small_test_set,
)
from benchmarks.report_quality import passthrough_section, quality_section
from benchmarks.report_sections import ablation_section, speed_section
from benchmarks.report_tumour import task_floor_section, tumour_section, tumour_verdict
from dpe_monai.evaluators.verdict import LOWER_IS_BETTER as LOWER
from dpe_monai.evaluators.verdict import column_mean as group_mean
from dpe_monai.evaluators.verdict import is_missing as is_nan
from dpe_monai.markdown import markdown_table as table

COMMANDS = {
    "quality": "python -m benchmarks.quality",
    "quality_after": "python -m benchmarks.quality --noise_order after --output benchmarks/results/quality_after.json",
    "quality_nogate": "python -m benchmarks.quality --no_gate --output benchmarks/results/quality_nogate.json",
    "passthrough": "python -m benchmarks.passthrough",
    "ablation": "python -m benchmarks.ablation",
    "basicunet": "python -m benchmarks.ablation --variants basicunet ...",
    "speed": "python -m benchmarks.speed",
    "downstream": "python -m benchmarks.downstream",
    "downstream_augmented": "python -m benchmarks.downstream --task_augmentation nnunet --work_dir "
    "outputs/benchmarks/downstream_augmented --output benchmarks/results/downstream_augmented.json",
    "task_floor": "python -m benchmarks.task_floor",
}


def load_results(results_dir: Path) -> dict[str, Any]:
    """The JSON files present in ``results_dir`` by benchmark name."""
    out = {}
    for name in COMMANDS:
        path = results_dir / f"{name}.json"
        if path.is_file():
            out[name] = json.loads(path.read_text())
    return out


def ci_sized(name: str, data: dict[str, Any]) -> bool:
    """True when a JSON comes from a tiny (CI) configuration rather than a full run."""
    if name in ("quality", "quality_after", "quality_nogate"):
        return data.get("limit_per_group") is not None or "random" in data["protocol"]["feature_distance"]
    if name in ("ablation", "basicunet"):
        return data["budget"]["images_per_variant"] < 1000 or data.get("limit_per_group") is not None
    if name == "speed":
        return 256 not in data["settings"]["sizes"]
    if name in ("downstream", "downstream_augmented"):
        s = data["settings"]
        return s.get("limit_test") is not None or min(s["seg_iterations"], s["det_iterations"]) < 100
    return False


def fmt(value: Any, digits: int = 2) -> str:
    """A number for a table cell (``-`` for missing / NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}"
    return str(value)


def machine_line(data: dict[str, Any]) -> str:
    """One line describing the machine and software of a result file."""
    m = data.get("machine", {})
    cpu = m.get("cpu", "?")
    if m.get("cpu_id"):  # recorded since 2026-12-04 (family / model / stepping and caches)
        caches = " ".join(f"{k} {v}" for k, v in (m.get("cpu_caches") or {}).items() if k in ("L2", "L3"))
        cpu = f"{cpu} ({m['cpu_id']}{'; ' + caches if caches else ''})"
    return (
        f"{cpu}, {m.get('logical_cpus', '?')} logical CPUs, {m.get('torch_threads', '?')} torch "
        f"threads, native bf16: {m.get('native_bf16')}, GPU: {m.get('cuda') or 'none'}; torch {m.get('torch')}, "
        f"MONAI {m.get('monai')}; commit {m.get('git_commit') or '?'}; {m.get('date', '?')}"
    )


def shipped_sha() -> str:
    """The first 12 hex digits of the shipped checkpoint's SHA-256 (as the benchmarks record it)."""
    from benchmarks.common import BUNDLE, sha256

    return sha256(BUNDLE / "models" / "model.pt")[:12]


def stale_results(res: dict[str, Any]) -> dict[str, str]:
    """Result files (and downstream tasks) whose ``dpe`` method ran another checkpoint than the shipped one, or
    another bundle version (a release may change only the network's options, e.g. the NLM strength): label ->
    what they scored."""
    from benchmarks.common import bundle_version

    current, version, out = shipped_sha(), bundle_version(), {}
    for name, data in res.items():
        entries = [(name, data.get("methods"))]
        entries += [(f"{name}/{t}", r.get("methods")) for t, r in (data.get("tasks") or {}).items()]
        for label, methods in entries:
            dpe = (methods or {}).get("dpe") or {}
            sha, scored = dpe.get("checkpoint_sha256"), dpe.get("bundle_version")
            if sha and (not current.startswith(sha[:12]) or (scored and scored != version)):
                out[label] = f"bundle {scored or '?'}, checkpoint sha256 {sha[:12]}"
    return out


def build_report(results_dir: Path, figures_dir: Path, output: Path) -> str:
    """Render the Markdown report (and its charts) and return it."""
    res = load_results(results_dir)
    rel = Path(os.path.relpath(figures_dir, output.parent))
    ctx = {
        "fmt": fmt,
        "table": table,
        "machine_line": machine_line,
        "labels": LABELS,
        "figures_dir": figures_dir,
        "figures_rel": rel,
        "output_dir": output.parent,
        "commands": COMMANDS,
    }
    parts = [
        "# Benchmark results",
        "",
        f"_Generated by `python -m benchmarks.report` from `{os.path.relpath(results_dir, output.parent)}/*.json` on "
        f"{datetime.date.today().isoformat()}. Do not edit by hand: rerun the benchmark commands (see "
        "`benchmarks/README.md`) and then the report._",
        "",
    ]
    small = [n for n, d in res.items() if ci_sized(n, d)]
    if small:
        parts += [
            f"> **Warning:** {', '.join(small)} come from tiny CI-sized configurations. Those numbers only show "
            "that the scripts run; they say nothing about the methods.",
            "",
        ]
    stale = stale_results(res)
    if stale:
        from benchmarks.common import bundle_version

        parts += [
            "> **Stale:** "
            + "; ".join(f"{name} scored DPE (shipped) as {what}" for name, what in stale.items())
            + f". The shipped bundle is {bundle_version()}, `models/model.pt` sha256 {shipped_sha()}: those tables"
            " describe an earlier model until their commands are rerun (`python -m benchmarks.rerun`).",
            "",
        ]
    parts += quality_section(res.get("quality"), ctx, "quality", "a")
    parts += quality_section(res.get("quality_after"), ctx, "quality_after", "b")
    parts += passthrough_section(res.get("passthrough"), ctx)
    if res.get("quality_nogate"):
        parts += quality_section(res.get("quality_nogate"), ctx, "quality_nogate", "d")
    parts += ablation_section(res.get("ablation"), res.get("basicunet"), ctx)
    parts += speed_section(res.get("speed"), ctx)
    parts += downstream_section(res.get("downstream"), ctx)
    parts += tumour_section((res.get("downstream") or {}).get("tasks", {}).get("tumour"), ctx)
    parts += task_floor_section(res.get("task_floor"), ctx)
    parts += augmented_section(res.get("downstream"), res.get("downstream_augmented"), ctx)
    aug_tumour = (res.get("downstream_augmented") or {}).get("tasks", {}).get("tumour")
    parts += tumour_section(aug_tumour, ctx, "#### tumour with augmented task models")
    parts += verdict_section(res, ctx)
    text = "\n".join(parts).rstrip() + "\n"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    return text


def verdict_section(res: dict, ctx: dict) -> list[str]:
    """Where DPE wins and where it loses, computed from the JSON files."""
    out = ["## 5. Where DPE wins and where it loses", "", "_Computed from the numbers above._", ""]
    fmt, labels = ctx["fmt"], ctx["labels"]
    for key in ("quality", "quality_after", "quality_nogate"):
        out += _quality_verdict(res.get(key), key, ctx)
    d = res.get("downstream")
    if d:
        out += tumour_verdict(d["tasks"].get("tumour"), ctx)
    aug = res.get("downstream_augmented")
    if aug:
        out += tumour_verdict(aug["tasks"].get("tumour"), ctx, " (augmented task models)")
    for suffix, run in (("", d), (" (augmented task models)", res.get("downstream_augmented"))):
        for task, r in (run or {}).get("tasks", {}).items():
            if task == "tumour":
                continue
            rec = {m: v for m, v in r["recovery"].items() if not is_nan(v) and m != "oracle"}  # the ceiling: unranked
            if "dpe" not in rec:
                continue
            order = sorted(rec, key=rec.get, reverse=True)
            best = order[0] if order[0] != "dpe" else (order[1] if len(order) > 1 else "dpe")
            verdict = "**DPE wins**" if order[0] == "dpe" else f"DPE ranks {order.index('dpe') + 1} of {len(order)}"
            word = "next" if order[0] == "dpe" else "best"
            out.append(
                f"- downstream {task}{suffix}: {verdict}, recovery {fmt(rec['dpe'])}; {word} "
                f"{labels.get(best, best)} {fmt(rec[best])}"
                + (" (task model flagged weak in section 4: not evidence either way)" if is_weak_task(r) else "")
                + (f" ({r['n_test_boxes']} test boxes: close rankings are within noise)" if small_test_set(r) else "")
                + _paired(r, ctx)
                + "."
            )
    s = res.get("speed")
    if s:
        for size, paper in s["paper_cpu_seconds"].items():
            rows = {v: per.get(size, {}).get("seconds") for v, per in s["latency"]["variants"].items()}
            rows = {k: v for k, v in rows.items() if not is_nan(v)}
            if rows:
                fast = min(rows, key=rows.get)
                word = "faster" if rows[fast] < paper else "slower"
                out.append(
                    f"- speed {size}^2: fastest path {fast} {fmt(rows[fast], 3)} s, {word} than the paper's "
                    f"4-core CPU ({paper} s) on {s['machine'].get('torch_threads')} threads."
                )
    if len(out) == 4:
        out.append("No results yet.")
    return out + [""]


def _paired(r: dict, ctx: dict) -> str:
    """``; DPE minus the best classical method: d [low, high] (tie)`` from the task's paired bootstrap, if any."""
    vs = (r.get("bootstrap") or {}).get("versus_best") or {}
    d = vs.get("difference", {}).get("dpe")
    word = paired_verdict(d)
    if word is None:
        return ""
    word = "a tie within the test set's noise" if word == "tie" else word
    best = ctx["labels"].get(vs["best"], vs["best"])
    return f"; DPE minus {best}: {ctx['fmt'](d['value'])} [{ctx['fmt'](d['low'])}, {ctx['fmt'](d['high'])}], {word}"


def _quality_verdict(q: dict | None, key: str, ctx: dict) -> list[str]:
    """DPE's rank per metric and column among the runnable methods (the oracle ceiling is not ranked)."""
    fmt, labels, out = ctx["fmt"], ctx["labels"], []
    if not q or "dpe" not in q["summary"]:
        return out
    summary = q["summary"]
    order_name = {"quality_after": "noise after", "quality_nogate": "noise before, no gate"}.get(key, "noise before")
    for metric in ("psnr", "ssim", "delta_e", "feature_distance"):
        for col in [*q["groups"], "average", "pooled"]:
            vals = {m: group_mean(summary, m, col, metric) for m in summary if m != "oracle"}
            if is_nan(vals.get("dpe")):
                continue
            ok = {m: v for m, v in vals.items() if not is_nan(v)}
            order = sorted(ok, key=ok.get, reverse=not LOWER[metric])
            rank, best = order.index("dpe") + 1, order[0]
            if rank == 1:
                runner = order[1] if len(order) > 1 else None
                tail = f" (next: {labels.get(runner, runner)} {fmt(ok[runner], 3)})" if runner else ""
                out.append(f"- quality ({order_name}), {col}, {metric}: **DPE wins** with {fmt(ok['dpe'], 3)}{tail}.")
            else:
                out.append(
                    f"- quality ({order_name}), {col}, {metric}: DPE loses, rank {rank} of {len(order)} with "
                    f"{fmt(ok['dpe'], 3)}; best {labels.get(best, best)} {fmt(ok[best], 3)}."
                )
    return out


def main(argv: list[str] | None = None) -> str:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--figures", default=str(FIGURES))
    p.add_argument("--output", default=str(REPO / "benchmarks" / "RESULTS.md"))
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    text = build_report(Path(args.results), Path(args.figures), Path(args.output))
    print(f"wrote {args.output} ({len(text.splitlines())} lines)")
    return text


if __name__ == "__main__":
    main()
