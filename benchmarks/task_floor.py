"""Why the task-driven fine-tune cannot beat plain DPE: its task loss against the frozen task network's floor.

For each fold and mode, the tumour benchmark's own fine-tune (:func:`benchmarks.tumour.fine_tune`: the bundle's
``configs/task_driven.json``, same data, budget and seed, kept if already trained) is run, and its MLflow curves
are written per epoch: the task loss on the enhanced crops, the same frozen U-Net's loss on the clean crops (the
floor: no enhancement can do better than the clean image), the enhancement loss, the gradient cosine and the share
of steps where GradProm promoted the task gradient. A task loss already at the floor leaves the fine-tune nothing
to gain on that task network::

    python -m benchmarks.task_floor --folds 0 --task_modes gradprom

writes ``benchmarks/results/task_floor.json``. Same defaults as ``python -m benchmarks.downstream --tasks tumour``.
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
import time
from typing import Any

from benchmarks.common import RESULTS, WORK, machine_info, parse_cli, write_json
from benchmarks.tumour import add_arguments, fine_tune, fine_tune_curves

logger = logging.getLogger("benchmarks.task_floor")


def gap_to_floor(curves: dict[str, list[float]]) -> list[float]:
    """Per-epoch ``task_loss - task_loss_clean`` (what a fine-tune could still gain on this task network)."""
    pairs = zip(curves.get("task_loss", []), curves.get("task_loss_clean", []))
    return [t - c if math.isfinite(t) and math.isfinite(c) else math.nan for t, c in pairs]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Fine-tune (or reuse) every requested fold and mode; returns and writes the JSON."""
    runs: dict[str, Any] = {}
    for fold in args.folds:
        for mode in args.task_modes:
            start = time.perf_counter()
            ckpt = fine_tune(fold, mode, args)
            curves = fine_tune_curves(ckpt.parent.parent, args.finetune_epoch_length)
            runs[f"{mode}_fold{fold}"] = {
                "checkpoint": str(ckpt),
                "seconds": time.perf_counter() - start,
                "curves": curves,
                "gap_to_floor": gap_to_floor(curves),
            }
            logger.info("%s fold %d: gap to floor %s", mode, fold, runs[f"{mode}_fold{fold}"]["gap_to_floor"])
    payload = {
        "benchmark": "task_floor",
        "command": "python -m benchmarks.task_floor " + shlex.join(args.argv),
        "machine": machine_info(),
        "settings": {
            "split": args.tumour_split,
            "epochs": args.finetune_epochs,
            "epoch_length": args.finetune_epoch_length,
            "segmenter_iterations": args.seg_iterations,
            "seed": args.seed,
            "config": "bundles/dpe_enhancement/configs/task_driven.json",
        },
        "runs": runs,
    }
    write_json(args.output, payload)
    return payload


def parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.add_argument("--folds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--seg_iterations", type=int, default=800)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--work_dir", default=str(WORK / "downstream"), help="shared with benchmarks.downstream")
    p.add_argument("--output", default=str(RESULTS / "task_floor.json"))
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point."""
    args = parse_cli(parser(), argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return run(args)


if __name__ == "__main__":
    main()
