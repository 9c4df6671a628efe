"""Downstream benchmark: do the enhancement methods help a segmenter and detectors trained on clean images?

Tasks (all task models are trained on clean images only, from regions that never appear in their test sets):

* ``segmentation``: MONAI U-Net, MNI152 axial slices, CSF/GM/WM/background; test = a held-out axial slab
  (:func:`~dpe_monai.evaluators.datasets.mni_slab_datalist`). Dice per class.
* ``nuclei``: MONAI RetinaNet (2-D), stardist DSB2018 fluorescence crops, boxes from the instance masks; test = a
  held-out vertical strip. These dark fluorescence images fail the paper's luminance gate (they would never be
  degraded), so here the simulator runs without the gate (``brightness_threshold=None``). mAP@0.5 and 0.5:0.95.
* ``lesions``: the same RetinaNet on MNI slices with **synthetic** pasted lesions (exact boxes), slab split as above.
* ``tumour``: real tumour masks of the 4 ``pyradiomics`` patients (brain MR, chest CT), two folds of whole patients,
  U-Net Dice and RetinaNet mAP, the task-driven (GradProm) fine-tune of each fold beside DPE and the classical
  methods, Algorithm 1 and the realistic degradations, bootstrap intervals (:mod:`benchmarks.tumour`).

Every task scores the degraded input, each enhancement method applied to it, and the clean input, and reports
recovery = (score_enh - score_LQ) / (score_clean - score_LQ). Full run::

    python -m benchmarks.downstream

writes ``benchmarks/results/downstream.json``; ``--tasks tumour --update`` reruns one task and keeps the others (each
task records its own command). Caveat recorded in the JSON: the MNI volume is part of the DPE
training split, so DPE has seen the clean MNI slices (as targets) during its training; the nuclei image is in the
DPE test split.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    ALL_METHODS,
    CLASSICAL_METHODS,
    RESULTS,
    WORK,
    build_methods,
    json_arg,
    machine_info,
    parse_cli,
    write_json,
)
from benchmarks.tumour import add_arguments, run_tumour, task_augmentation_kwargs
from dpe_monai.evaluators.augmentation import TASK_AUGMENTATIONS

logger = logging.getLogger("benchmarks.downstream")

TASKS = ("segmentation", "nuclei", "lesions", "tumour")
#: what runs without ``--tasks``: the tumour task (task models per fold plus task-driven fine-tunes, ~1.5 h on 2 CPU
#: cores) is opt-in.
DEFAULT_TASKS = ("segmentation", "nuclei", "lesions")
CAVEATS = {
    "segmentation": "MNI152 is one subject; the U-Net trains on axial slices outside the held-out slab (gap of "
    "{gap} slices each side). The whole MNI volume is in the DPE enhancement training split, so the enhancer has seen "
    "these clean slices as training targets (in-distribution for DPE and BasicUNet); the scan-path refiner (bundle "
    ">= 0.8.0), the only learned part that acts on these grey slices, was trained without MNI152.",
    "nuclei": "One real 512^2 fluorescence image (DSB2018 via stardist); the detector trains on crops left of the "
    "held-out strip. Degraded without the paper's luminance gate (the image is darker than B_T=100 and would never "
    "be degraded otherwise), so the degraded inputs are darker than anything the enhancers were trained on.",
    "lesions": "Lesions are synthetic (blurred dark ellipses pasted into the white matter of MNI T1 slices, like "
    "T1-hypointense lesions; exact boxes). Same slab split "
    "and the same DPE-training caveat as the segmentation task.",
}


def _limit(items: list[dict], n: int | None) -> list[dict]:
    if n is None or len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def run_task(task: str, args: argparse.Namespace, methods: dict) -> dict[str, Any]:
    """Build the task's datalist, train its model on clean training items, evaluate all inputs."""
    from dpe_monai.evaluators import DetectionEvaluator, SegmentationEvaluator, load_datalist
    from dpe_monai.evaluators import datasets as ds

    root = Path(args.work_dir) / task
    start = time.perf_counter()
    augment = task_augmentation_kwargs(args)
    if task == "segmentation":
        datalist = ds.mni_slab_datalist(root, test_slab=tuple(args.test_slab), gap=args.gap, step=args.train_step)
        ev: Any = SegmentationEvaluator(
            4,
            ds.TISSUE_CLASSES,
            seed=args.seed,
            train_kwargs={"iterations": args.seg_iterations, "batch_size": 8, **augment},
        )
    elif task == "nuclei":
        datalist = ds.stardist_crops_datalist(root)
        ev = DetectionEvaluator(
            ["nucleus"],
            seed=args.seed,
            degrade_kwargs={"brightness_threshold": None},
            train_kwargs={"iterations": args.det_iterations, "batch_size": 4, **augment},
        )
    elif task == "lesions":
        datalist = ds.mni_lesion_datalist(
            root, test_slab=tuple(args.test_slab), gap=args.gap, seed=args.seed, step=args.train_step
        )
        ev = DetectionEvaluator(
            ["lesion"], seed=args.seed, train_kwargs={"iterations": args.det_iterations, "batch_size": 4, **augment}
        )
    else:
        raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
    train_items = load_datalist(datalist, "training")
    test_items = _limit(load_datalist(datalist, "test"), args.limit_test)
    logger.info("%s: training on %d clean items", task, len(train_items))
    ev.fit(train_items, cache=root / "task_model.pt")  # retrained only when its items or settings change
    logger.info("%s: evaluating %d held-out items x %d inputs", task, len(test_items), len(methods) + 2)
    result = ev.evaluate(test_items, methods, baselines=[m for m in methods if m in CLASSICAL_METHODS])
    result.update(
        n_train=len(train_items),
        seconds=time.perf_counter() - start,
        caveat=CAVEATS[task].format(gap=args.gap),
        datalist_split=json_arg(Path(datalist).read_text()).get("split"),
    )
    key = "mean_dice" if task == "segmentation" else "mAP_50"
    logger.info("%s: %s", task, {k: round(v[key], 4) for k, v in result["inputs"].items()})
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every task; writes the JSON and returns it."""
    if args.threads:
        torch.set_num_threads(args.threads)
    methods, info = build_methods(
        args.methods,
        args.dpe_checkpoint,
        json_arg(args.dpe_network),
        args.basicunet_checkpoint,
        json_arg(args.basicunet_network),
        args.precision,
    )
    command = "python -m benchmarks.downstream " + shlex.join(args.argv)
    tasks = {}
    if args.update and Path(args.output).is_file():
        previous = json_arg(Path(args.output).read_text())
        for name, result in previous.get("tasks", {}).items():
            result.setdefault("command", previous.get("command"))
            result.setdefault("methods", previous.get("methods"))
            tasks[name] = result
    for task in args.tasks:
        tasks[task] = run_tumour(args, methods) if task == "tumour" else run_task(task, args, methods)
        tasks[task]["command"] = command
        tasks[task]["methods"] = info
    payload = {
        "benchmark": "downstream",
        "command": command,
        "machine": machine_info(),
        "methods": info,
        "settings": {k: v for k, v in vars(args).items() if k != "argv"},
        "protocol": {
            "degradation": f"RandLowQuality(mode={args.mode!r}) seeded per item by (seed={args.seed}, item id)",
            "task_models": "trained on clean images only; never on the held-out test region; intensity augmentation: "
            + args.task_augmentation,
            "recovery": "(score_enh - score_LQ) / (score_clean - score_LQ); NaN if the degradation costs < 0.001",
            "segmentation_score": "mean Dice over CSF/GM/WM (MONAI DiceMetric, include_background, per image mean)",
            "detection_score": "COCOMetric AP at IoU 0.5 (and mAP 0.5:0.95), max 100 detections per image",
        },
        "tasks": tasks,
    }
    write_json(args.output, payload)
    logger.info("wrote %s", args.output)
    return payload


def parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), choices=TASKS, help="default: all but tumour")
    p.add_argument("--methods", nargs="+", default=list(ALL_METHODS), help=f"subset of {list(ALL_METHODS)}")
    p.add_argument("--dpe_checkpoint", default=None)
    p.add_argument("--dpe_network", default=None)
    p.add_argument("--basicunet_checkpoint", default=None)
    p.add_argument("--basicunet_network", default=None)
    p.add_argument("--precision", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", default="paper")
    p.add_argument("--test_slab", type=float, nargs=2, default=[0.5, 0.6], help="held-out axial slab (fractions)")
    p.add_argument("--gap", type=int, default=3, help="slices dropped each side of the slab")
    p.add_argument("--train_step", type=int, default=1, help="keep every n-th training slice (CI)")
    p.add_argument("--seg_iterations", type=int, default=1500)
    p.add_argument("--det_iterations", type=int, default=1500)
    p.add_argument(
        "--task_augmentation",
        default="none",
        choices=TASK_AUGMENTATIONS,
        help="intensity augmentation of the task models (nnunet: dpe_monai.evaluators.augmentation)",
    )
    p.add_argument("--limit_test", type=int, default=None, help="evaluate N test items per task (CI)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--work_dir", default=str(WORK / "downstream"))
    p.add_argument("--output", default=str(RESULTS / "downstream.json"))
    p.add_argument("--update", action="store_true", help="keep the other tasks of an existing --output (each task "
                   "records the command that produced it)")  # fmt: skip
    add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point."""
    args = parse_cli(parser(), argv)
    return run(args)


if __name__ == "__main__":
    main()
