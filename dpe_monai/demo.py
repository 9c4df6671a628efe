"""The main job on embedded defaults (``make demo``): packaged data, shipped checkpoint, SQLite MLflow.

1. build (or reuse) the packaged collection;
2. degrade its test split with the simulator (fixed seed; dark images the simulator skips are left out), written
   as files in each item's own format and bit depth;
3. enhance those files with the bundle's ``inference.json`` (the shipped ``models/model.pt``);
4. score degraded, CLAHE and DPE against the clean images (PSNR, SSIM, CIEDE2000 DeltaE) per modality group;
5. write the enhanced images, a side-by-side grid and a metrics table, and log everything to MLflow.
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from dpe_monai.locate import bundle_dir

__all__ = ["main", "run_demo"]

BUNDLE = bundle_dir()
METHODS = ("degraded", "clahe", "dpe")


def _unit(image, values=None) -> torch.Tensor:
    """``(C, H, W)`` in [0, 1] through the file's container window (as the enhancer uses)."""
    lo, hi = image.container_range()
    arr = image.array if values is None else values
    return torch.from_numpy(np.clip((arr - lo) / max(hi - lo, 1e-12), 0, 1).astype(np.float32))


def degrade_split(items: list[dict], out_dir: Path, seed: int) -> list[dict]:
    """Write a degraded copy of each item (same format and bit depth); returns the items that were degraded.

    The simulator is seeded per item by the evaluation protocol's rule (:func:`dpe_monai.evaluators.common.degrade`).
    """
    from dpe_monai.evaluators.common import degrade, item_id
    from dpe_monai.io import read_image, write_image

    kept = []
    for item in items:
        clean = read_image(item["image"])
        lq, params = degrade(_unit(clean), seed, item_id(item))
        if not params["applied"]:
            continue
        lo, hi = clean.container_range()
        target = out_dir / item["modality_group"] / Path(item["image"]).name
        write_image(clean, lo + lq.numpy().astype(np.float64) * (hi - lo), [target])
        kept.append({**item, "degraded": str(target), "lq_params": params})
    return kept


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x if x.shape[0] == 3 else x[:1].expand(3, *x.shape[1:])


def score(items: list[dict], enhanced_dir: Path) -> dict:
    """Score degraded, CLAHE and DPE against the clean images with the quality engine.

    Returns:
        ``{"per_image": [...], "summary": ...}`` as :func:`dpe_monai.evaluators.quality.summarise` makes them.
    """
    from dpe_monai.baselines import ClassicalEnhancer
    from dpe_monai.evaluators.common import item_id
    from dpe_monai.evaluators.quality import QualityScorer, summarise
    from dpe_monai.io import read_image

    scorer, clahe = QualityScorer(feature_backbone=None), ClassicalEnhancer("clahe")
    rows = []
    for item in items:
        ref = _rgb(_unit(read_image(item["image"])))
        lq = _rgb(_unit(read_image(item["degraded"])))
        out = (
            enhanced_dir / item["modality_group"] / (Path(item["degraded"]).stem + "_dpe" + Path(item["image"]).suffix)
        )
        preds = {"degraded": lq, "clahe": clahe(lq[None])[0], "dpe": _rgb(_unit(read_image(out)))}
        rows.append(
            {
                "id": item_id(item),
                "group": item["modality_group"],
                "enhanced": str(out),
                "metrics": {m: scorer(pred.float().clamp(0, 1), ref) for m, pred in preds.items()},
            }
        )
    return {"per_image": rows, "summary": summarise(rows, METHODS)}


def save_grid(items: list[dict], scores: dict, path: Path, per_group: int = 2) -> Path:
    """PNG grid: rows = samples (``per_group`` per modality group), columns = degraded | DPE | clean."""
    from PIL import Image

    from dpe_monai.handlers import make_grid
    from dpe_monai.io import read_image

    rows, seen = [], defaultdict(int)
    for item, row in zip(items, scores["per_image"]):
        if seen[item["modality_group"]] >= per_group:
            continue
        seen[item["modality_group"]] += 1
        imgs = [_unit(read_image(p)) for p in (item["degraded"], row["enhanced"], item["image"])]
        imgs = [torch.nn.functional.interpolate(i[None], size=(192, 192), mode="nearest")[0] for i in imgs]
        rows.append(imgs)
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


def run_demo(output: Path, dataset_dir: Path, checkpoint: Path, seed: int = 0, limit: int | None = None) -> dict:
    """Run the whole demo; returns ``{"summary", "paths"}``."""
    import monai
    from monai.bundle import ConfigWorkflow

    from dpe_monai.data import ensure_collection
    from dpe_monai.evaluators.common import save_json
    from dpe_monai.evaluators.quality import quality_table
    from dpe_monai.tracking import default_tracking_uri, log_run

    output.mkdir(parents=True, exist_ok=True)
    datalist = ensure_collection(dataset_dir)
    items = monai.data.load_decathlon_datalist(datalist, False, "test")[:limit]
    degraded_dir, enhanced_dir = output / "degraded", output / "enhanced"
    kept = degrade_split(items, degraded_dir, seed)
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
    scores = score(kept, enhanced_dir)
    table = quality_table(scores["summary"], METHODS)
    paths = {
        "enhanced": enhanced_dir,
        "grid": save_grid(kept, scores, output / "grid.png"),
        "metrics": output / "metrics.md",
        "metrics_json": output / "metrics.json",
        "mlflow": output / "mlruns.db",
    }
    protocol = (
        f"Test split of the packaged collection, degraded by the simulator (paper mode, seed {seed}, seeded per item "
        "by SeededLowQualityd's rule), written in each file's format and bit depth; metrics on [0, 1] through the "
        "format's range (0..255 / 0..65535) by dpe_monai.evaluators.quality (PSNR, SSIM, DeltaE = CIEDE2000 on sRGB, "
        "grey replicated; SSIM skipped below 11 px)."
    )
    paths["metrics"].write_text(f"# Demo metrics\n\n{protocol}\n\nCheckpoint: `{checkpoint}`\n\n{table}\n")
    save_json(paths["metrics_json"], {"protocol": protocol, **scores})
    log_run(
        tracking_uri,
        "dpe_enhancement",
        "demo",
        params={"seed": seed, "checkpoint": str(checkpoint), "n_images": len(kept), "dataset_dir": str(dataset_dir)},
        metrics=_flat_metrics(scores["summary"]),
        artifacts=[paths["grid"], paths["metrics"], paths["metrics_json"]],
    )
    print(table)
    return {"summary": scores["summary"], "paths": paths}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dpe-monai demo", description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=Path("outputs/demo"))
    default_data = os.environ.get("DPE_MONAI_DATA", str(Path.home() / ".cache" / "dpe-monai" / "collection"))
    ap.add_argument("--dataset-dir", type=Path, default=Path(default_data))
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
