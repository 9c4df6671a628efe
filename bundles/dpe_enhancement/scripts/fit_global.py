"""Fit the global tone-map branch of a :class:`~dpe_monai.networks.GlobalLocalNet` checkpoint on whole images.

Usage (from the repository root)::

    .venv/bin/python bundles/dpe_enhancement/scripts/fit_global.py \
        --checkpoint bundles/dpe_enhancement/outputs/global_local/models/latest.pt \
        --output bundles/dpe_enhancement/outputs/global_local_v2/models/latest.pt

Why a separate fit: the global branch reads only parameter-free statistics of the *whole* image
(:func:`~dpe_monai.networks.global_intensity.global_summary`) and maps every pixel through one curve, so it can be
trained on thousands of whole degraded images in minutes, whereas the end-to-end run sees each image as a few
128-pixel crops. Left to the end-to-end run on a CPU budget it stays poor (and the local body learns to compensate),
so this script fits it alone:

1. the bundle's training split (``degradable_items``, as ``train.json``), 8-bit (``"container"`` rule) images
   only: percentile-windowed images get no learned correction at all (the intensity-convention flag); with
   ``--grey_exports`` also the 8-bit exports of the percentile-windowed grey images
   (:class:`~dpe_monai.transforms.RandEightBitExportd`), so 8-bit grey scans are not all taken for the one 8-bit
   grey source of the collection (MNI152);
2. ``--per_image`` degradations of each image with the training recipe (Algorithm 1, both noise orders, 8-bit
   rounding, ``--clean_share`` clean pairs), seeded; each image centre-cropped to ``--max_side``;
3. the MLP is trained with L1 between the tone-mapped degraded pixels and the clean pixels (a random sample of
   ``--pixels`` per image), Adam, ``--steps`` steps; the validation split is scored before and after.

A source checkpoint from before the body read the intensity-convention flag gets a zero input channel for it.
The output is a resumable training checkpoint (the ``LatestCheckpoint`` format) holding the source's generator and
EMA generator with the fitted branch in both, the trainer at epoch 0 and no optimiser state, ready for
``train.json`` with ``resume`` and ``train_global`` false (the body is then fine-tuned under a fixed tone map).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _instances(
    items: list[dict],
    per_image: int,
    clean_share: float,
    max_side: int,
    pixels: int,
    seed: int,
    grey_exports: bool = False,
    colour_only: bool = False,
):
    """Summaries, sampled degraded pixels and clean pixels of ``per_image`` degradations of each 8-bit item (and,
    with ``grey_exports``, of the 8-bit export of each relative-windowed grey item, as ``RandEightBitExportd``;
    with ``colour_only``, of the colour 8-bit items only: the images the learned correction acts on at inference),
    and each instance's source (the datalist's ``source``)."""
    from dpe_monai.contract import is_relative
    from dpe_monai.evaluators.common import load_clean
    from dpe_monai.networks.global_intensity import global_summary
    from dpe_monai.transforms import EightBitExport, RandLowQuality, is_grey, is_near_grey

    sim = RandLowQuality(prob=1.0 - clean_share, brightness_threshold=None, noise_order="mixed", quantize=True)
    sim.set_random_state(seed)
    rng = np.random.default_rng(seed)
    summaries, lows, cleans, sources = [], [], [], []
    for item in items:
        loaded = load_clean(item, max_side=max_side)
        if colour_only and (is_relative(loaded["rule"]) or is_grey(loaded["image"]) or is_near_grey(loaded["image"])):
            continue
        if is_relative(loaded["rule"]):
            if not (grey_exports and is_grey(loaded["image"])):
                continue
            loaded["image"] = EightBitExport()(loaded["image"])
        clean = loaded["image"].numpy()
        flat_clean = clean.reshape(clean.shape[0], -1)
        for _ in range(per_image):
            low = np.asarray(sim(clean), dtype=np.float32)
            summaries.append(global_summary(torch.from_numpy(low)[None])[0])
            idx = rng.integers(0, flat_clean.shape[1], size=pixels)
            lows.append(torch.from_numpy(low.reshape(low.shape[0], -1)[:, idx]))
            cleans.append(torch.from_numpy(flat_clean[:, idx]))
            sources.append(str(item.get("source", "")))
    return torch.stack(summaries), torch.stack(lows), torch.stack(cleans), sources


def _weights(sources: list[str], power: float) -> torch.Tensor:
    """Sampling weight of each instance: ``count(source) ** -power`` (0: every instance alike; 1: every source
    alike), so one dominant source (2,093 PH2 dermoscopy images) does not make the correction its prior alone."""
    counts: dict[str, int] = {}
    for name in sources:
        counts[name] = counts.get(name, 0) + 1
    return torch.tensor([counts[name] ** -power for name in sources], dtype=torch.float64)


def _with_flag_input(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint from before the body read the convention flag: give its first convolution a zero input channel
    for it (the network then computes exactly what it computed before)."""
    state = dict(state)
    for key, w in state.items():
        if key.endswith("body.head.weight") and w.shape[1] == 6:
            state[key] = torch.cat([w, torch.zeros_like(w[:, :1])], dim=1)
    return state


def _psnr(branch: torch.nn.Module, data: tuple[torch.Tensor, ...]) -> dict[str, float]:
    from dpe_monai.networks.global_intensity import apply_global_intensity

    summary, low, clean = data
    with torch.no_grad():
        out = apply_global_intensity(low, branch(low, summary=summary))
    mse = ((out - clean) ** 2).mean(dim=(1, 2)).clamp_min(1e-10)
    ident = ((low - clean) ** 2).mean(dim=(1, 2)).clamp_min(1e-10)
    clean_pairs = ident <= 1e-9  # the clean share: images given as they are
    return {
        "psnr_mean": float((-10 * torch.log10(mse)).mean()),
        "psnr_mean_degraded": float((-10 * torch.log10(mse[~clean_pairs])).mean()),
        "psnr_mean_clean_inputs": float((-10 * torch.log10(mse[clean_pairs])).mean()) if clean_pairs.any() else None,
        "psnr_pooled_mse": float(-10 * math.log10(float(mse.mean()))),
        "identity_psnr_mean": float((-10 * torch.log10(ident)).mean()),
        "n": int(summary.shape[0]),
    }


def fit_branch(
    branch: torch.nn.Module,
    train_data: list[torch.Tensor],
    weights: torch.Tensor,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    val_data: list[torch.Tensor] | None = None,
) -> None:
    """Fit ``branch``'s MLP in place: L1 between the tone-mapped degraded pixels and the clean pixels of instances
    drawn with ``weights`` (Adam, cosine schedule, seeded); logs the validation PSNR every 500 steps."""
    from dpe_monai.networks.global_intensity import apply_global_intensity

    opt = torch.optim.Adam(branch.mlp.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.multinomial(weights, batch, replacement=True, generator=gen)
        summary, low, clean = (t[idx] for t in train_data)
        loss = (apply_global_intensity(low, branch(low, summary=summary)) - clean).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if val_data is not None and (step % 500 == 0 or step == steps - 1):
            print(f"step {step}: L1 {float(loss):.4f}  val {_psnr(branch, val_data)}", flush=True)


def fit(args: argparse.Namespace) -> dict[str, Any]:
    """Build the instances, fit the branch, write the checkpoint; returns the report."""
    from monai.data import load_decathlon_datalist

    from dpe_monai.data import default_dataset_dir, degradable_items, ensure_collection
    from dpe_monai.networks import GlobalLocalNet

    torch.manual_seed(args.seed)
    start = time.perf_counter()
    datalist = ensure_collection(args.dataset_dir or default_dataset_dir())
    gate = None if args.no_gate else 100.0
    train = degradable_items(load_decathlon_datalist(datalist, False, "training"), gate)
    val = degradable_items(load_decathlon_datalist(datalist, False, "validation"), gate)
    if args.colour_fit:
        from dpe_monai.data.colour_fit_data import colour_fit_items

        train = train + colour_fit_items()
    exports, colour = args.grey_exports, args.colour_only
    *train_data, train_sources = _instances(
        train, args.per_image, args.clean_share, args.max_side, args.pixels, args.seed, exports, colour
    )
    *val_data, _ = _instances(val, 2, args.clean_share, args.max_side, args.pixels, args.seed + 1, exports, colour)
    weights = _weights(train_sources, args.balance_power)
    shares = {
        name: float(weights[[s == name for s in train_sources]].sum() / weights.sum()) for name in set(train_sources)
    }
    print(
        f"instances: train {train_data[0].shape[0]}, validation {val_data[0].shape[0]}, sampling shares {shares} "
        f"({time.perf_counter() - start:.0f} s)",
        flush=True,
    )

    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    if set(ckpt) == {"model"}:  # a shipped checkpoint (``ship_checkpoint.py``): its EMA generator alone
        ema = {"module." + k: v for k, v in ckpt["model"].items()}  # the AveragedModel layout train.json resumes
        ckpt = {"network": ckpt["model"], "ema_network": {**ema, "n_averaged": torch.tensor(1)}}
    for name in ("network", "ema_network"):
        if ckpt.get(name):
            ckpt[name] = _with_flag_input(ckpt[name])
    net = GlobalLocalNet(in_channels=3, out_channels=3, tone_window=args.window)
    body = {k: v for k, v in ckpt["network"].items() if not k.startswith("global_branch.")}
    missing, unexpected = net.load_state_dict(body, strict=False)
    unexpected = [k for k in unexpected if not k.startswith(("refiner.", "gate."))]  # weights fit_global keeps as is
    if unexpected or any(not k.startswith("global_branch.") for k in missing):
        raise ValueError(f"{args.checkpoint} is not a GlobalLocalNet training checkpoint: {missing} {unexpected}")
    branch = net.global_branch  # fitted from scratch (its last layer zero: the percentile stretch)
    report: dict[str, Any] = {"validation_percentile_stretch": _psnr(branch, val_data), "sampling_shares": shares}
    fit_branch(branch, train_data, weights, args.steps, args.batch, args.lr, args.seed, val_data)
    report["validation_after"] = _psnr(branch, val_data)

    fitted = {f"global_branch.{k}": v for k, v in branch.state_dict().items()}
    out: dict[str, Any] = {}
    for name in ("network", "ema_network"):
        if ckpt.get(name):
            # what train.json's GlobalLocalNet holds: the separately trained refiner and gate of a shipped source stay
            # behind (``ship_checkpoint.py --base`` takes them back)
            state = {
                k: v for k, v in ckpt[name].items() if not k.removeprefix("module.").startswith(("refiner.", "gate."))
            }
            prefix = "module." if any(k.startswith("module.") for k in state) else ""
            state.update({prefix + k: v.clone() for k, v in fitted.items()})
            out[name] = state
    out["trainer"] = {"epoch": 0, "iteration": 0, "epoch_length": args.epoch_length, "max_epochs": 1}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".partial")
    torch.save(out, tmp)
    tmp.replace(args.output)
    report.update(
        command="python bundles/dpe_enhancement/scripts/fit_global.py " + shlex.join(args.argv),
        source=str(args.checkpoint),
        seconds=time.perf_counter() - start,
        settings={k: v for k, v in vars(args).items() if k not in ("argv", "checkpoint", "output")},
    )
    report_path = args.output.with_name("fit_global.json")
    report_path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(json.dumps(report, indent=1, default=str))
    return report


def add_fit_arguments(p: argparse.ArgumentParser) -> None:
    """The instance recipe and the fit's optimisation options (shared with ``tone_strength.py``)."""
    p.add_argument("--per_image", type=int, default=4)
    p.add_argument("--clean_share", type=float, default=0.1)
    p.add_argument("--max_side", type=int, default=512)
    p.add_argument("--pixels", type=int, default=4096)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point."""
    import sys

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="resumable training checkpoint to start from, or a shipped one ({'model': state})",
    )
    p.add_argument("--output", type=Path, required=True)
    p.add_argument(
        "--dataset_dir",
        default=None,
        help="collection folder (default: dpe_monai.data.default_dataset_dir(), built on first use)",
    )
    add_fit_arguments(p)
    p.add_argument("--epoch_length", type=int, default=200, help="recorded in the trainer state")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--grey_exports",
        action="store_true",
        help="also fit on the 8-bit exports of the relative-windowed grey images (as RandEightBitExportd)",
    )
    p.add_argument(
        "--colour_only",
        action="store_true",
        help="fit on colour 8-bit images only (grey images take the scan path, which has no learned correction)",
    )
    p.add_argument(
        "--balance_power",
        type=float,
        default=0.0,
        help="sample each instance with weight count(its source) ** -power (0: uniform; 1: every source alike)",
    )
    p.add_argument("--window", default="grey", help="the colour path's base window: grey | channels")
    p.add_argument(
        "--colour_fit",
        action="store_true",
        help="add the colour images of dpe_monai.data.colour_fit_data (H&E, clinical skin, photographs) to training",
    )
    p.add_argument(
        "--no_gate",
        action="store_true",
        help="keep the images the luminance gate leaves out (already dark, e.g. fundus tiles with a black surround)",
    )
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return fit(args)


if __name__ == "__main__":
    main()
