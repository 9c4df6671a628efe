"""Section 1 of ``benchmarks/RESULTS.md``: image quality per noise order, with the oracle ceiling and the gap closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import CLASSICAL_METHODS, REPO
from benchmarks.plots import grouped_bars
from benchmarks.report_sections import METRIC_NAMES, PAPER_TABLE_II, _best, _img
from dpe_monai.evaluators import verdict
from dpe_monai.evaluators.verdict import LOWER_IS_BETTER as LOWER
from dpe_monai.evaluators.verdict import column_mean as group_mean
from dpe_monai.evaluators.verdict import is_missing as is_nan

NOISE_ORDER = {
    "quality": "noise before the exposure drop (the paper's order)",
    "quality_after": "noise after the exposure drop (acquisition order)",
    "quality_nogate": "noise before, every image degraded (no luminance gate: dark MR/CT slices too)",
}


# --------------------------------------------------------------------------------------------------- quality
def quality_section(q: dict | None, ctx: dict, key: str = "quality", title: str = "") -> list[str]:
    """Table II analogue: one table per metric, the ceiling and the gap closed, paper reference, charts, grids."""
    out = [f"## 1{title}. Image quality (Table II analogue){' - ' + NOISE_ORDER.get(key, '') if title else ''}", ""]
    if q is None:
        return out + [f"Not run yet: `{ctx['commands'][key]}`.", ""]
    fmt, table, labels = ctx["fmt"], ctx["table"], ctx["labels"]
    groups = list(q["groups"])
    cols = groups + ["average", "pooled"]
    subjects = q.get("subjects", {})

    def _n(g: str) -> str:
        n, k = q["groups"][g], subjects.get(g)
        return f"{n} image{'s' * (n != 1)}" + (f" from {k} subject{'s' * (k != 1)}" if k is not None else "")

    out += [
        f"Command: `{q['command']}`  ",
        f"Machine: {ctx['machine_line'](q)}  ",
        f"Data: `{q['split']}` split of `{q['datalist']}`; scored images per group: "
        + ", ".join(f"{g} {_n(g)}" for g in groups)
        + f"; {len(q['skipped_by_luminance_gate'])} images skipped by the simulator's luminance gate"
        + (f"; at most {q['per_group']} evenly spaced items per group." if q.get("per_group") else "."),
        "",
        "Protocol:",
        "",
    ]
    out += [f"- {k}: {v}" for k, v in q["protocol"].items()] + [""]
    for name, info in q["methods"].items():
        if info.get("kind") == "network":
            out.append(
                f"- {labels.get(name, name)}: `{info['checkpoint']}` (sha256 {info['checkpoint_sha256']}), "
                f"{info['network']}{_options(info)}, {info['parameters']:,} parameters, inference precision "
                f"{info['precision']}."
            )
    out.append("")
    summary, methods = q["summary"], list(q["summary"])
    for metric, title in METRIC_NAMES.items():
        if not any(metric in summary[m]["average"] for m in methods):
            continue
        best = {c: _best({m: group_mean(summary, m, c, metric) for m in methods}, LOWER[metric]) for c in cols}
        rows = []
        for m in methods:
            cells = []
            for c in cols:
                v = fmt(group_mean(summary, m, c, metric), 3 if metric in ("ssim", "feature_distance") else 2)
                cells.append(f"**{v}**" if best[c] == m else v)
            rows.append([labels.get(m, m)] + cells)
        header = ["method"] + [f"{g} ({_n(g)})" for g in groups] + ["average of groups (n >= 5)", "pooled"]
        out += [f"**{title}** (mean over images; best in bold)", "", table(header, rows), ""]
    out += gap_lines(summary, cols, ctx)
    if key != "quality":
        return out + _seconds(q, ctx)
    out += [
        "Paper, Table II (their data and degradations, not comparable number for number):",
        "",
        table(
            ["method"] + [f"{g} PSNR / DeltaE" for g in ("radiology", "dermatology", "microscopy", "average")],
            [
                [m] + [f"{r[g][0]:.2f} / {r[g][1]:.2f}" for g in ("radiology", "dermatology", "microscopy", "average")]
                for m, r in PAPER_TABLE_II.items()
            ],
        ),
        "",
    ]
    for metric in ("psnr", "delta_e"):
        values = {m: {c: group_mean(summary, m, c, metric) for c in groups + ["average"]} for m in methods}
        path = grouped_bars(
            values,
            labels,
            METRIC_NAMES[metric],
            f"{METRIC_NAMES[metric]} per modality group",
            Path(ctx["figures_dir"]) / f"quality_{metric}.png",
        )
        out += [_img(ctx, path, f"{metric} bar chart"), ""]
    for group, fig in q.get("figures", {}).items():
        path = Path(fig["path"])
        if not path.is_absolute():
            path = REPO / path
        out += [
            f"{group}: `{fig['item']}`",
            "",
            _img(ctx, path, f"{group} grid") if path.is_file() else f"(grid image missing: {fig['path']})",
            "",
        ]
    return out + _seconds(q, ctx)


def _seconds(q: dict, ctx: dict) -> list[str]:
    secs = q["seconds_per_image"]
    return [
        "Seconds per image (mean over the scored images, this machine): "
        + ", ".join(f"{ctx['labels'].get(k, k)} {ctx['fmt'](v, 3)}" for k, v in secs.items()),
        "",
    ]


def gap_closed(summary: dict, col: str, metric: str, method: str = "dpe") -> dict[str, Any] | None:
    """``(method - best classical) / (oracle - best classical)`` for one column, or None without an oracle row."""
    if "oracle" not in summary:
        return None
    g = verdict.gap_closed(summary, col, metric, CLASSICAL_METHODS, method)
    return None if g is None or is_nan(g["oracle"]) else g


def gap_lines(summary: dict, cols: list[str], ctx: dict) -> list[str]:
    """The oracle ceiling and the fraction of the gap between the best classical method and it that DPE closes."""
    if "oracle" not in summary:
        return []
    fmt, labels = ctx["fmt"], ctx["labels"]
    rows = []
    for metric in ("psnr", "delta_e"):
        for col in cols:
            for method in [m for m in ("dpe", "dpe_paper") if m in summary]:
                g = gap_closed(summary, col, metric, method)
                if g is None:
                    continue
                rows.append(
                    [
                        METRIC_NAMES[metric].split(" (")[0],
                        col,
                        labels.get(method, method),
                        f"{labels.get(g['best'], g['best'])} {fmt(g['best_value'])}",
                        fmt(g["value"]),
                        fmt(g["oracle"]),
                        fmt(g["fraction"]),
                    ]
                )
    return [
        "**Ceiling.** The oracle knows each image's true contrast and brightness factors, pivot, noise level and noise "
        "order: it applies non-local means at the true noise level where the noise has that level (on the degraded "
        "image when the noise came after the exposure drop, else after inverting the factors) and inverts the "
        "factors. No method can know these on a real scan, so it is **unreachable** and never ranked. "
        "Gap closed = (model - best classical) / (oracle - best classical); 1 reaches the ceiling, 0 ties the best "
        "classical method, negative loses to it; n/a where the best classical method beats the oracle.",
        "",
        ctx["table"](["metric", "column", "model", "best classical", "model value", "oracle", "gap closed"], rows),
        "",
    ]


def passthrough_section(p: dict | None, ctx: dict) -> list[str]:
    """Do no harm: clean images given as input, PSNR(output, input) on the test split and on real DICOMs."""
    out = ["## 1c. Do no harm: good images pass through", ""]
    if p is None:
        return out + [f"Not run yet: `{ctx['commands']['passthrough']}`.", ""]
    fmt, table, labels = ctx["fmt"], ctx["table"], ctx["labels"]
    out += [
        f"Command: `{p['command']}`  ",
        f"Machine: {ctx['machine_line'](p)}  ",
        f"Clean (never degraded) inputs; PSNR(output, input) in dB, higher = less changed, bar {p['threshold_db']} dB"
        " (an unchanged image counts as 100 dB, so a mean is lifted by the images left exactly as they were; the median"
        " and the count below the bar say how many were changed).",
        "",
    ]
    names = list(p["collection"])
    groups = sorted({g for n in names for g in p["collection"][n]["summary"]["groups"]})
    rows = []
    for n in names:
        s = p["collection"][n]["summary"]
        cells = [_group_cell(s["groups"][g], fmt) for g in groups]
        rows.append([labels.get(n, n)] + cells + [fmt(s["average"]), fmt(s["pooled"])])
    out += [table(["method"] + groups + ["average of groups (n >= 5)", "pooled"], rows), ""]
    files = [d["file"] for d in p["dicoms"][names[0]]] if names else []
    rows = []
    for n in names:
        by = {d["file"]: d for d in p["dicoms"][n]}
        rows.append(
            [labels.get(n, n)]
            + [f"{fmt(by[f]['psnr'])}{'' if by[f]['inside_own_range'] else ' (out of range!)'}" for f in files]
        )
    out += ["Real pydicom-data DICOMs through the CLI's path (the contract in and out):", ""]
    out += [table(["method"] + files, rows), ""]
    out += _grey_set(
        p.get("grey_exports") or {},
        names,
        ctx,
        "8-bit export",
        "8-bit grey exports (the same test scans rounded to 8 bits, as a viewer's PNG export stores them; enhanced"
        " as the CLI treats such a file: the 0..255 window, and the scan route because it is grey):",
    )
    out += _grey_set(
        p.get("source_scale") or {},
        names,
        ctx,
        "slices",
        "8-bit grey scans at their source's own scale (MNI152's T1 from nilearn: black background, brightest tissue"
        " at about 235 of 255; enhanced as the CLI treats such a file; one subject, a check, not a headline):",
    )
    return out


def _group_cell(g: dict, fmt) -> str:
    """``mean (median m, min x, k of n below the bar)``; runs before the median was recorded: ``mean (min x, n=n)``."""
    if "median" not in g:
        return f"{fmt(g['mean'])} (min {fmt(g['min'])}, n={g['n']})"
    return (
        f"{fmt(g['mean'])} (median {fmt(g['median'])}, min {fmt(g['min'])}, {g['below_bar']} of {g['n']} below the bar)"
    )


def _grey_set(res: dict, names: list[str], ctx: dict, suffix: str, caption: str) -> list[str]:
    """A table of one of the passthrough benchmark's grey-file sets (empty when the run did not have it)."""
    if not res:
        return []
    fmt, table, labels = ctx["fmt"], ctx["table"], ctx["labels"]
    rows = []
    for n in names:
        s = res[n]["summary"]
        cells = [_group_cell(v, fmt) for v in s["groups"].values()]
        rows.append([labels.get(n, n)] + cells)
    heads = [f"{g} {suffix}" for g in res[names[0]]["summary"]["groups"]]
    return [caption, "", table(["method"] + heads, rows), ""]


def _options(info: dict) -> str:
    """`` (prefilter='nlm', prefilter_on='relative')``: the variant's non-default options, if recorded."""
    opts = info.get("options") or {}
    chosen = {k: v for k, v in opts.items() if v not in (None, False, "all")}
    return " (" + ", ".join(f"{k}={v!r}" for k, v in chosen.items()) + ")" if chosen else ""
