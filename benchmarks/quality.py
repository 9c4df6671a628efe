"""Quality benchmark (the paper's Table II): every method on the same degraded test images, per modality group.

Full run (from the repository root; see benchmarks/README.md for the prerequisites)::

    python -m benchmarks.quality --dataset_dir ~/.cache/dpe-monai/collection

writes ``benchmarks/results/quality.json`` (protocol, machine, per-image and summary metrics, seconds per image) and
one image grid per modality group under ``benchmarks/figures/``. ``--limit_per_group``, ``--methods``,
``--feature_backbone random`` and tiny ``--dpe_network`` / ``--basicunet_network`` make CI-sized runs.
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
    DEFAULT_DATASET,
    FIGURES,
    LABELS,
    REPO,
    RESULTS,
    WORK,
    build_methods,
    json_arg,
    machine_info,
    parse_cli,
    write_json,
)

logger = logging.getLogger("benchmarks.quality")


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """Arguments shared with the ablation benchmark: data, degradation and scoring."""
    parser.add_argument("--dataset_dir", default=str(DEFAULT_DATASET), help="packaged collection (built if missing)")
    parser.add_argument("--datalist", default=None, help="any MONAI datalist JSON (overrides --dataset_dir)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--seed", type=int, default=0, help="degradation seed")
    parser.add_argument("--mode", default="paper", help="simulator mode: paper | reference_code")
    parser.add_argument(
        "--noise_order", default="before", help="paper mode: before (the paper's order) | after (acquisition order)"
    )
    parser.add_argument(
        "--no_gate",
        action="store_true",
        help="degrade every image, also those darker than the paper's luminance gate (dark MR/CT slices)",
    )
    parser.add_argument("--max_side", type=int, default=1024, help="centre crop of large images (as evaluate.json)")
    parser.add_argument("--limit_per_group", type=int, default=None, help="score only N images per group (CI)")
    parser.add_argument(
        "--per_group",
        type=int,
        default=None,
        help="score N evenly spaced items per group (every subject represented; a faster full-coverage run)",
    )
    parser.add_argument(
        "--feature_backbone",
        default="hed_vgg16",
        type=lambda v: None if v == "none" else v,
        help="feature distance backbone (random: CI; none: skip it)",
    )
    parser.add_argument("--precision", default="auto", help="Enhancer precision for the networks")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")


def load_pairs(args: argparse.Namespace) -> tuple[list[dict], list[str], str]:
    """Degraded/clean pairs of the chosen split; returns ``(pairs, skipped ids, datalist path)``."""
    from dpe_monai.data import ensure_collection
    from dpe_monai.evaluators import load_datalist, paired_set

    datalist = args.datalist or ensure_collection(args.dataset_dir)
    items = load_datalist(datalist, args.split)
    gate = not getattr(args, "no_gate", False)
    if getattr(args, "per_group", None):
        if gate:  # pick among the images the luminance gate degrades, so no group loses its picks to the gate
            from dpe_monai.data import degradable_items

            items = degradable_items(items)
        items = evenly_per_group(items, args.per_group)
    pairs, skipped = paired_set(
        items,
        seed=args.seed,
        mode=args.mode,
        max_side=args.max_side,
        limit_per_group=args.limit_per_group,
        noise_order=getattr(args, "noise_order", "before"),
        **({} if gate else {"brightness_threshold": None}),
    )
    return pairs, skipped, str(datalist)


def evenly_per_group(items: list[dict], n: int, key: str = "modality_group") -> list[dict]:
    """At most ``n`` items per group, evenly spaced through the datalist order (which runs subject by subject)."""
    import numpy as np

    groups: dict[str, list[dict]] = {}
    for item in items:
        groups.setdefault(str(item.get(key, "all")), []).append(item)
    out = []
    for members in groups.values():
        idx = np.unique(np.linspace(0, len(members) - 1, min(n, len(members))).round().astype(int))
        out += [members[i] for i in idx]
    return out


def _repo_relative(path: Path) -> str:
    """``path`` relative to the repository when inside it (portable JSON), else absolute."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path.resolve())


def grid_items(pairs: list[dict]) -> set[str]:
    """One example per group for the image grid: among the largest images (min side >= 64 where there is one),
    the one with the most structure (highest std of the clean image)."""
    best: dict[str, tuple] = {}
    for p in pairs:
        key = (min(p["image"].shape[-2:]) >= 64, float(p["image"].std()), p["id"])
        if p["group"] not in best or key > best[p["group"]]:
            best[p["group"]] = key
    return {v[2] for v in best.values()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Score the methods and write the JSON (+ grids); returns the payload."""
    from dpe_monai.evaluators.quality import QualityScorer, protocol, score_enhancers, subjects_per_group

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    pairs, skipped, datalist = load_pairs(args)
    methods, info = build_methods(
        default_methods(args.basicunet_checkpoint) if args.methods is None else args.methods,
        args.dpe_checkpoint,
        json_arg(args.dpe_network),
        args.basicunet_checkpoint,
        json_arg(args.basicunet_network),
        args.precision,
    )
    grid_ids = grid_items(pairs)
    scores = score_enhancers(
        pairs,
        methods,
        QualityScorer(args.feature_backbone),
        keep=lambda p: p["id"] in grid_ids,
    )
    figures = {}
    if args.figures:
        from benchmarks.plots import image_grid

        for pair in pairs:
            if pair["id"] not in scores["outputs"]:
                continue
            row = next(r for r in scores["per_image"] if r["id"] == pair["id"])
            labels = {**LABELS, "reference": "reference (clean)"}
            path = Path(args.figures) / f"quality_grid_{pair['group']}.png"
            title = f"{pair['group']}: {pair['id']} ({pair['modality']}), PSNR dB / DeltaE against the reference"
            image_grid(scores["outputs"][pair["id"]], labels, row["metrics"], title, path)
            figures[pair["group"]] = {"path": _repo_relative(path), "item": pair["id"]}
    groups = sorted({p["group"] for p in pairs})
    payload = {
        "benchmark": "quality",
        "command": "python -m benchmarks.quality " + shlex.join(args.argv),
        "datalist": datalist,
        "split": args.split,
        "protocol": {
            **protocol(args.seed, args.mode, args.max_side, args.feature_backbone),
            "noise_order": args.noise_order,
            "luminance_gate": "off: every image degraded" if args.no_gate else "on (the paper's B_T = 100)",
            "selection": (
                (
                    "evenly spaced per group among all images"
                    if args.no_gate
                    else "evenly spaced per group among the images the gate degrades"
                )
                if args.per_group
                else "all"
            ),
        },
        "machine": machine_info(),
        "methods": {"input": {"kind": "identity"}, **info},
        "groups": {g: sum(p["group"] == g for p in pairs) for g in groups},
        "subjects": subjects_per_group(pairs),
        "n_scored": len(pairs),
        "skipped_by_luminance_gate": skipped,
        "limit_per_group": args.limit_per_group,
        "per_group": getattr(args, "per_group", None),
        "summary": scores["summary"],
        "seconds_per_image": scores["seconds_per_image"],
        "wall_seconds": time.perf_counter() - start,
        "figures": figures,
        "per_image": scores["per_image"],
    }
    write_json(args.output, payload)
    logger.info("wrote %s (%d images, %.0f s)", args.output, len(pairs), payload["wall_seconds"])
    return payload


def default_methods(basicunet_checkpoint: str | None = None) -> list[str]:
    """Every method; the BasicUNet baseline only when it has been trained (it is not shipped, ``benchmarks.ablation``
    trains it), so the default run works on a fresh checkout."""
    ckpt = Path(basicunet_checkpoint or WORK / "ablation" / "basicunet" / "models" / "model.pt")
    if ckpt.is_file():
        return list(ALL_METHODS)
    logger.warning("basicunet left out: no checkpoint at %s (train it with python -m benchmarks.ablation)", ckpt)
    return [m for m in ALL_METHODS if m != "basicunet"]


def parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help=f"subset of {list(ALL_METHODS)} (default: all; basicunet only when its checkpoint exists)",
    )
    p.add_argument("--dpe_checkpoint", default=None, help="default: bundles/dpe_enhancement/models/model.pt")
    p.add_argument("--dpe_network", default=None, help="network_def JSON (default: inference.json's)")
    p.add_argument(
        "--basicunet_checkpoint",
        default=None,
        help="default: outputs/benchmarks/ablation/basicunet/models/model.pt (benchmarks.ablation)",
    )
    p.add_argument("--basicunet_network", default=None, help="network_def JSON (default: train.json + basicunet.json)")
    p.add_argument("--output", default=str(RESULTS / "quality.json"))
    p.add_argument("--figures", default=str(FIGURES), help="folder of the image grids ('' to skip)")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point."""
    args = parse_cli(parser(), argv)
    return run(args)


if __name__ == "__main__":
    main()
