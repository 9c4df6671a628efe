"""The main job on embedded defaults (``make demo``): packaged data, shipped checkpoint, SQLite MLflow.

1. build (or reuse) the packaged collection;
2. degrade its test split with the simulator (fixed seed; dark images the simulator skips are left out), written
   as files in each item's own format and bit depth;
3. enhance those files with the bundle's ``inference.json`` (the shipped ``models/model.pt``);
4. score the degraded images, the strongest simple pipelines (CLAHE and the non-local-means + stretch family), DPE
   and the oracle ceiling against the clean images (PSNR, SSIM, CIEDE2000 DeltaE) per modality group, and say
   whether DPE beats the best simple method and how much of the gap to the oracle it closes;
5. write the enhanced images, a side-by-side grid and a metrics table, and log everything to MLflow.

Every file is seen through the intensity contract (:mod:`dpe_monai.contract`), as the benchmarks see it: an 8-bit
file through 0..255, a 16-bit scan through its own percentile window. A scan is degraded inside its clean window
and the enhanced file is read through the window the enhancer used (the degraded file's), so DPE is scored on the
values a viewer shows with the output's "DPE enhancement window" preset, not on the dark raw counts it keeps in
the scan's own units.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from dpe_monai.locate import bundle_dir

__all__ = ["main", "run_demo"]

BUNDLE = bundle_dir()
#: the simple pipelines DPE must beat: CLAHE (the familiar one) and the strongest ones of the benchmarks
CLASSICAL = ("clahe", "auto_levels_nlm", "stretch_nlm", "nlm_stretch")
METHODS = ("degraded", *CLASSICAL, "dpe", "oracle")
LABELS = {
    "clahe": "CLAHE",
    "auto_levels_nlm": "auto-levels + NLM",
    "stretch_nlm": "stretch + NLM",
    "nlm_stretch": "NLM + stretch",
    "dpe": "DPE",
    "oracle": "oracle (unreachable)",
}


def _window(image) -> tuple[float, float]:
    """The contract's window of a file, in its units (what the CLI and the bundle window it with)."""
    from dpe_monai.inference.files import native_window

    lo, hi, _ = native_window(image)
    return lo, hi


def _unit(values: np.ndarray, window: tuple[float, float]) -> torch.Tensor:
    """``(C, H, W)`` values through ``window`` into [0, 1]."""
    from dpe_monai.contract import to_unit

    return torch.from_numpy(to_unit(values, *window))


def degrade_split(items: list[dict], out_dir: Path, seed: int) -> list[dict]:
    """Write a degraded copy of each item (same format and bit depth); returns the items that were degraded.

    The clean image is windowed by the contract, degraded in [0, 1] by the evaluation protocol's seeded rule
    (:func:`dpe_monai.evaluators.common.degrade`) and written back through the same window.
    """
    from dpe_monai.evaluators.common import degrade, item_id
    from dpe_monai.io import read_image, write_image

    kept = []
    for item in items:
        clean = read_image(item["image"])
        lo, hi = _window(clean)
        lq, params = degrade(_unit(clean.array, (lo, hi)), seed, item_id(item))
        if not params["applied"]:
            continue
        target = out_dir / item["modality_group"] / Path(item["image"]).name
        write_image(clean, lo + lq.numpy().astype(np.float64) * (hi - lo), [target])
        kept.append({**item, "degraded": str(target), "lq_params": params})
    return kept


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x if x.shape[0] == 3 else x[:1].expand(3, *x.shape[1:])


def _views(item: dict) -> dict[str, torch.Tensor]:
    """An item's images in [0, 1], RGB ``(3, H, W)``, as the protocol scores them.

    ``clean`` and ``degraded`` through the clean file's window (the degraded row is the simulator's output as the
    benchmarks score it); ``input``: the degraded file through its own window, what the enhancer and the simple
    pipelines take; ``dpe``: the enhanced file through that same window (its DICOM "DPE enhancement window" preset).
    """
    from dpe_monai.io import read_image

    clean, lq_file = read_image(item["image"]), read_image(item["degraded"])
    window, lq_window = _window(clean), _window(lq_file)
    return {
        "clean": _rgb(_unit(clean.array, window)),
        "degraded": _rgb(_unit(lq_file.array, window)),
        "input": _rgb(_unit(lq_file.array, lq_window)),
        "dpe": _rgb(_unit(read_image(item["enhanced"]).array, lq_window)),
    }


def score(items: list[dict]) -> dict:
    """Score the degraded image, the simple pipelines, DPE and the oracle (given the true factors) against the clean
    images (:func:`_views`); each item needs ``"image"``, ``"degraded"``, ``"enhanced"`` and ``"lq_params"``.

    Returns:
        ``{"per_image": [...], "summary": ...}`` as :func:`dpe_monai.evaluators.quality.summarise` makes them.
    """
    from dpe_monai.baselines import ClassicalEnhancer, OracleEnhancer
    from dpe_monai.evaluators.common import item_id
    from dpe_monai.evaluators.quality import QualityScorer, summarise

    scorer, oracle = QualityScorer(feature_backbone=None), OracleEnhancer()
    simple = {name: ClassicalEnhancer(name) for name in CLASSICAL}
    rows = []
    for item in items:
        views = _views(item)
        preds = {"degraded": views["degraded"]}
        preds.update({name: fn(views["input"][None])[0] for name, fn in simple.items()})
        preds["dpe"] = views["dpe"]
        preds["oracle"] = oracle(views["degraded"][None], item["lq_params"])[0]
        metrics = {m: scorer(pred.float().clamp(0, 1), views["clean"]) for m, pred in preds.items()}
        rows.append(
            {"id": item_id(item), "group": item["modality_group"], "enhanced": item["enhanced"], "metrics": metrics}
        )
    return {"per_image": rows, "summary": summarise(rows, METHODS)}


def enhanced_path(item: dict, enhanced_dir: Path) -> Path:
    """Where the bundle's inference writes the enhanced copy of ``item["degraded"]``."""
    name = Path(item["degraded"]).stem + "_dpe" + Path(item["image"]).suffix
    return enhanced_dir / item["modality_group"] / name


def save_grid(items: list[dict], path: Path, simple: str, per_group: int = 2) -> Path:
    """PNG grid: rows = samples (``per_group`` per modality group), columns = degraded | ``simple`` | DPE | clean."""
    from PIL import Image

    from dpe_monai.baselines import ClassicalEnhancer
    from dpe_monai.handlers import make_grid

    method, rows, seen = ClassicalEnhancer(simple), [], defaultdict(int)
    for item in items:
        if seen[item["modality_group"]] >= per_group:
            continue
        seen[item["modality_group"]] += 1
        v = _views(item)
        imgs = [v["degraded"], method(v["input"][None])[0], v["dpe"], v["clean"]]
        rows.append([torch.nn.functional.interpolate(i[None], size=(192, 192), mode="nearest")[0] for i in imgs])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_grid(rows)).save(path)
    return path


def _flat_metrics(summary: dict) -> dict[str, float]:
    """``{group}_{method}_{metric}`` -> mean (groups, ``pooled`` and ``average``), finite values only."""
    flat = {}
    for method, entry in summary.items():
        for group, stats in entry.items():
            for metric, value in stats.items():
                value = value["mean"] if isinstance(value, dict) else value
                if value is not None and np.isfinite(value):
                    flat[f"{group}_{method}_{metric}"] = float(value)
    return flat


def _run_record(seconds: dict[str, float]) -> dict:
    """Where and how long the demo ran: machine and versions (:func:`~dpe_monai.machine.machine_summary`), the
    bundle version and seconds per step."""
    from dpe_monai.machine import machine_summary

    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    seconds = {k: round(v, 1) for k, v in seconds.items()}
    return {**machine_summary(), "bundle_version": meta.get("version"), "seconds": seconds}


def run_demo(output: Path, dataset_dir: Path, checkpoint: Path, seed: int = 0, limit: int | None = None) -> dict:
    """Run the whole demo; returns ``{"summary", "paths", "run"}`` (``run``: machine and seconds per step)."""
    import monai
    from monai.bundle import ConfigWorkflow

    from dpe_monai.data import ensure_collection
    from dpe_monai.evaluators.common import save_json
    from dpe_monai.evaluators.quality import quality_table
    from dpe_monai.evaluators.verdict import best_of, verdict_table
    from dpe_monai.tracking import default_tracking_uri, log_run

    output.mkdir(parents=True, exist_ok=True)
    seconds, start = {}, time.perf_counter()
    datalist = ensure_collection(dataset_dir)
    seconds["collection"] = time.perf_counter() - start
    items = monai.data.load_decathlon_datalist(datalist, False, "test")[:limit]
    degraded_dir, enhanced_dir = output / "degraded", output / "enhanced"
    kept = degrade_split(items, degraded_dir, seed)
    seconds["degrade"] = time.perf_counter() - start - sum(seconds.values())
    print(f"degraded {len(kept)} of {len(items)} test images (the simulator skips {len(items) - len(kept)} dark ones)")
    tracking_uri = default_tracking_uri(output)
    wf = ConfigWorkflow(
        config_file=str(BUNDLE / "configs" / "inference.json"),
        workflow_type="infer",
        bundle_root=str(BUNDLE),
        dataset_dir=str(degraded_dir),
        output_dir=str(enhanced_dir),
        checkpoint=str(checkpoint),
        overwrite=True,
        tracking_uri=tracking_uri,
        run_name="demo_inference",
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    seconds["enhance"] = time.perf_counter() - start - sum(seconds.values())
    kept = [{**item, "enhanced": str(enhanced_path(item, enhanced_dir))} for item in kept]
    scores = score(kept)
    seconds["score"] = time.perf_counter() - start - sum(seconds.values())
    table = quality_table(scores["summary"], METHODS, LABELS)
    verdict = verdict_table(scores["summary"], CLASSICAL, labels=LABELS)
    simple = best_of(scores["summary"], CLASSICAL, "pooled", "psnr") or CLASSICAL[0]
    paths = {
        "enhanced": enhanced_dir,
        "grid": save_grid(kept, output / "grid.png", simple),
        "metrics": output / "metrics.md",
        "metrics_json": output / "metrics.json",
        "mlflow": output / "mlruns.db",
    }
    protocol = (
        f"Test split of the packaged collection, degraded by the simulator (paper mode, seed {seed}, seeded per item "
        "by SeededLowQualityd's rule) inside the clean file's intensity-contract window (8-bit: 0..255; otherwise its "
        "0.5-99.5 % percentile window) and written in each file's format and bit depth. Metrics on [0, 1] by "
        "dpe_monai.evaluators.quality (PSNR, SSIM, DeltaE = CIEDE2000 on sRGB, grey replicated; SSIM skipped below "
        "11 px): the clean and degraded images through the clean file's window; the simple pipelines take the "
        "degraded file through its own window, as DPE does, and DPE's file is read through that window (its DICOM "
        "'DPE enhancement window' preset). The oracle knows the simulator's true factors and noise: a ceiling no "
        "method can reach."
    )
    grid_note = f"`grid.png`: degraded | {LABELS[simple]} (the best simple method, pooled PSNR) | DPE | clean."
    run = _run_record(seconds)
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in run["seconds"].items())
    machine = (
        f"Run: bundle {run['bundle_version']} on {run['cpu']} ({run['logical_cpus']} logical CPUs, "
        f"{run['torch_threads']} torch threads, GPU: {run['cuda'] or 'none'}; torch {run['torch']}, MONAI "
        f"{run['monai']}); {steps} (before the grid and MLflow logging)."
    )
    paths["metrics"].write_text(
        f"# Demo metrics\n\n{protocol}\n\nCheckpoint: `{checkpoint}`\n\n{machine}\n\n{table}\n\n"
        f"## DPE against the best simple method\n\n{verdict}\n\n{grid_note}\n"
    )
    save_json(paths["metrics_json"], {"protocol": protocol, "run": run, **scores})
    log_run(
        tracking_uri,
        "dpe_enhancement",
        "demo",
        params={"seed": seed, "checkpoint": str(checkpoint), "n_images": len(kept), "dataset_dir": str(dataset_dir)},
        metrics=_flat_metrics(scores["summary"]),
        artifacts=[paths["grid"], paths["metrics"], paths["metrics_json"]],
    )
    print(f"{table}\n\nDPE against the best simple method:\n{verdict}")
    return {"summary": scores["summary"], "paths": paths, "run": run}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dpe-monai demo", description=__doc__.splitlines()[0])
    from dpe_monai.data.ensure import default_dataset_dir

    ap.add_argument("--output", type=Path, default=Path("outputs/demo"))
    ap.add_argument("--dataset-dir", type=Path, default=default_dataset_dir())
    ap.add_argument("--checkpoint", type=Path, default=BUNDLE / "models" / "model.pt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N test items (quick runs)")
    args = ap.parse_args(argv)
    if not args.checkpoint.is_file():
        print(f"error: {args.checkpoint}: model weights not found")
        return 1
    result = run_demo(args.output, args.dataset_dir, args.checkpoint, args.seed, args.limit)
    p = result["paths"]
    print(f"\nenhanced images: {p['enhanced']}\ngrid:            {p['grid']}\nmetrics:         {p['metrics']}")
    print(
        f"MLflow store:    {p['mlflow']}  (open with: mlflow ui --backend-store-uri sqlite:///{p['mlflow'].resolve()})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
