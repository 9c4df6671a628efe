"""Colour images the packaged collection does not hold: does the colour path's learned tone map still help?

    python -m benchmarks.colour_conventions [--seeds 3] [--threads 2]

Algorithm 1 is one global intensity map per image, the same for every channel, so it erases where an image's black
and white points were. The colour path (``GlobalLocalNet`` on a colour 8-bit image: not a scan) starts from a joint
percentile stretch and learns a correction of it, one grey curve for all channels, from its training targets
(dermoscopy for the most part): it can only restore the brightness convention of the images it was trained on. This
measures how far that carries, on colour images the collection does not hold or holds only in part:

- ``photographs``: scikit-image's astronaut, coffee and chelsea (not medical; the convention question at its plainest);
- ``histology``: the collection's H&E test tile (``microscopy/wsidicom_data/test_tile``) and scikit-image's
  immunohistochemistry image (in the training split);
- ``fundus``: scikit-image's retina (tiles of it are in the training split) and the 12 sample files of the
  ``retinalysis-fundusprep==1.1.0`` source archive (CHASE_DB1, DRIVE, HRF, PALM photographs, an ophthalmic DICOM
  and a genuinely under-exposed ``sample_dark.png``; AGPL, fetched once into the download cache by
  :mod:`dpe_monai.data.fundusprep_data`, never committed; ``--no_fundus`` leaves them out).

Every image is used at most :data:`MAX_SIDE` px on its long side. Each is first given to DPE as it is (pass-through
PSNR: a good image should come back nearly unchanged). Then, except for the under-exposed file, per noise order,
``--seeds`` Algorithm 1 versions (seeded per image as the quality benchmark seeds items; no luminance gate: every
fundus photograph is darker than the paper's B_T) are scored by PSNR against the clean image for:

- ``base``: the network's own base, the joint percentile stretch (its learned correction off);
- ``tone``: the learned tone map alone (no body residual);
- ``dpe``: the shipped network as the CLI runs it on a colour image (clean gate, tone map, body, regional limit;
  ``--no_regional_limit``: without :class:`~dpe_monai.networks.RegionalLimit`, i.e. bundle 0.12.1), also split into
  ``dpe_field`` and ``dpe_surround``: the PSNR inside the field (the clean image's grey above 0.04) and in its dark
  surround (a fundus photograph is a bright disc on black);
- the classical pipelines ``auto_levels`` (the 1-99 % percentiles of all channel values to 0/1),
  ``auto_levels_nlm``, ``percentile_stretch`` (the contract's 0.5-99.5 % window of the grey body, every channel
  alike: the network's base without its learned parts), ``stretch_nlm``, ``nlm_stretch``, and the unreachable
  ``oracle`` (it inverts the true factors and denoises at the true noise level).

For every image given as it is, ``blackened`` is the share of its field (grey above 0.03) that DPE returns at under
0.4 of the given grey: regions it blackened (``sample_dark.png``, a genuinely under-exposed fundus photograph, is
the case that made bundle 0.13.0 bound the body). It also records how close each clean image already is to the
stretch conventions: the PSNR of the clean image against its own ``percentile_stretch`` and its own ``auto_levels``
(a photograph that spans black to white comes back almost unchanged; Algorithm 1 maps every channel alike, so such
an image is restored by the stretch alone, whatever a learned convention says). The summary gives, per set and over
the images the collection does not hold, the mean of images and how many images DPE wins against the best classical
pipeline of that image. Writes ``benchmarks/results/colour_conventions.json``.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
    BUNDLE,
    DEFAULT_DATASET,
    RESULTS,
    json_arg,
    machine_info,
    network_enhancer,
    parse_network,
    write_json,
)

CLASSICAL = ("auto_levels", "auto_levels_nlm", "percentile_stretch", "stretch_nlm", "nlm_stretch")
ORDERS: dict[str, dict[str, Any]] = {"noise_before": {}, "noise_after": {"noise_order": "after"}}
SKIMAGE = {  # name -> (skimage.data function, set, in the collection's training split)
    "astronaut": ("astronaut", "photographs", False),
    "coffee": ("coffee", "photographs", False),
    "chelsea": ("chelsea", "photographs", False),
    "retina": ("retina", "fundus", True),
    "immunohistochemistry": ("immunohistochemistry", "histology", True),
}
#: genuinely under-exposed files: enhanced and described, but neither a clean reference nor a pass-through case
UNDER_EXPOSED = ("sample_dark",)
MAX_SIDE = 512


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        raise ValueError(f"PSNR of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    mse = float(((a.float() - b.float()) ** 2).mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def _split_psnr(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """PSNR of ``a`` against ``b`` inside the field (``b``'s grey > 0.04) and in its dark surround (NaN where the
    surround is under 1 % of the pixels): a fundus photograph is a bright disc on black."""
    field = b.mean(dim=0) > 0.04
    err = ((a.float() - b.float()) ** 2).mean(dim=0)
    out = []
    for m in (field, ~field):
        if m.float().mean() < 0.01:
            out.append(math.nan)
        else:
            out.append(10.0 * math.log10(1.0 / max(float(err[m].mean()), 1e-12)))
    return out[0], out[1]


def _blackened(out: torch.Tensor, given: torch.Tensor) -> float:
    """Share of the field (the given image's grey above 0.03) where the output's grey is under 0.4 of the given
    image's: regions an enhancer blackened, darker than it was given (``(C, H, W)`` in [0, 1])."""
    field = given.mean(dim=0) > 0.03
    dark = out.mean(dim=0) < 0.4 * given.mean(dim=0)
    return float((dark & field).sum()) / max(1, int(field.sum()))


def _fit(im: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` in [0, 1] -> ``(3, H', W')`` with the long side at most :data:`MAX_SIDE` (anti-aliased)."""
    from skimage import transform

    h, w = im.shape[:2]
    if max(h, w) > MAX_SIDE:
        scale = MAX_SIDE / max(h, w)
        im = transform.resize(im, (round(h * scale), round(w * scale)), anti_aliasing=True)
    return torch.from_numpy(np.ascontiguousarray(im, dtype=np.float32)).permute(2, 0, 1).contiguous()


def images(dataset_dir: str, fundus: bool = True) -> dict[str, dict[str, Any]]:
    """``{name: {"image": (3, H, W) float32 in [0, 1], "set": str, "in_training": bool, "source": str}}``.

    scikit-image's colour images, the collection's H&E test tile and, with ``fundus``, the 12 fundus files of the
    ``retinalysis-fundusprep`` source archive (:mod:`dpe_monai.data.fundusprep_data`, fetched once and cached;
    read through :func:`dpe_monai.io.read_image`, 8-bit RGB, values / 255 as the intensity contract maps them).
    """
    from skimage import data

    from dpe_monai.data import ensure_collection
    from dpe_monai.evaluators import load_datalist
    from dpe_monai.evaluators.common import load_clean

    out: dict[str, dict[str, Any]] = {}
    for name, (fn, group, seen) in SKIMAGE.items():
        im = getattr(data, fn)().astype(np.float32) / 255.0
        out[name] = {"image": _fit(im), "set": group, "in_training": seen, "source": f"skimage.data.{fn}()"}
    for item in load_datalist(str(ensure_collection(dataset_dir)), "test"):
        if "wsidicom_data" in str(item["image"]):
            out["he_tile"] = {"image": load_clean(item)["image"], "set": "histology", "in_training": False,
                              "source": str(item["image"])}  # fmt: skip
    if fundus:
        from dpe_monai.data.fundusprep_data import fundus_files
        from dpe_monai.io import read_image

        for path in fundus_files():
            native = read_image(path)
            if native.dtype != np.uint8 or native.array.shape[0] != 3:
                raise ValueError(f"{path.name}: expected 8-bit RGB, got {native.dtype} with {native.array.shape[0]}")
            im = np.moveaxis(native.array, 0, -1) / 255.0
            out[path.stem] = {"image": _fit(im), "set": "fundus", "in_training": False,
                              "source": f"retinalysis-fundusprep 1.1.0 samples/original/{path.name}"}  # fmt: skip
    return out


def run(
    dataset_dir: str,
    seeds: int,
    fundus: bool = True,
    regional_limit: bool = True,
    dpe_checkpoint: str | None = None,
    dpe_network: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from monai.bundle import ConfigParser

    from dpe_monai.baselines import ClassicalEnhancer, OracleEnhancer
    from dpe_monai.evaluators.common import degrade, enhance, for_item
    from dpe_monai.networks.global_intensity import apply_global_intensity

    start = time.perf_counter()
    if dpe_network is not None:
        net = ConfigParser({"network_def": dict(dpe_network)}).get_parsed_content("network_def")
    else:
        net = parse_network([BUNDLE / "configs" / "inference.json"])
    dpe, dpe_info = network_enhancer(net, dpe_checkpoint or BUNDLE / "models" / "model.pt", "fp32")
    net = dpe.network.eval()
    if not regional_limit:
        net.limit = None  # bundle 0.12.1's network: the same weights without RegionalLimit
    methods = {m: ClassicalEnhancer(m) for m in CLASSICAL}
    oracle = OracleEnhancer()
    rows: list[dict[str, Any]] = []
    described: dict[str, Any] = {}
    for name, info in images(dataset_dir, fundus).items():
        clean = info["image"]
        out = enhance(for_item(dpe, False), clean)
        described[name] = {
            "set": info["set"],
            "in_training": info["in_training"],
            "source": info["source"],
            "size": list(clean.shape[1:]),
            "mean": float(clean.mean()),
            "dpe_mean": float(out.mean()),
            "passthrough_db": _psnr(out, clean),
            "blackened": _blackened(out, clean),
            "clean_vs_own_percentile_stretch_db": _psnr(enhance(methods["percentile_stretch"], clean), clean),
            "clean_vs_own_auto_levels_db": _psnr(enhance(methods["auto_levels"], clean), clean),
        }
        if name in UNDER_EXPOSED:
            continue
        for order, kwargs in ORDERS.items():
            for seed in range(seeds):
                lq, params = degrade(clean, seed, name, brightness_threshold=None, **kwargs)
                x = lq[None]
                with torch.inference_mode():
                    est = net.estimate(x, torch.zeros(1))  # columns: tone map, noise level, gate w, route flag
                    tone = apply_global_intensity(x, est[:, :-3]).clamp(0.0, 1.0)
                    base = apply_global_intensity(x, net.global_branch(x, relative=torch.ones(1))).clamp(0.0, 1.0)
                y = enhance(for_item(dpe, False), lq)
                field, surround = _split_psnr(y, clean)
                row = {
                    "image": name,
                    "set": info["set"],
                    "order": order,
                    "seed": seed,
                    "gate_w": float(est[0, -2]),
                    "degraded": _psnr(lq, clean),
                    "base": _psnr(base[0], clean),
                    "tone": _psnr(tone[0], clean),
                    "dpe": _psnr(y, clean),
                    "dpe_field": field,
                    "dpe_surround": surround,
                    "oracle": _psnr(enhance(for_item(oracle, False, params), lq), clean),
                }
                row.update({m: _psnr(enhance(fn, lq), clean) for m, fn in methods.items()})
                rows.append(row)
                print({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return {
        "benchmark": "colour_conventions",
        "command": shlex.join(["python", "-m", "benchmarks.colour_conventions", *sys.argv[1:]]),
        "machine": machine_info(),
        "seeds": seeds,
        "max_side": MAX_SIDE,
        "regional_limit": "off" if net.limit is None else [net.limit.t0, net.limit.t1],
        "dpe": dpe_info,
        "images": described,
        "summary": summarise(rows, described),
        "rows": rows,
        "seconds": time.perf_counter() - start,
    }


def summarise(rows: list[dict[str, Any]], described: dict[str, Any]) -> dict[str, Any]:
    """Per noise order: each image's mean over seeds; per set and over the images the collection does not hold,
    the mean of images and how many images DPE wins (above the best classical pipeline of that image); and the
    pass-through PSNR of the images given as they are (the under-exposed file left out)."""
    keys = ["degraded", "base", "tone", "dpe", "dpe_field", "dpe_surround", *CLASSICAL, "oracle"]
    out: dict[str, Any] = {}
    for order in ORDERS:
        sel = [r for r in rows if r["order"] == order]
        names = sorted({r["image"] for r in sel})
        per_image = {n: {k: float(np.nanmean([r[k] for r in sel if r["image"] == n])) for k in keys} for n in names}
        groups: dict[str, list[str]] = {}
        for n in names:
            groups.setdefault(described[n]["set"], []).append(n)
        groups["unseen"] = [n for n in names if not described[n]["in_training"]]
        summary: dict[str, Any] = {}
        for group, members in groups.items():
            wins = [n for n in members if per_image[n]["dpe"] > max(per_image[n][m] for m in CLASSICAL)]
            summary[group] = {
                "images": members,
                "mean": {k: float(np.nanmean([per_image[n][k] for n in members])) for k in keys},
                "dpe_wins": len(wins),
            }
        out[order] = {"per_image": per_image, "groups": summary}
    good = [n for n in described if n not in UNDER_EXPOSED]
    out["passthrough_db"] = {
        group: {"n": len(ns), "mean": float(np.mean(v)), "min": float(np.min(v))}
        for group in sorted({described[n]["set"] for n in good})
        for ns in [[n for n in good if described[n]["set"] == group]]
        for v in [[described[n]["passthrough_db"] for n in ns]]
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset_dir", default=str(DEFAULT_DATASET))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no_fundus", action="store_true", help="leave out the retinalysis-fundusprep files")
    ap.add_argument(
        "--no_regional_limit", action="store_true", help="the shipped weights without RegionalLimit (0.12.1)"
    )
    ap.add_argument("--dpe_checkpoint", default=None, help="default: bundles/dpe_enhancement/models/model.pt")
    ap.add_argument("--dpe_network", default=None, help="network_def JSON (default: inference.json's)")
    ap.add_argument("--output", default=str(RESULTS / "colour_conventions.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(
        args.dataset_dir,
        args.seeds,
        fundus=not args.no_fundus,
        regional_limit=not args.no_regional_limit,
        dpe_checkpoint=args.dpe_checkpoint,
        dpe_network=json_arg(args.dpe_network),
    )
    write_json(args.output, result)
    for order in ORDERS:
        for group, g in result["summary"][order]["groups"].items():
            print(
                order,
                group,
                len(g["images"]),
                "DPE wins",
                g["dpe_wins"],
                {k: round(v, 2) for k, v in g["mean"].items()},
            )
    print("pass-through", result["summary"]["passthrough_db"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
