"""Does any degraded colour image reach the colour path's exposed rule? The bright end of each channel, measured.

    python -m benchmarks.channel_top [--dataset_dir DIR] [--split test]

Bundle 0.12.1's clean gate passes an image whose grey or per-channel 99th percentile reaches 0.9 (wholly from
0.95; ``CleanGate(exposed=...)``, :func:`dpe_monai.networks.clean_gate.channel_top`). Algorithm 1's brightness factor
(at most 0.8) scales every channel, so no degraded image should reach it. For every colour-path image of the split
(not a scan: :func:`dpe_monai.contract.is_scan`), loaded as the evaluation protocol loads it, this records the
largest per-channel 99th percentile of the clean image and of its Algorithm 1 versions (seed 0, per item as the
quality benchmark seeds them): noise before the exposure drop, after it, and without the luminance gate. Writes
``benchmarks/results/channel_top.json``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Any

import torch

from benchmarks.common import DEFAULT_DATASET, RESULTS, machine_info, write_json

VERSIONS: dict[str, dict[str, Any]] = {
    "noise_before": {},
    "noise_after": {"noise_order": "after"},
    "no_gate": {"brightness_threshold": None},
}


def run(dataset_dir: str, split: str) -> dict[str, Any]:
    from dpe_monai.data import ensure_collection
    from dpe_monai.evaluators import load_datalist
    from dpe_monai.evaluators.common import degrade, item_id, load_clean
    from dpe_monai.networks.clean_gate import channel_top

    start = time.perf_counter()
    items = load_datalist(str(ensure_collection(dataset_dir)), split)
    clean_tops, tops = [], {k: [] for k in VERSIONS}
    for item in items:
        data = load_clean(item)
        if data["relative"]:
            continue
        x = data["image"]
        clean_tops.append(float(channel_top(x[None])))
        for name, kwargs in VERSIONS.items():
            lq, params = degrade(x, 0, item_id(item), **kwargs)
            if params["applied"]:
                tops[name].append(float(channel_top(lq[None])))

    def summary(values: list[float]) -> dict[str, Any]:
        t = torch.tensor(values or [float("nan")])
        return {
            "n": len(values),
            "max": float(t.max()),
            "median": float(t.median()),
            "n_at_least_0.9": int((t >= 0.9).sum()),
        }

    return {
        "benchmark": "channel_top",
        "command": shlex.join(["python", "-m", "benchmarks.channel_top", *sys.argv[1:]]),
        "machine": machine_info(),
        "split": split,
        "clean": summary(clean_tops),
        "degraded": {k: summary(v) for k, v in tops.items()},
        "seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset_dir", default=str(DEFAULT_DATASET))
    ap.add_argument("--split", default="test")
    ap.add_argument("--output", default=str(RESULTS / "channel_top.json"))
    args = ap.parse_args(argv)
    result = run(args.dataset_dir, args.split)
    write_json(args.output, result)
    print({"clean": result["clean"], **result["degraded"]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
