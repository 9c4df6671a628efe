"""Probe: where DPE's plain-protocol MNI segmentation loss comes from, the intensity scale or the pixels.

    python -m benchmarks.segmentation_scale

The plain protocol of ``benchmarks.downstream --tasks segmentation`` trains its U-Net on clean MNI152 slices as stored
(8-bit, ending at about 0.9 of white) without intensity augmentation, so it reads any change of scale as a change of
tissue. Algorithm 1 erases that scale, and every enhancer that stretches a degraded slice picks its own. This probe
takes the same U-Net (the downstream task's cache, trained if missing), test items and degradations, and scores each
enhancer's output three ways:

- ``as is``: the output (``benchmarks.downstream``'s figure);
- ``at the clean scale``: the output mapped per image by the affine map that best fits it to the clean image (least
  squares): an oracle scale, the same for every enhancer, so what is left is the pixels;
- ``at <other>'s scale``: the output fitted the same way to another enhancer's output (the two swap scales).
- ``x <f>``: the output multiplied by ``f`` (``--scales``): how far the task's ranking moves with a change of scale
  smaller than the one Algorithm 1 erases.

Enhancers: the best classical method of that task (auto-levels + NLM), the shipped DPE and the shipped DPE without
its scan refiner. Also reported per enhancer: the PSNR of the scale-fitted output against the clean image (pixel
fidelity with the scale taken out). Writes ``benchmarks/results/candidates/segmentation_scale.json``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import RESULTS, WORK, build_methods, machine_info, parse_cli, write_json

CLASSICAL = "auto_levels_nlm"


def _key(x: torch.Tensor) -> str:
    return hashlib.sha256(x.float().contiguous().numpy().tobytes()).hexdigest()


def _fit(y: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``y`` mapped by the least-squares affine map onto ``ref``, clipped to [0, 1]."""
    a, b = np.polyfit(y.double().flatten().numpy(), ref.double().flatten().numpy(), 1)
    return (a * y + b).clamp(0.0, 1.0).float()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * np.log10(max(float(torch.mean((a.double() - b.double()) ** 2)), 1e-10)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from dpe_monai.evaluators import SegmentationEvaluator, load_datalist
    from dpe_monai.evaluators import datasets as ds
    from dpe_monai.evaluators.common import degrade, enhance, for_item, item_id, load_clean
    from dpe_monai.inference import Enhancer

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    root = Path(args.work_dir) / "segmentation"  # benchmarks.downstream's task folder: its cached U-Net
    datalist = ds.mni_slab_datalist(root, test_slab=(0.5, 0.6), gap=3, step=1)
    ev = SegmentationEvaluator(4, ds.TISSUE_CLASSES, seed=0, train_kwargs={"iterations": 1500, "batch_size": 8})
    ev.fit(load_datalist(datalist, "training"), cache=root / "task_model.pt")
    test = load_datalist(datalist, "test")
    methods, info = build_methods([CLASSICAL, "dpe"], precision="fp32")
    no_refiner = copy.deepcopy(methods["dpe"].network)
    no_refiner.refiner = None
    enhancers: dict[str, Callable] = {
        CLASSICAL: methods[CLASSICAL],
        "dpe": methods["dpe"],
        "dpe_no_refiner": Enhancer(no_refiner, precision="fp32"),
    }
    outputs: dict[str, dict[str, torch.Tensor]] = {}  # degraded image's hash -> version -> image
    fidelity: dict[str, list[float]] = {k: [] for k in enhancers}
    for item in test:
        data = load_clean(item, label=True, max_side=1024)
        lq, _ = degrade(data["image"], 0, item_id(item), mode="paper")
        out = {k: enhance(for_item(fn, data["relative"], None), lq) for k, fn in enhancers.items()}
        versions = dict(out)
        for k, y in out.items():
            versions[f"{k} at the clean scale"] = _fit(y, data["image"])
            fidelity[k].append(_psnr(versions[f"{k} at the clean scale"], data["image"]))
        for k, y in out.items():
            for f in args.scales:
                versions[f"{k} x {f:g}"] = (y * f).clamp(0.0, 1.0)
        for k in ("dpe", "dpe_no_refiner"):
            versions[f"{k} at {CLASSICAL}'s scale"] = _fit(out[k], out[CLASSICAL])
            versions[f"{CLASSICAL} at {k}'s scale"] = _fit(out[CLASSICAL], out[k])
        outputs[_key(lq)] = versions
    names = list(next(iter(outputs.values())))

    def lookup(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: outputs[_key(x[0])][name][None]

    result = ev.evaluate(test, {n: lookup(n) for n in names})
    rows = {
        k: {"mean_dice": v["mean_dice"], "dice": v["dice"], "recovery": result["recovery"].get(k)}
        for k, v in result["inputs"].items()
    }
    payload = {
        "benchmark": "segmentation_scale",
        "command": "python -m benchmarks.segmentation_scale " + shlex.join(args.argv),
        "machine": machine_info(),
        "methods": info,
        "n_test": result["n_test"],
        "inputs": rows,
        "scale_fitted_psnr_db": {k: float(np.mean(v)) for k, v in fidelity.items()},
        "seconds": time.perf_counter() - start,
    }
    write_json(args.output, payload)
    for k, v in rows.items():
        print(f"{k:45s} mean Dice {v['mean_dice']:.4f}")
    for k, v in payload["scale_fitted_psnr_db"].items():
        print(f"{k:45s} PSNR at the clean scale {v:.2f} dB")
    return payload


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work_dir", default=str(WORK / "downstream"))
    p.add_argument("--output", default=str(RESULTS / "candidates" / "segmentation_scale.json"))
    p.add_argument(
        "--scales", type=float, nargs="*", default=[0.99, 0.98, 0.95], help="each output also scored times these"
    )
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point."""
    return run(parse_cli(parser(), argv))


if __name__ == "__main__":
    main()
