"""Train :class:`~dpe_monai.networks.clean_gate.CleanGate`: is a colour image already good, or an Algorithm 1 one?

    python bundles/dpe_enhancement/scripts/train_clean_gate.py --output outputs/clean_gate
    python bundles/dpe_enhancement/scripts/train_clean_gate.py --output outputs/clean_gate --export model.pt

Examples come from the collection's *training* split (fitting) and *validation* split (the reported rates), the
images the colour path gets (``relative`` False by :func:`dpe_monai.contract.is_scan`), loaded as the evaluation
protocol loads them (:func:`~dpe_monai.evaluators.common.load_clean`, centre crop 1024), without the sources the
downstream tasks test on (:data:`~dpe_monai.evaluators.datasets.TEST_SOURCES`):

- **good** (label 1): every image as it is, the dark ones too (Algorithm 1 would never degrade those: they are the
  images a network trained on its pairs wrongly brightens);
- **degraded** (label 0), ``--copies`` rounds of three versions of each image: Algorithm 1 with the paper's
  luminance gate, noise before the exposure drop; the same with the noise after it; and without the gate, noise
  order drawn (so a dark image made darker still counts as degraded). Half of each round is rounded to 8 bits.
  Every draw is seeded by ``(seed, round, version, item)`` through
  :func:`~dpe_monai.evaluators.common.degrade`; a version the gate skipped is left out.

The gate is fitted on the precomputed :func:`~dpe_monai.networks.clean_gate.gate_features` (cached in
``features.pt``), full batch, Adam, class-balanced binary cross-entropy, ``--iterations`` steps, seeded. It writes
``gate.pt`` (the state dict), ``config.json`` and ``log.json`` (loss curve; on both splits and on
scikit-image's colour photographs, :data:`PHOTOS`, an out-of-domain check: the share of good and of degraded
images with ``p > 0.5``, the deciles of ``p`` and the mean pass weight ``w`` of each; the photographs were used to
choose ``--crops``, nothing is fitted on them). A rerun of the same command recomputes nothing it has cached and
refits in seconds.

``--check MODEL`` runs the bundle's network with ``MODEL``'s weights (a ``model.pt`` with the gate) on the
*validation* split's colour images, good and degraded (paper order and noise after), without the gate and with it at
the thresholds 0.5 and 0.9, and writes the PSNR of each against the clean image to ``enhancer_check.json``: what the
gate buys in pass-through and costs in enhancement.

``--export OUT`` writes a bundle-style ``{"model": state_dict}`` for ``GlobalLocalNet(..., clean_gate=True)``:
``--base`` (default the bundle's ``models/model.pt``) with the gate of ``--output``'s ``gate.pt`` under ``gate.``
(replacing one already there), atomically, and trains nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dpe_monai.data import default_dataset_dir, ensure_collection
from dpe_monai.evaluators.common import degrade, load_clean, load_datalist
from dpe_monai.evaluators.datasets import TEST_SOURCES
from dpe_monai.io.atomic import atomic_write
from dpe_monai.networks.clean_gate import FEATURES, CleanGate, gate_features

BUNDLE = Path(__file__).resolve().parents[1]


def examples(datalist: str, split: str, copies: int, crops: int, seed: int, max_side: int) -> dict[str, Any]:
    """Features ``(N, 8)``, labels ``(N,)`` (1 good, 0 degraded) and group indices of the split's colour images."""
    feats, labels, groups = [], [], []
    names: list[str] = []
    for item in load_datalist(datalist, split):
        if item.get("source") in TEST_SOURCES:
            continue
        clean = load_clean(item, max_side=max_side)
        if clean["relative"]:
            continue
        ident, group = str(item["image"]), item.get("modality_group", "?")
        names += [group] if group not in names else []
        for k, x in enumerate(views(clean["image"], crops, seed, ident)):
            f = versions_features(x, copies, seed, f"{ident}|{k}")
            feats.append(f)
            labels.append(torch.tensor([1.0] + [0.0] * (len(f) - 1)))
            groups.append(torch.full((len(f),), names.index(group)))
    return {"x": torch.cat(feats), "y": torch.cat(labels), "group": torch.cat(groups), "groups": names}


def views(x: torch.Tensor, crops: int, seed: int, ident: str) -> list[torch.Tensor]:
    """``x`` and, when both sides exceed 96 px, ``crops`` square crops of side ``U(32, min side)`` at random places
    (seeded by ``(seed, ident)``): a large image is many images to a whole-image test."""
    out = [x]
    h, w = x.shape[-2:]
    if min(h, w) > 96 and crops:
        rng = np.random.default_rng([seed, int(hashlib.sha256(ident.encode()).hexdigest()[:8], 16)])
        for _ in range(crops):
            side = int(rng.integers(32, min(h, w) + 1))
            i, j = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            out.append(x[:, i : i + side, j : j + side])
    return out


def versions_features(x: torch.Tensor, copies: int, seed: int, ident: str) -> torch.Tensor:
    """:func:`gate_features` of ``x`` (first row) and of its degraded versions ``(N, 8)``."""
    versions = [
        dict(noise_order="before"),
        dict(noise_order="after"),
        dict(noise_order="mixed", brightness_threshold=None),
    ]
    rows = [x]
    for r in range(copies):
        for v, kw in enumerate(versions):
            lq, params = degrade(x, seed, f"{ident}|{r}|{v}", quantize=bool((r + v) % 2), **kw)
            if params.get("applied", True):
                rows.append(lq)
    return torch.cat([gate_features(r[None]) for r in rows])


#: scikit-image's colour photographs (none of them in the collection): an out-of-domain check, never fitted on
PHOTOS: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "colorwheel")


def photo_examples(copies: int, seed: int) -> dict[str, Any]:
    """Features and labels of :data:`PHOTOS` (top-left 512^2) and their degraded versions."""
    import skimage.data

    feats = []
    for name in PHOTOS:
        a = np.asarray(getattr(skimage.data, name)()[:512, :512, :3], np.float32) / 255.0
        feats.append(versions_features(torch.from_numpy(a).permute(2, 0, 1).contiguous(), copies, seed, name))
    y = torch.cat([torch.tensor([1.0] + [0.0] * (len(f) - 1)) for f in feats])
    return {"x": torch.cat(feats), "y": y, "group": torch.zeros_like(y, dtype=torch.long), "groups": ["photos"]}


def rates(gate: CleanGate, data: dict) -> dict[str, float]:
    with torch.no_grad():
        p = torch.sigmoid(gate.logit_of_features(data["x"]))
        w = ((p - gate.threshold) / (1.0 - gate.threshold)).clamp(0.0, 1.0)
    good, bad = data["y"] > 0.5, data["y"] < 0.5
    return {
        "good_n": int(good.sum()),
        "degraded_n": int(bad.sum()),
        "good_passed": float((p[good] > 0.5).float().mean()),
        "degraded_passed": float((p[bad] > 0.5).float().mean()),
        "good_mean_p": float(p[good].mean()),
        "degraded_mean_p": float(p[bad].mean()),
        "good_mean_weight": float(w[good].mean()),
        "degraded_mean_weight": float(w[bad].mean()),
        "good_p_deciles": [round(float(v), 4) for v in torch.quantile(p[good], torch.linspace(0, 1, 11))],
        "degraded_p_deciles": [round(float(v), 4) for v in torch.quantile(p[bad], torch.linspace(0, 1, 11))],
    }


def fit(train: dict, iterations: int, lr: float, seed: int) -> tuple[CleanGate, list[float]]:
    torch.manual_seed(seed)
    gate = CleanGate()
    gate.shift.copy_(train["x"].mean(0))
    gate.scale.copy_(train["x"].std(0).clamp_min(1e-6))
    torch.nn.init.normal_(gate.mlp.output.weight, std=0.01)
    torch.nn.init.zeros_(gate.mlp.output.bias)
    y = train["y"]
    pos = float(y.mean())
    weight = torch.where(y > 0.5, 0.5 / pos, 0.5 / (1 - pos))  # each class half the loss
    loss_fn = torch.nn.BCEWithLogitsLoss(weight=weight)
    opt = torch.optim.Adam(gate.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations)
    curve = []
    for it in range(iterations):
        opt.zero_grad()
        loss = loss_fn(gate.logit_of_features(train["x"]), y)
        loss.backward()
        opt.step()
        sched.step()
        if it % 100 == 0 or it == iterations - 1:
            curve.append(round(float(loss), 5))
    return gate.eval(), curve


def enhancer_check(datalist: str, weights: Path, thresholds: tuple[float, ...] = (0.5, 0.9)) -> dict[str, Any]:
    """The gate's effect through the enhancer on the *validation* split's colour images: PSNR of the output against
    the clean image, for the image given as it is (pass-through) and for its Algorithm 1 versions (paper order,
    noise after), without the gate and with it at each threshold (``w = clip((p - t) / (1 - t), 0, 1)``)."""
    from dpe_monai.inference import Enhancer

    enhancer = Enhancer.from_bundle(BUNDLE, weights=weights, device="cpu", precision="fp32")
    net = enhancer.network
    rows: dict[str, list[float]] = {}
    for item in load_datalist(datalist, "validation"):
        clean = load_clean(item, max_side=1024)
        if clean["relative"] or item.get("source") in TEST_SOURCES:
            continue
        x = clean["image"][None]
        cases = [("pass_through", x)]
        for order in ("before", "after"):
            lq, params = degrade(clean["image"], 0, str(item["image"]), noise_order=order)
            cases += [(f"degraded_{order}", lq[None])] if params["applied"] else []
        for case, inp in cases:
            with torch.no_grad():
                p = net.gate.probability(inp)
            gate, net.gate = net.gate, None  # the same network without its gate
            with torch.no_grad():
                z = net(inp, relative=torch.zeros(1))
            net.gate = gate
            versions = {
                "no_gate": z,
                **{f"t={t}": inp + (1 - ((p - t) / (1 - t)).clamp(0, 1)) * (z - inp) for t in thresholds},
            }
            for name, out in versions.items():
                mse = float(((out.double() - x.double()) ** 2).mean())
                rows.setdefault(f"{case}|{name}", []).append(100.0 if mse <= 1e-10 else -10 * math.log10(mse))
    summary: dict[str, Any] = {}
    for key, v in rows.items():
        case, name = key.split("|")
        a = np.asarray(v)
        summary.setdefault(case, {})[name] = {
            "n": len(a),
            "mean_psnr": float(a.mean()),
            "below_35_db": int((a < 35).sum()),
        }
    return summary


def export(gate_path: Path, base: Path, out: Path) -> None:
    """``base``'s weights with the gate of ``gate_path`` under ``gate.``, as ``{"model": sd}``, atomically."""
    state = {k: v for k, v in torch.load(base, map_location="cpu", weights_only=True)["model"].items()}
    state = {k: v for k, v in state.items() if not k.startswith("gate.")}
    state.update({"gate." + k: v for k, v in torch.load(gate_path, map_location="cpu", weights_only=True).items()})
    with atomic_write(out) as tmp:
        torch.save({"model": state}, tmp)
    print(f"{out}: {base} + the gate of {gate_path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--datalist", default=None, help="MONAI datalist (default: the packaged collection's, built on first use)"
    )
    p.add_argument("--output", default="outputs/clean_gate")
    p.add_argument("--copies", type=int, default=2, help="rounds of the three degraded versions per image")
    p.add_argument("--crops", type=int, default=8, help="extra random crops of each image over 96 px (views)")
    p.add_argument("--max_side", type=int, default=1024)
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--base", default=str(BUNDLE / "models" / "model.pt"))
    p.add_argument("--export", default=None, help="write the candidate model.pt here and stop")
    p.add_argument("--check", default=None, help="a model.pt with the gate: write enhancer_check.json and stop")
    args = p.parse_args()
    args.datalist = args.datalist or ensure_collection(default_dataset_dir())
    out = Path(args.output)
    if args.export:
        export(out / "gate.pt", Path(args.base), Path(args.export))
        return
    if args.check:
        sha = hashlib.sha256(Path(args.check).read_bytes()).hexdigest()[:12]
        check = {"weights": args.check, "sha256": sha, **enhancer_check(args.datalist, Path(args.check))}
        (out / "enhancer_check.json").write_text(json.dumps(check, indent=1))
        print(json.dumps(check, indent=1))
        return
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.time()
    data = {}
    for split, seed in (("training", args.seed), ("validation", args.seed + 1)):
        cache = out / f"features_{split}.pt"
        code = hashlib.sha256(inspect.getsource(gate_features).encode()).hexdigest()[:16]  # features change: recompute
        key = {"datalist": args.datalist, "copies": args.copies, "crops": args.crops, "max_side": args.max_side}
        key.update(seed=seed, code=code)
        cached = torch.load(cache, weights_only=False) if cache.exists() else None
        if cached is None or cached.get("key") != key:
            cached = {"key": key, **examples(args.datalist, split, args.copies, args.crops, seed, args.max_side)}
            with atomic_write(cache) as tmp:
                torch.save(cached, tmp)
        data[split] = cached
    t1 = time.time()
    gate, curve = fit(data["training"], args.iterations, args.lr, args.seed)
    data["photos"] = photo_examples(args.copies, args.seed + 2)
    log = {
        "features": list(FEATURES),
        "seconds_features": round(t1 - t0, 1),
        "seconds_fit": round(time.time() - t1, 1),
        "loss_every_100": curve,
        **{split: rates(gate, d) for split, d in data.items()},
    }
    for split, d in data.items():
        log[split]["per_group"] = {
            name: rates(gate, {k: d[k][d["group"] == i] for k in ("x", "y")}) for i, name in enumerate(d["groups"])
        }
    with atomic_write(out / "gate.pt") as tmp:
        torch.save(gate.state_dict(), tmp)
    (out / "config.json").write_text(json.dumps(vars(args), indent=1))
    (out / "log.json").write_text(json.dumps(log, indent=1))
    print(json.dumps({k: v for k, v in log.items() if k != "loss_every_100"}, indent=1))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
