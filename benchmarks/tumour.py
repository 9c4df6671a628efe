"""Tumour tasks on real masks (the 4 ``pyradiomics`` patients), cross-validated over two folds.

Folds (``--tumour_split``, :func:`~dpe_monai.evaluators.datasets.tumour_datalist`): ``slab`` (default) holds out
the lower (fold 0) or upper (fold 1) half of every patient's tumour slices; ``patient`` holds out whole patients
(:data:`~dpe_monai.evaluators.datasets.TUMOUR_FOLDS`), where one training patient per modality is too few for the
task models to generalise. Per fold:

1. the training slices (clean) train a MONAI U-Net (tumour segmentation) and a MONAI RetinaNet (tumour
   boxes from the masks);
2. the shipped enhancer is fine-tuned on the training slices with the bundle's ``configs/task_driven.json``
   (frozen U-Net, ``--task_modes``, e.g. GradProm), as a user would run it;
3. the held-out tumour slices are degraded and scored for every input (degraded, classical methods, DPE,
   the task-driven DPE of that fold, clean): Dice, mAP@0.5, and PSNR / SSIM / DeltaE against the clean slice.

Two degradations: Algorithm 1 (``paper``, without the luminance gate, which would skip the dark MR slices) and the
realistic modes (MR: bias field + Rician noise, CT: low-dose Poisson-Gaussian). Records of both folds are pooled
(24 tumour slices of 4 patients); intervals are bootstrap percentiles over slices. Used by
``python -m benchmarks.downstream --tasks tumour``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from benchmarks.common import BUNDLE, CLASSICAL_METHODS, network_enhancer, parse_network

logger = logging.getLogger("benchmarks.tumour")

SETTINGS = {
    "paper": "Algorithm 1 (paper mode, noise before, no luminance gate)",
    "realistic": "MR: mri_bias_rician, CT: lowdose_ct",
}
CAVEATS = {
    "slab": "Real tumour masks, but only 4 patients (2 brain post-contrast MR, 2 chest CT) and 24 tumour slices in "
    "all. Each fold holds out one half (slab) of every patient's tumour slices; the task models and the task-driven "
    "fine-tune see the other half and the tumour-free slices, so the test slices are unseen but their patients and "
    "neighbouring slices are not (whole-patient folds leave one training patient per modality, and the task models "
    "then score Dice 0 even on clean slices: --tumour_split patient). The shipped enhancer was trained on the "
    "collection's training split, which holds brain1 and lung1. The task-driven model is scored with the very "
    "U-Net it was fine-tuned against.",
    "patient": "Real tumour masks, but only 4 patients (2 brain post-contrast MR, 2 chest CT) and 24 tumour slices "
    "in all (fold 0 tests brain1 + lung1, fold 1 brain2 + lung2). Task models and the task-driven fine-tune of "
    "each fold see only the other fold's patients: one per modality, too few to generalise. The shipped enhancer "
    "was trained on the collection's training split, which holds brain1 and lung1.",
}


def fine_tune(fold: int, mode: str, args: argparse.Namespace) -> Path:
    """Run the bundle's ``task_driven.json`` for one fold (resumable); returns its EMA checkpoint. A finished or
    partial run is reused only when it was fine-tuned against the frozen U-Net the config builds now
    (:func:`match_task_segmenter`)."""
    from monai.bundle import run

    root = Path(args.work_dir).resolve() / "tumour" / args.tumour_split  # the bundle reads the datalist from elsewhere
    out = root / f"{mode}_fold{fold}"
    final = out / "models" / "model.pt"
    config = BUNDLE / "configs" / "task_driven.json"
    overrides = {
        "bundle_root": str(BUNDLE),
        "test_fold": fold,
        "task_mode": mode,
        "output_dir": str(out),
        "work_dir": str(root / f"data_fold{fold}"),
        "split": args.tumour_split,
        "max_epochs": args.finetune_epochs,
        "epoch_length": args.finetune_epoch_length,
        "segmenter_iterations": args.seg_iterations,
        "seed": args.seed,
    }
    match_task_segmenter(out, task_segmenter_key(config, overrides))
    if final.is_file():
        return final
    run(config_file=str(config), **overrides)
    return final


def task_segmenter_key(config: Path, overrides: dict[str, Any]) -> str:
    """Train (or load) the frozen U-Net exactly as the bundle run ``config`` with ``overrides`` will (its own
    ``task_network`` expression) and return the key of its cache (``task_segmenter.json`` in ``work_dir``)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser(ConfigParser.load_config_file(config))
    parser.update(overrides)
    parser.get_parsed_content("task_network")
    return str(json.loads((Path(overrides["work_dir"]) / "task_segmenter.json").read_text())["key"])


def match_task_segmenter(out: Path, key: str) -> None:
    """Keep the fine-tune folder ``out`` (finished or resumable) only when it was trained against the frozen U-Net
    whose cache key is ``key``; otherwise (a retrained U-Net, or a folder from before this stamp) delete it, so the
    fine-tune starts over. Leaves ``out`` stamped with ``key``."""
    import shutil

    stamp = out / "task_segmenter.key"
    if out.exists() and (not stamp.is_file() or stamp.read_text().strip() != key):
        logger.warning("%s was fine-tuned against another task U-Net; starting it over", out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key + "\n")


def fine_tune_curves(out: Path, epoch_length: int) -> dict[str, list[float]]:
    """Per-epoch means of the fine-tune's logged losses, gradient cosine and promoted share (its MLflow store in
    ``out``); empty when the store is gone (a checkpoint kept from an earlier run)."""
    from dpe_monai.tracking import epoch_means, run_histories

    db = out / "mlruns.db"
    if not db.is_file():
        return {}
    runs = run_histories(f"sqlite:///{db.resolve()}")
    return epoch_means(runs[-1]["history"], epoch_length) if runs else {}


def task_augmentation_kwargs(args: argparse.Namespace) -> dict[str, str]:
    """The task models' ``augmentation`` keyword, only when it is not ``"none"`` (so caches trained before the
    option existed keep their keys)."""
    name = getattr(args, "task_augmentation", "none")
    return {} if name == "none" else {"augmentation": name}


def run_tumour(args: argparse.Namespace, methods: dict[str, Any]) -> dict[str, Any]:
    """Both folds, both degradations; returns the task's JSON section."""
    from dpe_monai.evaluators import DetectionEvaluator, load_datalist
    from dpe_monai.evaluators.datasets import TUMOUR_FOLDS, tumour_datalist
    from dpe_monai.evaluators.segmentation import task_segmenter
    from dpe_monai.evaluators.tumour import score_tumour_items, summarise_tumour

    start = time.perf_counter()
    classical = [m for m in methods if m in CLASSICAL_METHODS]  # the paired differences are taken against the best
    records: dict[str, list] = {s: [] for s in SETTINGS}
    folds: dict[str, Any] = {}
    for fold in range(len(TUMOUR_FOLDS)):
        data_dir = Path(args.work_dir) / "tumour" / args.tumour_split / f"data_fold{fold}"
        datalist = tumour_datalist(data_dir, test_fold=fold, split=args.tumour_split)
        train, test = load_datalist(datalist, "training"), load_datalist(datalist, "test")
        augment = task_augmentation_kwargs(args)
        segmenter = task_segmenter(
            train, data_dir / "task_segmenter.pt", 2, args.seed, iterations=args.seg_iterations, **augment
        )
        positives = [it for it in train if it["has_tumour"]]
        det = DetectionEvaluator(
            ["tumour"], seed=args.seed, train_kwargs={"iterations": args.det_iterations, **augment}
        )
        det.fit(positives, cache=data_dir / "task_detector.pt")
        detector, det_log = det.detector, det.train_log
        fold_methods = dict(methods)
        tuned = {}
        for mode in args.task_modes:
            ckpt = fine_tune(fold, mode, args)
            fold_methods[f"dpe_{mode}"], tuned[f"dpe_{mode}"] = network_enhancer(
                parse_network([BUNDLE / "configs" / "task_driven.json"]), ckpt, args.precision
            )
            tuned[f"dpe_{mode}"]["training"] = fine_tune_curves(ckpt.parent.parent, args.finetune_epoch_length)
        folds[str(fold)] = {
            "split": args.tumour_split,
            "test_patients": sorted({it["patient"] for it in test}),
            "n_test_slices": len(test),
            "n_train_slices": len(train),
            "n_train_tumour_slices": len(positives),
            "segmenter_train": json.loads((data_dir / "task_segmenter.json").read_text()).get("log", {}),
            "detector_train": det_log,
            "task_driven": tuned,
        }
        for setting in SETTINGS:
            items = [dict(it) for it in test]
            use = dict(fold_methods)
            if setting == "realistic":
                use.pop("oracle", None)  # the realistic modes have no invertible intensity map
                for it in items:
                    it["degradation_mode"] = "mri_bias_rician" if it["modality"] == "MR" else "lowdose_ct"
            logger.info("tumour fold %d, %s: %d slices x %d inputs", fold, setting, len(items), len(use) + 2)
            recs = score_tumour_items(
                items, use, segmenter, detector, args.seed, "paper", fold, brightness_threshold=None
            )
            records[setting].extend(recs)
            folds[str(fold)][setting] = summarise_tumour(recs, args.n_boot, args.n_boot_map, args.seed, classical)
    pooled = {
        s: summarise_tumour(r, args.n_boot, args.n_boot_map, args.seed, classical) for s, r in records.items() if r
    }
    return {
        "settings": SETTINGS,
        "pooled": pooled,
        "folds": folds,
        "per_slice": {s: [_slim(r) for r in recs] for s, recs in records.items()},
        "seconds": time.perf_counter() - start,
        "split": args.tumour_split,
        "caveat": CAVEATS[args.tumour_split],
        "protocol": {
            "segmentation": f"MONAI UNet (16-128 channels), DiceCE, {args.seg_iterations} iterations on the clean "
            "training slices (batches of 8, 6 with tumour); tumour Dice per slice",
            "detection": f"MONAI RetinaNet, {args.det_iterations} iterations on the training tumour slices; "
            "COCO AP@0.5 over the pooled slices",
            "task_driven": f"configs/task_driven.json, {args.finetune_epochs} x {args.finetune_epoch_length} "
            f"iterations, modes {list(args.task_modes)}",
            "intervals": f"95 % percentile bootstrap over slices, {args.n_boot} resamples ({args.n_boot_map} for mAP), "
            "paired across inputs",
            "task_model_augmentation": getattr(args, "task_augmentation", "none"),
        },
    }


def _slim(rec: dict[str, Any]) -> dict[str, Any]:
    """A record without tensors (for the JSON)."""
    return {k: v for k, v in rec.items() if k not in ("detections", "target")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The tumour task's options (added to ``benchmarks.downstream``'s parser)."""
    p.add_argument(
        "--tumour_split",
        choices=["slab", "patient"],
        default="slab",
        help="hold out each patient's lower/upper tumour slab (slab) or whole patients (patient)",
    )
    p.add_argument(
        "--task_modes",
        nargs="*",
        default=["gradprom", "sum"],
        help="task-driven fine-tunes to run (none: no flag values)",
    )
    p.add_argument("--finetune_epochs", type=int, default=8)
    p.add_argument("--finetune_epoch_length", type=int, default=40)
    p.add_argument("--n_boot", type=int, default=1000)
    p.add_argument("--n_boot_map", type=int, default=200)
