"""Probe for the scan path's ``keep_scale`` ramp: which scans keep their own scale, and what each ramp costs.

    python -m benchmarks.keep_scale

The scan path (``GlobalLocalNet(prefilter="nlm", prefilter_on="relative")``, measured here without the refiner)
stretches a scan to the 0.5-99.5 % window of its denoised values. A good scan that does not fill its range (MNI152's T1
ends at about 235 of 255) is then brightened. ``keep_scale=(a, b)`` keeps the own scale of a scan whose denoised values
span at least ``b`` (minimum to 99.5th percentile), with a linear ramp from ``a``. The probe runs the scan path itself
(untrained weights: the path reads none) under each ramp on:

- ``good_mni``: MNI152 T1 axial slices (every 8th with >= 15 % brain) as stored, 8-bit: PSNR(output, input);
- ``good_tumour``: the pyradiomics tumour slices (fold-0 datalist, every 3rd), clean: PSNR(output, input);
- ``tumour_<modality>/<degradation>``: the same slices degraded as the tumour benchmark degrades them (realistic:
  MR bias field + Rician noise, CT low dose; and Algorithm 1), PSNR(output, clean) and the degraded scan's span.

Writes ``benchmarks/results/candidates/keep_scale.json``.
"""

from __future__ import annotations

import argparse
import shlex
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import RESULTS, machine_info, parse_cli, write_json

RAMPS = {"none": None, "0.65-0.8": (0.65, 0.8), "0.8-0.9": (0.8, 0.9), "0.85-0.95": (0.85, 0.95)}


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(torch.mean((a.double() - b.double()) ** 2))
    return 100.0 if mse <= 1e-10 else 10 * np.log10(1.0 / mse)


def _span(net: torch.nn.Module, x: torch.Tensor) -> float:
    """Denoised minimum to 99.5th body percentile, as ``dpe_monai.networks.scan_window.keep_own_scale`` measures it (the
    summary strides to about 65,536 values, the network reads every pixel: the same for the <= 256^2 slices here)."""
    from dpe_monai.networks.nonlocal_means import noise_sigma

    den = net.prefilter(x[None], noise_sigma(x[None]))[0].mean(0)
    summary = net.global_branch.summary(den[None, None].expand(1, 3, -1, -1))
    return float(summary[0, 1] - den.min())


def run(args: argparse.Namespace) -> dict[str, Any]:
    from dpe_monai.data.sources import mni152
    from dpe_monai.evaluators import load_datalist
    from dpe_monai.evaluators.common import degrade, item_id, load_clean
    from dpe_monai.evaluators.datasets import tumour_datalist
    from dpe_monai.networks import GlobalLocalNet

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    torch.manual_seed(0)
    nets = {k: GlobalLocalNet(prefilter="nlm", prefilter_on="relative", keep_scale=v).eval() for k, v in RAMPS.items()}
    ref = nets["none"]
    cases: list[tuple[str, str, torch.Tensor, torch.Tensor]] = []  # set, id, input, target
    t1 = next(mni152()).load()[0].array
    for z in [z for z in range(t1.shape[2]) if (t1[:, :, z] > 0).mean() >= 0.15][:: args.mni_step]:
        x = torch.from_numpy(np.ascontiguousarray(np.rot90(t1[:, :, z])).astype(np.float32) / 255.0)[None]
        cases.append(("good_mni", f"mni152_axial{z:03d}", x.repeat(3, 1, 1), x.repeat(3, 1, 1)))
    tdl = tumour_datalist(Path(args.work_dir).resolve() / "data_fold0", test_fold=0)
    items = (load_datalist(tdl, "training") + load_datalist(tdl, "test"))[:: args.stride]
    for it in items:
        clean = load_clean(it)["image"]
        mod = str(it.get("modality"))
        cases.append(("good_tumour", item_id(it), clean, clean))
        real = "mri_bias_rician" if mod == "MR" else "lowdose_ct"
        for name, mode, kw in (("realistic", real, {}), ("paper", "paper", {"brightness_threshold": None})):
            lq, _ = degrade(clean, args.seed, item_id(it), mode=mode, **kw)
            cases.append((f"tumour_{mod}/{name}", item_id(it), lq, clean))
    rows = []
    with torch.no_grad():
        for set_name, cid, x, target in cases:
            psnr = {k: _psnr(net(x[None], relative=torch.ones(1))[0], target) for k, net in nets.items()}
            rows.append({"set": set_name, "id": cid, "span": _span(ref, x), "psnr": psnr})
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["set"]].append(r)
    summary = {
        s: {
            "n": len(rs),
            "span_min_median_max": [float(q) for q in np.percentile([r["span"] for r in rs], [0, 50, 100])],
            "psnr_mean": {k: float(np.mean([r["psnr"][k] for r in rs])) for k in RAMPS},
            "psnr_min": {k: float(np.min([r["psnr"][k] for r in rs])) for k in RAMPS},
        }
        for s, rs in sorted(groups.items())
    }
    payload = {
        "benchmark": "keep_scale (candidate probe for the scan path's ramp)",
        "command": "python -m benchmarks.keep_scale " + shlex.join(args.argv),
        "machine": machine_info(),
        "settings": {"seed": args.seed, "stride": args.stride, "mni_step": args.mni_step, "ramps": RAMPS},
        "summary": summary,
        "per_image": rows,
        "wall_seconds": time.perf_counter() - start,
    }
    write_json(args.output, payload)
    return payload


def parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stride", type=int, default=3, help="every N-th tumour slice")
    p.add_argument("--mni_step", type=int, default=8, help="every N-th MNI152 axial slice")
    p.add_argument("--work_dir", default="outputs/benchmarks/keep_scale", help="where the tumour slices are written")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--output", default=str(RESULTS / "candidates" / "keep_scale.json"))
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point."""
    return run(parse_cli(parser(), argv))


if __name__ == "__main__":
    main()
