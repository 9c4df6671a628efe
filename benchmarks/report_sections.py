"""Sections of ``benchmarks/RESULTS.md``: each turns one results JSON into Markdown (and charts)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from benchmarks.plots import latency_chart
from dpe_monai.evaluators.verdict import is_missing as is_nan

PAPER_TABLE_II = {  # PSNR / DeltaE per group (radiology, dermatology, microscopy, average)
    "LIME": {
        "radiology": (19.14, 9.34),
        "dermatology": (19.32, 10.32),
        "microscopy": (17.07, 7.83),
        "average": (18.51, 9.16),
    },
    "DUAL": {
        "radiology": (21.69, 6.94),
        "dermatology": (16.70, 13.26),
        "microscopy": (25.21, 3.05),
        "average": (21.20, 7.75),
    },
    "DPE": {
        "radiology": (29.04, 3.21),
        "dermatology": (23.11, 6.36),
        "microscopy": (30.69, 1.11),
        "average": (27.61, 3.56),
    },
}
METRIC_NAMES = {
    "psnr": "PSNR (dB, higher is better)",
    "ssim": "SSIM (higher is better)",
    "delta_e": "DeltaE CIEDE2000 (lower is better)",
    "feature_distance": "feature distance (lower is better)",
}
ABLATION_FLAGS = {
    "base": "----",
    "residual": "R---",
    "gates": "RG--",
    "feature_loss": "RGF-",
    "adversarial": "RGFA",
    "global_local": "RG-- + global",
}


def _best(values: dict[str, Any], lower: bool) -> str | None:
    ok = {k: v for k, v in values.items() if not is_nan(v)}
    if not ok:
        return None
    return min(ok, key=ok.get) if lower else max(ok, key=ok.get)


def _img(ctx: dict, path: Path, alt: str) -> str:
    return f"![{alt}]({os.path.relpath(path, ctx['output_dir'])})"


# --------------------------------------------------------------------------------------------------- ablation
def ablation_section(a: dict | None, b: dict | None, ctx: dict) -> list[str]:
    """Table IV analogue with the budget stated and the trend compared with the paper."""
    out = ["## 2. Ablation (Table IV analogue)", ""]
    if a is None:
        out += [f"Not run yet: `{ctx['commands']['ablation']}`.", ""]
    else:
        fmt, table = ctx["fmt"], ctx["table"]
        bud = a["budget"]
        if a.get("complete") is False:
            out += [f"**Incomplete run** ({len(a['variants'])} variants done): rerun its command to finish it.", ""]
        out += [
            f"Command: `{a['command']}`  ",
            f"Machine: {ctx['machine_line'](a)}  ",
            f"Budget per variant: {bud['max_epochs']} epochs x {bud['epoch_length']} iterations x batch "
            f"{bud['batch_size']} at {bud['patch_size']}^2 = **{bud['images_per_variant']:,} training images**; "
            f"the paper: {bud['paper_images']}. Same data, seed and trainer for all; scored as in section 1 "
            f"({a['n_scored']} test images).",
            "",
            "Flags: R residual blocks, G gated skips, F regularised feature loss, A adversarial loss. "
            "Train wall s is wall-clock time on a shared machine (other benchmarks ran beside it), not a speed figure.",
            "",
        ]
        groups = list(a["groups"])
        rows = []
        order = list(ABLATION_FLAGS)  # the paper's order, whatever order a resumed run finished them in
        for name, v in sorted(a["variants"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99):
            s = v["summary"]
            cells = [
                f"{fmt(s.get(g, {}).get('psnr', {}).get('mean'))} / {fmt(s.get(g, {}).get('delta_e', {}).get('mean'))}"
                for g in groups
            ]
            paper = a["paper_table_iv_average"].get(name)
            rows.append(
                [name, ABLATION_FLAGS.get(name, "")]
                + cells
                + [
                    f"**{fmt(s['average'].get('psnr'))} / {fmt(s['average'].get('delta_e'))}**",
                    f"{paper['psnr']:.2f} / {paper['delta_e']:.2f}" if paper else "-",
                    fmt(v.get("train_seconds"), 0)
                    + (f" (after iteration {v['resumed_from_iteration']})" if v.get("resumed_from_iteration") else ""),
                    f"{v.get('parameters', 0):,}",
                ]
            )
        header = (
            ["variant", "flags"]
            + [f"{g} PSNR / DeltaE" for g in groups]
            + ["average PSNR / DeltaE", "paper average", "train wall s", "parameters"]
        )
        out += [table(header, rows), ""]
        inp = next(iter(a["variants"].values())).get("input_summary", {}).get("average", {})
        if inp:
            out += [
                f"For reference, the degraded input itself scores {fmt(inp.get('psnr'))} dB / DeltaE "
                f"{fmt(inp.get('delta_e'))} on average.",
                "",
            ]
        out += _trend(a) + [""]
    if b is not None:
        v = b["variants"].get("basicunet", {})
        bud = b["budget"]
        out += [
            f"BasicUNet baseline training (`{b['command']}`): {bud['images_per_variant']:,} training images "
            f"({bud['max_epochs']} x {bud['epoch_length']} x {bud['batch_size']} at {bud['patch_size']}^2), "
            f"{v.get('parameters', 0):,} parameters, {ctx['fmt'](v.get('train_seconds'), 0)} s.",
            "",
        ]
    return out


def _trend(a: dict) -> list[str]:
    names = [n for n in ("base", "residual", "gates", "feature_loss", "adversarial") if n in a["variants"]]
    lines, agree, agree_de, steps = (
        ["Trend (change of the average from the previous row; paper in brackets):", ""],
        0,
        0,
        0,
    )
    paper = a["paper_table_iv_average"]
    for prev, cur in zip(names, names[1:]):
        ours = {m: a["variants"][cur]["summary"]["average"].get(m) for m in ("psnr", "delta_e")}
        base = {m: a["variants"][prev]["summary"]["average"].get(m) for m in ("psnr", "delta_e")}
        if cur not in paper or prev not in paper or any(is_nan(x) for x in (*ours.values(), *base.values())):
            continue
        dp, dd = ours["psnr"] - base["psnr"], ours["delta_e"] - base["delta_e"]
        pp, pd = paper[cur]["psnr"] - paper[prev]["psnr"], paper[cur]["delta_e"] - paper[prev]["delta_e"]
        steps += 1
        agree += (dp > 0) == (pp > 0)
        agree_de += (dd < 0) == (pd < 0)
        lines.append(f"- {prev} -> {cur}: PSNR {dp:+.2f} dB ({pp:+.2f}), DeltaE {dd:+.2f} ({pd:+.2f})")
    if steps:
        lines += [
            "",
            f"At this budget {agree} of {steps} steps move PSNR and {agree_de} of {steps} move DeltaE in the "
            "paper's direction (the paper improves both at every step).",
        ]
    return lines


# --------------------------------------------------------------------------------------------------- speed
def _peak_for(row_precision: str, peaks: dict) -> float:
    return peaks.get("conv3x3_bf16" if row_precision == "bf16" else "conv3x3_fp32", math.nan)


def speed_section(s: dict | None, ctx: dict) -> list[str]:
    """Table III analogue: latency per path and size, ratio to the paper, GFLOP/s against the measured peak."""
    out = ["## 3. Speed (Table III analogue)", ""]
    if s is None:
        return out + [f"Not run yet: `{ctx['commands']['speed']}`.", ""]
    fmt, table = ctx["fmt"], ctx["table"]
    peaks, lat = s["peak_gflops"], s["latency"]
    sizes = [int(k) for k in lat["gflop_per_image"]]
    out += [
        f"Command: `{s['command']}`  ",
        f"Machine: {ctx['machine_line'](s)}; device {s['device']}  ",
        f"Network: {s['network']['network']}, {s['network']['parameters']:,} parameters; weights: "
        f"{s['network']['weights']}.  ",
        "Measured peak GFLOP/s: "
        + ", ".join(
            f"{k} {v:.0f}" + (f" (at {peaks[k + '_size']}^2)" if k + "_size" in peaks else "")
            for k, v in peaks.items()
            if not k.endswith("_size")
        )
        + ".  ",
        "GFLOP per image: " + ", ".join(f"{k}^2 {v:.1f}" for k, v in lat["gflop_per_image"].items()) + ".",
        "",
        "Median seconds per image (batch 1, 3 channels); in brackets the paper's 4-core CPU time divided by ours "
        "(above 1: faster than the paper's CPU). Paper: "
        + ", ".join(f"{k}^2 {v} s" for k, v in s["paper_cpu_seconds"].items())
        + ".",
        "",
    ]
    rows, rows2 = [], []
    for variant, per in lat["variants"].items():
        cells, cells2 = [], []
        for size in sizes:
            r = per.get(str(size), {})
            if "error" in r:
                cells.append("failed")
                cells2.append(r["error"][:60])
                continue
            ratio = f" (x{r['speedup_vs_paper_cpu']:.2f})" if "speedup_vs_paper_cpu" in r else ""
            cells.append(f"{fmt(r.get('seconds'), 3)}{ratio}")
            prec = r.get("precision", "bf16" if "bf16" in variant else "fp32")
            if r.get("gflops_per_s") is None:  # the scan path (non-local means): its FLOPs are not counted
                cells2.append(f"not counted, diff {r['max_abs_diff_fp32']:.1e}")
                continue
            pct = 100 * r["gflops_per_s"] / _peak_for(prec, peaks)
            cells2.append(f"{r['gflops_per_s']:.0f} ({pct:.0f} %), diff {r['max_abs_diff_fp32']:.1e}")
        rows.append([variant] + cells)
        rows2.append([variant] + cells2)
    out += [
        table(["path"] + [f"{z}^2" for z in sizes], rows),
        "",
        "Achieved GFLOP/s (percent of the measured 3x3-convolution peak of the same precision) and max |output - "
        "fp32 eager|:",
        "",
        table(["path"] + [f"{z}^2" for z in sizes], rows2),
        "",
    ]
    for size in sizes:
        times = {v: per.get(str(size), {}).get("seconds") for v, per in lat["variants"].items()}
        times = {v: t for v, t in times.items() if not is_nan(t) and v != "enhancer_scan"}
        if "enhancer" in times and len(times) > 1:
            fastest = min(times, key=times.get)
            out.append(
                f"- {size}^2: fastest path {fastest} ({fmt(times[fastest], 3)} s); the Enhancer path takes "
                f"{fmt(times['enhancer'], 3)} s ({times['enhancer'] / times[fastest]:.2f}x the fastest)."
            )
    out.append("")
    enh = next((r for r in lat["variants"].get("enhancer", {}).values() if "precision" in r), None)
    if enh:
        out += [
            f"`Enhancer(precision='auto')` chose **{enh['precision']}** (check: {enh['precision_check']}); "
            f"images above {s['settings']['tile_size']}^2 go through tiled sliding-window inference.",
            "",
        ]
    train = s.get("training", [])
    if train:
        out += [
            "Training throughput at the bundle's training step with train.json's defaults (the shipped recipe; "
            "the discriminator and feature columns say which losses ran), random data, no loading:",
            "",
            table(
                [
                    "precision",
                    "amp dtype",
                    "batch",
                    "patch",
                    "discriminator",
                    "feature loss",
                    "images/s",
                    "s/iteration",
                ],
                [
                    [
                        t["precision"],
                        t["amp_dtype"],
                        str(t["batch_size"]),
                        f"{t['patch_size']}^2",
                        "on" if t.get("discriminator") else "off",
                        "on" if t.get("lambda_rfl") else ("off" if "lambda_rfl" in t else "?"),
                        fmt(t["images_per_s"]),
                        fmt(t["seconds_per_iteration"], 3),
                    ]
                    for t in train
                ],
            ),
            "",
        ]
    mem = s.get("tiled_memory")
    if mem and "error" not in mem:
        out += [
            f"Tiled inference of one {mem['size']}^2 RGB image ({mem['image_mb']:.0f} MB as float32), tiles "
            f"{mem['tile_size']}^2, {mem['precision']}: {mem['seconds']:.1f} s, peak resident memory "
            f"{mem['peak_rss_mb']:.0f} MB (process before the call: {mem['rss_before_mb']:.0f} MB)"
            + (f", CUDA peak {mem['cuda_peak_allocated_mb']:.0f} MB" if "cuda_peak_allocated_mb" in mem else "")
            + ".",
            "",
        ]
    series = {v: [per.get(str(z), {}).get("seconds") for z in sizes] for v, per in lat["variants"].items()}
    paper = [s["paper_cpu_seconds"].get(str(z), math.nan) for z in sizes]
    path = latency_chart(
        sizes,
        series,
        paper,
        "DPE inference latency on this CPU vs the paper",
        Path(ctx["figures_dir"]) / "speed_latency.png",
    )
    return out + [_img(ctx, path, "latency chart"), ""]
