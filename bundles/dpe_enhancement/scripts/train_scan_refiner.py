"""Train :class:`~dpe_monai.networks.ScanRefiner`: a learned residual on the scan path's non-local means.

    python bundles/dpe_enhancement/scripts/train_scan_refiner.py --output outputs/scan_refiner --iterations 5000

Pairs are made on the fly from the collection's *training* split, grey scans only (the images the scan path gets:
``relative`` by :func:`dpe_monai.contract.is_scan`), subjects sampled uniformly, without the sources the downstream
tasks test on (``--exclude_sources``, default :data:`dpe_monai.evaluators.datasets.TEST_SOURCES`: MNI152, whose
slices hold the segmentation and lesion test slab, and the pyradiomics tumour patients). Each whole image is
degraded by Algorithm 1 (noise ``U(0, 10)`` on the 8-bit scale, contrast and brightness ``U(0.1, 0.8)``; the noise
before the exposure drop or after it, half each; 3 channels with per-channel noise or one grey channel, half each,
per batch); a share of clean pairs (``--identity``) teaches it to leave good scans alone. The target is the same
image without the noise (same factors and pivot), in the input's units. The noise level and the window are read on
the whole degraded image (as the network reads them at inference), NLM runs on the crop, and the refiner learns
``target - NLM`` with an L1 loss in the units of each image's window (the scan path shows the image in its window,
so a dark image's error counts as much as a bright one's).

Every draw is seeded by ``(seed, iteration)``; ``latest.pt`` (weights, optimiser, iteration) is written atomically
every ``--save_every`` iterations and a rerun of the same command resumes from it. ``log.jsonl`` holds the training
loss and, every ``--val_every`` iterations, the validation gain: ``10 log10(MSE(NLM) / MSE(refined))`` against the
noise-free target on fixed crops of the *validation* split (dB, above 0: the refiner improves on NLM).

``--init CKPT`` starts a new run from the refiner weights of another run's ``latest.pt`` with a fresh optimiser and
schedule (a longer budget on top of a finished run; give it another ``--seed`` so it sees new pairs).

``--channels mean`` trains the refiner as ``GlobalLocalNet(..., refiner_channels="mean")`` runs it: a 3-channel batch
is refined on its channel mean at that mean's noise level, one correction for every channel.

``--nlm_h_factor`` is the strength of the NLM it refines; train with the value the bundle's ``network_def`` runs.

``--export OUT`` writes a bundle-style ``{"model": state_dict}`` for ``GlobalLocalNet(..., scan_refiner=True)``:
``--base`` (default: the bundle's ``models/model.pt``) with the refiner of ``--output``'s ``latest.pt`` added, and
trains nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from dpe_monai.data import default_dataset_dir, ensure_collection
from dpe_monai.evaluators.common import load_clean, load_datalist
from dpe_monai.evaluators.datasets import TEST_SOURCES
from dpe_monai.networks.nonlocal_means import NonLocalMeans, noise_sigma
from dpe_monai.networks.scan_refiner import ScanRefiner, window_of


def grey_scans(datalist: str, split: str, exclude: tuple[str, ...] = ()) -> dict[str, list[np.ndarray]]:
    """The split's grey scans as ``(H, W)`` float32 arrays in [0, 1], grouped by subject; sources in ``exclude``
    left out."""
    out: dict[str, list[np.ndarray]] = defaultdict(list)
    for item in load_datalist(datalist, split):
        if item.get("modality_group") != "radiology" or item.get("source") in exclude:
            continue
        data = load_clean(item)
        if data["relative"] and min(data["image"].shape[1:]) >= 64:
            out[item.get("subject", item["image"])].append(data["image"][0].numpy())
    return dict(out)


def make_pair(c: np.ndarray, rng: np.random.Generator, channels: int, identity: float) -> tuple[np.ndarray, ...]:
    """``(noisy (C, H, W), target (C, H, W))`` from a clean ``(H, W)`` image."""
    if rng.random() < identity:
        y = np.repeat(c[None], channels, 0)
        return y, y.copy()
    sigma = rng.uniform(0.0, 10.0) / 255.0
    cf, bf = rng.uniform(0.1, 0.8, size=2)
    noise = (rng.standard_normal((channels,) + c.shape) * sigma).astype(np.float32)
    if rng.random() < 0.5:  # after the exposure drop
        pivot = c.mean()
        target = bf * (pivot + cf * (c - pivot))
        y = np.clip(target[None] + noise, 0.0, 1.0)
    else:  # the paper's order: noise, then contrast around the noisy image's mean, then brightness
        noisy = np.clip(c[None] + noise, 0.0, 1.0)
        pivot = noisy.mean()
        y = bf * (pivot + cf * (noisy - pivot))
        target = bf * (pivot + cf * (c - pivot))
    return y.astype(np.float32), np.repeat(target[None], channels, 0).astype(np.float32)


def batch(
    scans: dict[str, list[np.ndarray]], rng: np.random.Generator, size: int, patch: int, identity: float
) -> tuple[torch.Tensor, ...]:
    """``(noisy crops, target crops, sigma (B,), window (B, 2))``; sigma and window of the whole noisy images."""
    subjects = sorted(scans)
    channels = 3 if rng.random() < 0.5 else 1
    xs, ts, sig, win = [], [], [], []
    for _ in range(size):
        imgs = scans[subjects[rng.integers(len(subjects))]]
        c = imgs[rng.integers(len(imgs))]
        y, t = make_pair(c, rng, channels, identity)
        yt = torch.from_numpy(y)[None]
        sig.append(noise_sigma(yt))
        win.append(window_of(yt))
        h, w = c.shape
        p = min(patch, h, w)
        i, j = rng.integers(h - p + 1), rng.integers(w - p + 1)
        xs.append(yt[0, :, i : i + p, j : j + p])
        ts.append(torch.from_numpy(t[:, i : i + p, j : j + p]))
    p = min(x.shape[-1] for x in xs + [x.transpose(-1, -2) for x in xs])
    xs, ts = [x[..., :p, :p] for x in xs], [x[..., :p, :p] for x in ts]
    return torch.stack(xs), torch.stack(ts), torch.cat(sig), torch.cat(win)


def atomic_save(obj: object, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def export(latest: Path, base: Path, out: Path) -> None:
    """``base``'s generator with the refiner of ``latest`` under ``refiner.``, as ``{"model": sd}``, atomically."""
    state = dict(torch.load(base, map_location="cpu", weights_only=True)["model"])
    refiner = torch.load(latest, map_location="cpu", weights_only=False)
    state.update({"refiner." + k: v for k, v in refiner["model"].items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({"model": state}, out)
    print(f"{out}: {base} + the refiner of {latest} (iteration {refiner['iteration']})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--datalist", default=None, help="MONAI datalist (default: the packaged collection's, built on first use)"
    )
    p.add_argument("--output", default="outputs/scan_refiner")
    p.add_argument("--iterations", type=int, default=5000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=80)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--identity", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save_every", type=int, default=100)
    p.add_argument("--val_every", type=int, default=250)
    p.add_argument(
        "--exclude_sources",
        nargs="*",
        default=list(TEST_SOURCES),
        help="collection sources left out of training (default: those the downstream tasks test on)",
    )
    p.add_argument("--channels", choices=["each", "mean"], default="each", help="ScanRefiner(channels=...)")
    p.add_argument(
        "--nlm_h_factor", type=float, default=0.8, help="the NLM strength it refines (GlobalLocalNet(nlm_h_factor=...))"
    )
    p.add_argument("--init", default=None, help="start from this latest.pt's weights (fresh optimiser and schedule)")
    p.add_argument("--export", default=None, help="write the candidate model.pt here and stop")
    p.add_argument("--base", default=str(Path(__file__).resolve().parents[1] / "models" / "model.pt"))
    args = p.parse_args()
    args.datalist = args.datalist or ensure_collection(default_dataset_dir())
    if args.export:
        export(Path(args.output) / "latest.pt", Path(args.base), Path(args.export))
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(vars(args), indent=1) + "\n")

    train, val = (
        grey_scans(args.datalist, "training", tuple(args.exclude_sources)),
        grey_scans(args.datalist, "validation"),
    )
    print(
        f"train: {sum(map(len, train.values()))} scans, {len(train)} subjects; "
        f"validation: {sum(map(len, val.values()))} scans, {len(val)} subjects",
        flush=True,
    )
    vrng = np.random.default_rng([args.seed, 10**9])
    val_batches = [batch(val, vrng, args.batch, 128, 0.0) for _ in range(4)]

    nlm = NonLocalMeans(2, patch_distance=6, h_factor=args.nlm_h_factor)
    model = ScanRefiner(2, channels=args.channels)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.iterations, eta_min=args.lr * 0.01)
    start = 0
    if (out / "latest.pt").exists():
        ck = torch.load(out / "latest.pt", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start = int(ck["iteration"])
        print(f"resumed at iteration {start}", flush=True)
    elif args.init:
        ck = torch.load(args.init, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        print(f"initialised from {args.init} (iteration {ck['iteration']} of its run)", flush=True)

    def validate() -> float:
        model.eval()
        gains = []
        with torch.no_grad():
            for x, t, s, w in val_batches:
                d = nlm(x, s)
                r = model(x, d, s, w)
                for i in range(x.shape[0]):
                    a, b = float(((d[i] - t[i]) ** 2).mean()), float(((r[i] - t[i]) ** 2).mean())
                    gains.append(10 * math.log10(max(a, 1e-12) / max(b, 1e-12)))
        model.train()
        return float(np.mean(gains))

    log = open(out / "log.jsonl", "a")
    t0, losses = time.time(), []
    for it in range(start, args.iterations):
        rng = np.random.default_rng([args.seed, it])
        x, t, s, w = batch(train, rng, args.batch, args.patch, args.identity)
        with torch.no_grad():
            d = nlm(x, s)
        span = (w[:, 1] - w[:, 0]).clamp_min(model.min_span).reshape(-1, 1, 1, 1)
        loss = ((model(x, d, s, w) - t).abs() / span).mean()  # in the window's units, as the scan path shows it
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        done = it + 1
        if done % 50 == 0:
            rec = {"iteration": done, "loss": float(np.mean(losses)), "seconds": round(time.time() - t0, 1)}
            if done % args.val_every == 0 or done == args.iterations:
                rec["val_gain_db"] = validate()
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(rec, flush=True)
            losses = []
        if done % args.save_every == 0 or done == args.iterations:
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
            atomic_save({**state, "iteration": done, "config": vars(args)}, out / "latest.pt")
    log.close()


if __name__ == "__main__":
    main()
