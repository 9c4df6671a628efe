"""Candidate probe: a signal-dependent noise model for the scan path (measured, not shipped).

    python -m benchmarks.noise_model

The scan path denoises with non-local means at *one* noise level for the whole image (the MAD of neighbour
differences), then re-windows the denoised image. Quantum-limited data (low-dose CT, radiographs) has a noise
variance that grows with the signal, ``var(v) = gain * v + var0`` (Poisson-Gaussian), so one level over- or
under-smooths most of the image. The textbook answer is a variance-stabilising transform (generalised Anscombe)
with the noise-level function (NLF) estimated from the image itself. This probe measures, in numpy/scikit-image:

* ``nlm_window``: NLM at the whole-image level, then the denoised image's percentile window (the scan path's recipe,
  as the classical "NLM + stretch");
* ``stretch_nlm``: the window first, then NLM;
* ``vst_nlm``: NLM in the stabilised domain with the estimated NLF, no window;
* ``vst_nlm_window``: that, then the denoised image's window;
* ``vst_nlm_window_clip``: the same, but the upper window end stays at the *input's* maximum where the input has a
  saturated plateau there (>= 0.5 % of the body at the maximum, those pixels with on average >= 40 % of their 3x3
  neighbours at it too: the rule of ``scan_window.keep_saturation``); denoising pulls a clipped plateau below
  the clip level;
* ``auto``: what ``GlobalLocalNet(noise_model="auto")`` does, ``vst_nlm_window_clip`` where the NLF ratio (below)
  is >= 2, else ``nlm_window``;
* ``nlm_full`` / ``auto_full`` (an idea, in no network): ``nlm_window`` / ``auto``, but a denoised image whose
  percentile window is already at least ``FULL`` wide keeps its own scale instead of being re-windowed;

and, per image, the NLF fit's variance ratio between the 90th and the 10th percentile of the local mean, the
statistic a switch between the two noise models would read. Images: the pyradiomics tumour slices (CT and MR,
8-bit, every ``--stride``-th) and the collection's radiology test images, degraded by the realistic modes and by
Algorithm 1 in both noise orders (no luminance gate). Writes ``benchmarks/results/candidates/noise_model.json``.
"""

from __future__ import annotations

import argparse
import shlex
import time
from collections import defaultdict
from typing import Any

import numpy as np
from skimage import restoration

from benchmarks.common import DEFAULT_DATASET, RESULTS, machine_info, parse_cli, write_json

FAMILIES = {  # name: (simulator mode, noise order)
    "lowdose_ct": ("lowdose_ct", "before"),
    "mri_bias_rician": ("mri_bias_rician", "before"),
    "alg1_before": ("paper", "before"),
    "alg1_after": ("paper", "after"),
}
METHODS = (
    "nlm_window",
    "stretch_nlm",
    "vst_nlm",
    "vst_nlm_window",
    "vst_nlm_window_clip",
    "auto",
    "nlm_full",
    "auto_full",
)
FULL = 0.9  # a denoised window at least this wide counts as already full: the image keeps its own scale
MIN_RATIO = 2.0  # noise_level_function's default


def noise_level_function(img: np.ndarray, bins: int = 16, margin: float = 3.0) -> tuple[float, float, float]:
    """Fit ``var(v) = gain * v + var0`` to a grey ``(H, W)`` image in [0, 1]; returns ``(gain, var0, ratio)``.

    Noise samples are 2x2 mixed second differences (they cancel a linear ramp; variance = the pixel variance), binned
    by the 2x2 mean into ``bins`` equal-count bins, robust variance (MAD) per bin, least squares over the bins.
    Blocks within ``margin`` whole-image noise levels of the image's minimum or maximum are left out (clipping makes
    their noise one-sided). ``ratio`` is the fitted variance at the 90th over the 10th percentile of the mean.
    """
    from dpe_monai.baselines.classical import _noise_sigma

    r = (img[:-1, :-1] - img[:-1, 1:] - img[1:, :-1] + img[1:, 1:]) / 2
    m = (img[:-1, :-1] + img[:-1, 1:] + img[1:, :-1] + img[1:, 1:]) / 4
    s = _noise_sigma(img)
    keep = (m > img.min() + margin * s) & (m < img.max() - margin * s)
    if keep.sum() < 50 * bins:
        return 0.0, s * s, 1.0
    r, m = r[keep], m[keep]
    order = np.argsort(m)
    chunks = np.array_split(order, bins)
    mk = np.array([np.median(m[c]) for c in chunks])
    vk = np.array([(1.4826 * np.median(np.abs(r[c]))) ** 2 for c in chunks])
    gain, var0 = np.linalg.lstsq(np.stack([mk, np.ones_like(mk)], 1), vk, rcond=None)[0]
    if var0 < 0:  # through the origin
        var0, gain = 0.0, float((mk * vk).sum() / (mk * mk).sum())
    if gain < 0:  # flat
        gain, var0 = 0.0, float(vk.mean())
    lo, hi = np.quantile(m, [0.1, 0.9])
    ratio = (gain * hi + var0) / max(gain * lo + var0, 1e-12)
    return float(gain), float(var0), float(ratio)


def vst_nlm(img: np.ndarray, gain: float, var0: float) -> np.ndarray:
    """NLM at unit noise in the generalised Anscombe domain of ``var = gain * v + var0``; asymptotically unbiased
    inverse. Written as differences from the transform at 0, so ``gain -> 0`` is plain NLM at ``sqrt(var0)``."""
    c = 0.375 * gain * gain + var0
    if c <= 0:
        return img
    sc = np.sqrt(c)
    g = 2 * img / (np.sqrt(np.clip(gain * img + c, 0, None)) + sc)
    d = restoration.denoise_nl_means(g, h=0.8, sigma=1.0, patch_size=5, patch_distance=6, fast_mode=True)
    return np.clip(d * sc + gain * d * d / 4 + gain / 4, 0.0, 1.0)


def window(den: np.ndarray, inp: np.ndarray, clip_aware: bool = False) -> np.ndarray:
    """The contract's percentile window of ``den``; with ``clip_aware`` a saturated input keeps its maximum."""
    from scipy.ndimage import convolve

    from dpe_monai.contract import UPPER, body_percentiles

    lo, hi = body_percentiles(den)
    if clip_aware:
        top, bottom = inp.max(), inp.min()
        at_top = (inp == top) & (inp > bottom)
        kernel = np.ones((3, 3))
        share = convolve(at_top.astype(float), kernel, mode="constant") / convolve(
            np.ones_like(inp), kernel, mode="constant"
        )
        frequent = at_top.sum() >= (1 - UPPER / 100) * max((inp > bottom).sum(), 1)
        clustered = share[at_top].mean() >= 0.4 if at_top.any() else False
        if frequent and clustered:
            hi = float(top)
    return np.clip((den - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


def score(img: np.ndarray, clean: np.ndarray) -> dict[str, Any]:
    """Every method's PSNR against ``clean`` and the NLF of ``img`` (both grey ``(H, W)`` in [0, 1])."""
    from dpe_monai.baselines.classical import nlm, percentile_stretch

    gain, var0, ratio = noise_level_function(img)
    n, v = nlm(img), vst_nlm(img, gain, var0)
    out = {
        "nlm_window": window(n, img),
        "stretch_nlm": nlm(percentile_stretch(img)),
        "vst_nlm": v,
        "vst_nlm_window": window(v, img),
        "vst_nlm_window_clip": window(v, img, clip_aware=True),
    }
    out["auto"] = out["vst_nlm_window_clip"] if ratio >= MIN_RATIO else out["nlm_window"]
    # the next-step idea: no re-window when the denoised image already spans its range (noise, no exposure loss)
    from dpe_monai.contract import body_percentiles

    full_n, full_v = np.subtract(*body_percentiles(n)[::-1]) >= FULL, np.subtract(*body_percentiles(v)[::-1]) >= FULL
    out["nlm_full"] = n if full_n else out["nlm_window"]
    out["auto_full"] = (v if full_v else out["vst_nlm_window_clip"]) if ratio >= MIN_RATIO else out["nlm_full"]
    nlf = {"gain_8bit": gain * 255, "var0_8bit": var0 * 255**2, "ratio": ratio}
    return {"psnr": {k: _psnr(o, clean) for k, o in out.items()}, "nlf": nlf}


def image_sets(args: argparse.Namespace) -> dict[str, list[dict]]:
    """``{"tumour_CT", "tumour_MR", "collection_radiology"}`` items (absolute image paths)."""
    from pathlib import Path

    from dpe_monai.data import ensure_collection
    from dpe_monai.evaluators import load_datalist
    from dpe_monai.evaluators.datasets import tumour_datalist

    tdl = tumour_datalist(Path(args.work_dir).resolve() / "data_fold0", test_fold=0)
    tumour = load_datalist(tdl, "training") + load_datalist(tdl, "test")
    col = load_datalist(args.datalist or ensure_collection(args.dataset_dir), "test")
    return {
        "tumour_CT": [it for it in tumour if it.get("modality") == "CT"][:: args.stride],
        "tumour_MR": [it for it in tumour if it.get("modality") == "MR"][:: args.stride],
        "collection_radiology": [it for it in col if it.get("modality_group") == "radiology"][
            :: max(1, args.stride // 2)
        ],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from dpe_monai.evaluators.common import degrade, item_id, load_clean

    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for set_name, items in image_sets(args).items():
        for it in items:
            clean = load_clean(it)["image"]
            for fam in args.families:
                mode, order = FAMILIES[fam]
                kw = {"noise_order": order, "brightness_threshold": None} if mode == "paper" else {}
                lq, _ = degrade(clean, args.seed, item_id(it), mode=mode, **kw)
                res = score(lq[0].numpy().astype(np.float64), clean[0].numpy().astype(np.float64))
                rows.append({"set": set_name, "family": fam, "id": item_id(it), **res})
    cells: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        cells[(r["set"], r["family"])].append(r)
    summary = {
        f"{s}/{f}": {
            "n": len(rs),
            "psnr": {m: float(np.mean([r["psnr"][m] for r in rs])) for m in METHODS},
            "nlf_ratio_p10_p50_p90": [float(q) for q in np.percentile([r["nlf"]["ratio"] for r in rs], [10, 50, 90])],
            "share_stabilised": float(np.mean([r["nlf"]["ratio"] >= MIN_RATIO for r in rs])),
        }
        for (s, f), rs in sorted(cells.items())
    }
    payload = {
        "benchmark": "noise_model (candidate probe, not shipped)",
        "command": "python -m benchmarks.noise_model " + shlex.join(args.argv),
        "machine": machine_info(),
        "settings": {"seed": args.seed, "stride": args.stride, "families": list(args.families)},
        "summary": summary,
        "per_image": rows,
        "wall_seconds": time.perf_counter() - start,
    }
    write_json(args.output, payload)
    print("| set / degradation | n | " + " | ".join(METHODS) + " | NLF ratio p10 / p50 / p90 | stabilised |")
    print("|---" * (len(METHODS) + 4) + "|")
    for key, cell in summary.items():
        ps = " | ".join(f"{cell['psnr'][m]:.2f}" for m in METHODS)
        q = " / ".join(f"{v:.2f}" for v in cell["nlf_ratio_p10_p50_p90"])
        print(f"| {key} | {cell['n']} | {ps} | {q} | {cell['share_stabilised']:.0%} |")
    return payload


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset_dir", default=str(DEFAULT_DATASET), help="packaged collection (built if missing)")
    p.add_argument("--datalist", default=None, help="a collection datalist JSON (overrides --dataset_dir)")
    p.add_argument("--work_dir", default="outputs/benchmarks/noise_model", help="where the tumour slices are written")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    p.add_argument("--stride", type=int, default=6, help="every N-th tumour slice (N/2-th collection image)")
    p.add_argument("--seed", type=int, default=0, help="degradation seed")
    p.add_argument("--output", default=str(RESULTS / "candidates" / "noise_model.json"))
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point."""
    return run(parse_cli(parser(), argv))


if __name__ == "__main__":
    main()
