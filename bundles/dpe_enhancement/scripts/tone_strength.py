"""Choose the strength of the colour path's learned tone correction on conventions the fit never saw.

Usage (from the repository root)::

    .venv/bin/python bundles/dpe_enhancement/scripts/tone_strength.py \
        --colour_only --balance_power 1.0 --window channels --colour_fit --no_gate

Algorithm 1 (and a real under-exposure) erases where a colour image's black and white points were. The colour path's
tone map starts from a percentile window and learns a correction of it (:class:`~dpe_monai.networks.GlobalIntensity`),
which can only restore the brightness convention of its training targets. On a convention it never saw, the
correction can cost more than it gives (the benchmarks' colour images outside the collection). This script measures
how far a correction fitted on some sources carries to another, leave-one-source-out:

1. the instances of ``fit_global.py`` (the same recipe and options: Algorithm 1 in both noise orders, 8-bit
   rounding, a clean share; the training split plus, with ``--colour_fit``, the colour fit images), built once;
2. for every source (the datalist's ``source``: PH2 dermoscopy, each H&E package, the clinical skin photograph,
   the photographs, ...), a fresh branch is fitted on all *other* sources exactly as ``fit_global.py`` fits (same
   steps, weights, seed) and scored on the held-out source's degraded instances at every strength of
   ``--strengths`` (PSNR over the sampled pixels, mean over instances);
3. the chosen strength maximises the mean over sources of the held-out PSNR (every source alike, as the fit
   balances them); the report gives each source's curve, its own best strength and what the chosen one costs it.

The shipped branch is the one fitted on every source (``fit_global.py``); this only chooses how much of its
correction to apply (``GlobalLocalNet(tone_strength=...)``, no weights). Writes ``--output`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fit_global, beside this script

from fit_global import _instances, _weights, add_fit_arguments, fit_branch  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


def held_out_psnr(branch: torch.nn.Module, data: list[torch.Tensor], strengths: list[float]) -> list[float]:
    """Mean PSNR over the degraded instances of ``data`` (``[summary, low, clean]``) of the tone map at each
    strength (clean pairs, the images given as they are, left out: the clean gate decides those)."""
    from dpe_monai.networks.global_intensity import apply_global_intensity

    summary, low, clean = data
    degraded = ((low - clean) ** 2).mean(dim=(1, 2)) > 1e-9
    out = []
    saved = branch.strength
    with torch.no_grad():
        for s in strengths:
            branch.strength = float(s)
            y = apply_global_intensity(low[degraded], branch(low[degraded], summary=summary[degraded]))
            mse = ((y - clean[degraded]) ** 2).mean(dim=(1, 2)).clamp_min(1e-10)
            out.append(float((-10 * torch.log10(mse)).mean()))
    branch.strength = saved
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the instances, fit one branch per held-out source, score the strengths; returns the report."""
    from monai.data import load_decathlon_datalist

    from dpe_monai.data import default_dataset_dir, degradable_items, ensure_collection
    from dpe_monai.machine import machine_summary
    from dpe_monai.networks import GlobalIntensity

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    datalist = ensure_collection(args.dataset_dir or default_dataset_dir())
    train = degradable_items(load_decathlon_datalist(datalist, False, "training"), None if args.no_gate else 100.0)
    if args.colour_fit:
        from dpe_monai.data.colour_fit_data import colour_fit_items

        train = train + colour_fit_items()
    *data, sources = _instances(
        train, args.per_image, args.clean_share, args.max_side, args.pixels, args.seed, False, args.colour_only
    )
    names = sorted(set(sources))
    print(f"instances: {data[0].shape[0]} from {len(names)} sources ({time.perf_counter() - start:.0f} s)", flush=True)
    per_source: dict[str, Any] = {}
    for name in names:
        held = torch.tensor([s == name for s in sources])
        rest = [s for s in sources if s != name]
        torch.manual_seed(args.seed)
        branch = GlobalIntensity(in_channels=3, window=args.window)
        fit_branch(
            branch, [t[~held] for t in data], _weights(rest, args.balance_power), args.steps, args.batch, args.lr,
            args.seed,
        )  # fmt: skip
        curve = held_out_psnr(branch, [t[held] for t in data], args.strengths)
        best = int(np.argmax(curve))
        per_source[name] = {
            "instances": int(held.sum()),
            "psnr": curve,
            "best_strength": args.strengths[best],
        }
        print(f"{name}: {int(held.sum())} instances, PSNR by strength {[round(v, 2) for v in curve]}", flush=True)
    mean_curve = [float(np.mean([per_source[n]["psnr"][i] for n in names])) for i in range(len(args.strengths))]
    chosen = int(np.argmax(mean_curve))
    for name in names:
        per_source[name]["cost_of_chosen_db"] = max(per_source[name]["psnr"]) - per_source[name]["psnr"][chosen]
    return {
        "script": "tone_strength",
        "command": "python bundles/dpe_enhancement/scripts/tone_strength.py " + shlex.join(args.argv),
        "machine": machine_summary(),
        "strengths": args.strengths,
        "mean_over_sources_psnr": mean_curve,
        "chosen_strength": args.strengths[chosen],
        "gain_over_full_db": mean_curve[chosen] - mean_curve[-1] if math.isclose(args.strengths[-1], 1.0) else None,
        "per_source": per_source,
        "settings": {k: v for k, v in vars(args).items() if k not in ("argv", "output")},
        "seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "tone_strength.json")
    p.add_argument("--dataset_dir", default=None, help="collection folder (default: built on first use)")
    p.add_argument("--strengths", type=float, nargs="+", default=[round(0.1 * i, 1) for i in range(11)])
    add_fit_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--colour_only", action="store_true", help="as fit_global.py")
    p.add_argument("--balance_power", type=float, default=0.0, help="as fit_global.py")
    p.add_argument("--window", default="grey", help="as fit_global.py: grey | channels")
    p.add_argument("--colour_fit", action="store_true", help="as fit_global.py")
    p.add_argument("--no_gate", action="store_true", help="as fit_global.py")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    report = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".partial")
    tmp.write_text(json.dumps(report, indent=1, default=str) + "\n")
    tmp.replace(args.output)
    print(json.dumps({k: v for k, v in report.items() if k not in ("per_source", "machine")}, indent=1))
    return report


if __name__ == "__main__":
    main()
