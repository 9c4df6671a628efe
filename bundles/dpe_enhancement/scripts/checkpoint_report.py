"""Score the shipped checkpoint on the test split beside the input and CLAHE, and export its MLflow training log.

Writes into the bundle's ``docs/``: ``test_metrics.json`` / ``test_metrics.md`` (per modality group and overall,
from ``configs/evaluate.json`` run once per method), ``training_metrics.csv`` and ``training_runs.json`` (every
metric of the MLflow runs whose name starts with ``--run-prefix``), and refreshes the generated block of
``docs/README.md``. Usage (from the repository root)::

    .venv/bin/python bundles/dpe_enhancement/scripts/checkpoint_report.py \
        --dataset-dir ~/.cache/dpe-monai/collection --train-db /path/to/train/output/mlruns.db
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
from pathlib import Path

from dpe_monai.evaluators.common import save_json
from dpe_monai.evaluators.quality import quality_table
from dpe_monai.markdown import markdown_table

BUNDLE = Path(__file__).resolve().parents[1]
DOCS = BUNDLE / "docs"
METHODS = ("identity", "clahe", "dpe")
LABELS = {"identity": "input (degraded)", "clahe": "CLAHE", "dpe": "DPE (shipped)"}
START, END = "<!-- generated:test-metrics:start -->", "<!-- generated:test-metrics:end -->"
TSTART, TEND = "<!-- generated:training:start -->", "<!-- generated:training:end -->"
PAPER_IMAGES = 100 * 15181  # 100 epochs of 15,181 training pairs (paper, Sec. II-D)


def evaluate(method: str, dataset_dir: Path, out_root: Path, checkpoint: Path) -> dict:
    """Run ``configs/evaluate.json`` (the quality engine's protocol) for one method; returns its summary entry."""
    from monai.bundle import ConfigWorkflow

    out = out_root / f"evaluate_{method}"
    wf = ConfigWorkflow(
        config_file=str(BUNDLE / "configs" / "evaluate.json"),
        workflow_type="eval",
        bundle_root=str(BUNDLE),
        dataset_dir=str(dataset_dir),
        output_dir=str(out),
        method=method,
        checkpoint=str(checkpoint),
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    return json.loads((out / "quality.json").read_text())["summary"][method]


def export_training(dbs: Path | list[Path], prefix: str) -> tuple[list[dict], list[dict]]:
    """All metric points and params of the MLflow runs named ``prefix*`` in one or more SQLite stores (the stages
    of a checkpoint's training, in order)."""
    from dpe_monai.tracking import run_histories

    rows, runs = [], []
    for db in [dbs] if isinstance(dbs, Path) else dbs:
        for run in run_histories(f"sqlite:///{db.resolve()}", prefix):
            name = run["run_name"]
            runs.append({"run_name": name, "params": run["params"], "final_metrics": run["final_metrics"]})
            for key, points in run["history"].items():
                rows += [{"run": name, "metric": key, "step": step, "value": value} for step, value in points]
    return rows, runs


def training_markdown(rows: list[dict], runs: list[dict]) -> str:
    """Per-run table (iterations, epochs, losses switched on, wall time) and the budget against the paper's."""

    def final(m: dict, key: str, fmt: str) -> str:
        value = m.get(key)
        return fmt.format(value) if value is not None and math.isfinite(value) else "-"

    table = []
    for run in sorted(runs, key=lambda r: r["run_name"]):
        name, p, m = run["run_name"], run["params"], run["final_metrics"]
        steps = [r["step"] for r in rows if r["run"] == name and r["metric"] == "g_loss"]
        epochs = [r["step"] for r in rows if r["run"] == name and r["metric"] == "val_psnr"]
        d_loss = m.get("d_loss")
        d_on = "on" if d_loss is not None and math.isfinite(d_loss) else "off"  # absent when off
        table.append(
            [
                name,
                f"{min(steps)}-{max(steps)}",
                max(epochs) if epochs else "-",
                p.get("batch_size"),
                p.get("patch_size"),
                p.get("lambda_rfl"),
                d_on,
                f"{final(m, 'val_psnr', '{:.2f}')} / {final(m, 'val_delta_e', '{:.2f}')}",
            ]
        )
    header = ["MLflow run", "iterations logged", "last epoch", "batch", "patch", "lambda_rfl", "discriminator"]
    lines = [markdown_table([*header, "final val PSNR / DeltaE"], table)]
    iterations = sum(  # stages run one after the other; each run counts its own iterations
        max(x["step"] for x in rows if x["run"] == name and x["metric"] == "g_loss")
        for name in dict.fromkeys(r["run_name"] for r in runs)
    )
    last = runs[-1]
    total_images = iterations * int(last["params"].get("batch_size", 8))
    lines += [
        "",
        f"The runs logged {iterations} iterations x batch {last['params'].get('batch_size')} = {total_images:,} "
        f"training crops of {last['params'].get('patch_size')} px, {100 * total_images / PAPER_IMAGES:.1f} % of the "
        f"paper's budget (100 epochs x 15,181 images = {PAPER_IMAGES:,}). A run killed mid-epoch logged a few "
        "iterations that its last epoch checkpoint, and so the shipped model, does not hold.",
    ]
    return "\n".join(lines)


def markdown(summary: dict, checkpoint: Path) -> str:
    """The quality table of the three methods and, per group, where DPE wins and loses."""
    lines = [
        f"Test split (whole held-out subjects), images the simulator degrades (n per group below); "
        f"machine: {platform.processor() or platform.machine()}, {platform.system()}; checkpoint `{checkpoint.name}`.",
        "",
        quality_table(summary, METHODS, LABELS),
    ]
    groups = sorted(g for g in summary["dpe"] if g not in ("average", "pooled"))
    verdict = []
    for g in [*groups, "pooled", "average"]:
        d, c, i = (
            {k: v["mean"] if isinstance(v, dict) else v for k, v in summary[m][g].items()}
            for m in ("dpe", "clahe", "identity")
        )
        wins = [
            f"{'beats' if d['psnr'] > o['psnr'] else 'loses to'} {name} on PSNR and "
            f"{'beats' if d['delta_e'] < o['delta_e'] else 'loses to'} it on DeltaE"
            for name, o in (("the input", i), ("CLAHE", c))
        ]
        label = {"pooled": "all images (pooled)", "average": "mean of group means"}.get(g, g)
        verdict.append(f"- {label}: DPE " + "; ".join(wins) + ".")
    return "\n".join(lines + ["", "Where DPE wins and loses:", ""] + verdict)


def _replace_block(path: Path, start: str, end: str, body: str) -> None:
    """Replace the text between the ``start`` and ``end`` markers of ``path`` (appending them if absent)."""
    text = path.read_text() if path.exists() else ""
    if start not in text:
        text += f"\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    path.write_text(head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1])


POINTER = (
    "The shipped checkpoint's test-split numbers are in `benchmarks/RESULTS.md` section 1 (both noise orders, every "
    "classical method, the paper-faithful DPENet and the oracle ceiling), produced by `python -m benchmarks.quality` "
    "with the same quality engine as `configs/evaluate.json`."
)


def _export(args: argparse.Namespace) -> None:
    """Write the MLflow training log to ``docs/training_metrics.csv`` / ``training_runs.json`` and the README block."""
    rows, runs = export_training(args.train_db, args.run_prefix)
    with open(DOCS / "training_metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["run", "metric", "step", "value"])
        writer.writeheader()
        writer.writerows(rows)
    save_json(DOCS / "training_runs.json", sorted(runs, key=lambda r: r["run_name"]), indent=4)
    _replace_block(DOCS / "README.md", TSTART, TEND, training_markdown(rows, runs))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset-dir", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, default=BUNDLE / "models" / "model.pt")
    ap.add_argument(
        "--train-db", type=Path, nargs="+", default=None, help="MLflow SQLite stores of the training stages, in order"
    )
    ap.add_argument("--run-prefix", default="shipped_")
    ap.add_argument("--work-dir", type=Path, default=BUNDLE / "outputs" / "checkpoint_report")
    ap.add_argument(
        "--training-only",
        action="store_true",
        help="export the training log only; the test block then points to benchmarks/RESULTS.md (same engine)",
    )
    args = ap.parse_args(argv)

    if args.training_only:
        if args.train_db is not None:
            _export(args)
        _replace_block(DOCS / "README.md", START, END, POINTER)
        for stale in ("test_metrics.json", "test_metrics.md"):
            (DOCS / stale).unlink(missing_ok=True)
        return 0
    summary = {m: evaluate(m, args.dataset_dir, args.work_dir, args.checkpoint) for m in METHODS}
    protocol = (
        "configs/evaluate.json, i.e. dpe_monai.evaluators.quality: test split of the packaged collection, items "
        "passing the simulator's luminance gate; IntensityWindowd(mode='auto') to [0, 1], grey replicated to RGB, "
        "centre crop <= 1024 px, SeededLowQualityd (paper mode, seed 0, seeded per item id); PSNR (max 1), SSIM "
        "(11x11 Gaussian), CIEDE2000 on sRGB; DPE through EnhancerInferer (tiled, precision auto), CLAHE = skimage "
        "equalize_adapthist(clip_limit=0.01)."
    )
    save_json(DOCS / "test_metrics.json", {"protocol": protocol, "summary": summary}, indent=4)
    table = markdown(summary, args.checkpoint)
    (DOCS / "test_metrics.md").write_text(f"# Test-split metrics\n\n{protocol}\n\n{table}\n")
    if args.train_db is not None:
        _export(args)
    _replace_block(DOCS / "README.md", START, END, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
