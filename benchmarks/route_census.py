"""Route census: how many images of the packaged collection take the scan path, and which ones a route rule moves.

    python -m benchmarks.route_census

Every item of every split is loaded as the evaluation protocol loads it (:func:`dpe_monai.evaluators.common.load_clean`)
and counted per split and group under the route flag (:func:`dpe_monai.contract.is_scan`) with two greyness rules:
exactly equal channels (:func:`dpe_monai.transforms.is_grey`, bundle 0.6.0) and channels within the noise of lossy
colour storage (:func:`dpe_monai.transforms.is_near_grey`, bundle 0.6.1). Images the two rules route differently are
listed by id, with the channel spread that decided. Writes ``benchmarks/results/route_census.json``.
"""

from __future__ import annotations

import argparse
import shlex
import time
from collections import Counter
from typing import Any

import torch

from benchmarks.common import DEFAULT_DATASET, RESULTS, machine_info, parse_cli, write_json


def run(args: argparse.Namespace) -> dict[str, Any]:
    from dpe_monai.contract import is_scan
    from dpe_monai.data import ensure_collection
    from dpe_monai.evaluators import load_datalist
    from dpe_monai.evaluators.common import item_id, load_clean
    from dpe_monai.transforms import is_grey, is_near_grey

    start = time.perf_counter()
    datalist = args.datalist or ensure_collection(args.dataset_dir)
    counts: Counter[str] = Counter()
    moved: list[dict[str, Any]] = []
    for split in args.splits:
        for it in load_datalist(datalist, split):
            data = load_clean(it)
            x, rule = data["image"], data["rule"]
            exact, near = is_scan(rule, is_grey(x)), is_scan(rule, is_near_grey(x))
            group = it.get("modality_group", "all")
            counts[f"{split}/{group}/{'scan' if near else 'learned'}"] += 1
            if exact != near:
                spread = (x.amax(0) - x.amin(0)).flatten().float() * 255
                moved.append(
                    {"id": item_id(it), "split": split, "mean_spread": float(spread.mean()),
                     "p99_spread": float(torch.quantile(spread[:: max(1, spread.numel() // 500_000)], 0.99))}
                )  # fmt: skip
    payload = {
        "benchmark": "route_census",
        "command": "python -m benchmarks.route_census " + shlex.join(args.argv),
        "machine": machine_info(),
        "datalist": str(datalist),
        "counts": dict(sorted(counts.items())),
        "moved_by_near_grey": moved,
        "wall_seconds": time.perf_counter() - start,
    }
    write_json(args.output, payload)
    for key, n in payload["counts"].items():
        print(f"{key}: {n}")
    print(f"images the near-grey rule routes differently from the exact rule: {len(moved)}")
    return payload


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset_dir", default=str(DEFAULT_DATASET), help="packaged collection (built if missing)")
    p.add_argument("--datalist", default=None, help="any MONAI datalist JSON (overrides --dataset_dir)")
    p.add_argument("--splits", nargs="+", default=["training", "validation", "test"])
    p.add_argument("--output", default=str(RESULTS / "route_census.json"))
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point."""
    return run(parse_cli(parser(), argv))


if __name__ == "__main__":
    main()
