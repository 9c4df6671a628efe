"""Probe: the colour path's NLM strength on training-side colour images, per source (a candidate, nothing shipped).

    python -m benchmarks.colour_nlm_strength

Since bundle 0.15.0 a colour image is denoised by the network's non-local-means layer at the scan path's strength
(``h = nlm_h_factor * sigma``, 1.2) and then tone-mapped. ``benchmarks.colour_conventions`` shows that strength
smoothing textured H&E (its 512-px tile scores below the tone map alone). This probe measures, on colour images *no
benchmark scores* (the collection's training split and the colour fit tiles of
:mod:`dpe_monai.data.colour_fit_data`), how the shipped network's colour output moves with the strength:

1. per source (the items' ``source``, plus ``modality`` for the collection, e.g. PH2 dermoscopy, the fundus
   photographs, each H&E package, the photographs), up to ``--per_source`` evenly spaced images, centre-cropped to
   ``--max_side`` as the quality benchmark loads them;
2. each degraded by Algorithm 1 (paper mode, the luminance gate on) in both noise orders, seeded per image;
3. the shipped network (``inference.json``, ``model.pt``, fp32) run with its NLM layer's ``h_factor`` set to each of
   ``--h_factors``; PSNR against the clean image, mean per source, then the mean over sources (every source alike).

The result (``benchmarks/results/candidates/colour_nlm_strength.json``) reports each source's curve, each order's
best strength and the one that maximises the mean over sources and orders (also over the sources with at least
``--min_images`` scored images only: several sources hold one image). It changes no network; shipping a colour-only
strength would be a new network option and a rerun of every colour benchmark.
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

from benchmarks.common import DEFAULT_DATASET, RESULTS, build_methods, machine_info, parse_cli, write_json


def _items(datalist: Path, per_source: int) -> dict[str, list[dict[str, Any]]]:
    """Colour items by source: the collection's training split and the colour fit tiles, evenly thinned."""
    import json

    from dpe_monai.data.colour_fit_data import colour_fit_items

    data = json.loads(datalist.read_text())
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in data.get("training", []):
        if item.get("channels") == 3:
            name = f"{item.get('source')}:{item.get('modality')}"
            groups[name].append({**item, "image": str((datalist.parent / item["image"]).resolve())})
    for item in colour_fit_items(8, download=False):
        groups[str(item["source"])].append(dict(item))
    out = {}
    for name, items in sorted(groups.items()):
        step = max(1.0, len(items) / per_source)
        out[name] = [items[int(i * step)] for i in range(min(per_source, len(items)))]
    return out


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * np.log10(max(float(torch.mean((a.double() - b.double()) ** 2)), 1e-10)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from dpe_monai.data import ensure_collection
    from dpe_monai.evaluators.common import degrade, enhance, for_item, load_clean

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    methods, info = build_methods(["dpe"], precision="fp32")
    dpe = methods["dpe"]
    layer = dpe.network.prefilter
    shipped = float(layer.h_factor)
    groups = _items(Path(ensure_collection(args.dataset_dir)), args.per_source)
    scores: dict[str, dict[str, dict[str, list[float]]]] = {}
    counts: dict[str, dict[str, int]] = {}
    for name, items in groups.items():
        per = {o: {str(h): [] for h in args.h_factors} for o in ("before", "after")}
        for item in items:
            data = load_clean(item, max_side=args.max_side)
            if data["relative"]:  # a grey-looking image takes the scan path: not this probe's question
                continue
            ident = "/".join(Path(item["image"]).parts[-3:])
            for order in ("before", "after"):
                lq, params = degrade(data["image"], args.seed, ident, mode="paper", noise_order=order)
                if not params["applied"]:
                    continue
                for h in args.h_factors:
                    layer.h_factor = float(h)
                    y = enhance(for_item(dpe, False), lq, f"dpe on {ident}")
                    per[order][str(h)].append(_psnr(y, data["image"]))
        layer.h_factor = shipped
        counts[name] = {o: len(per[o][str(args.h_factors[0])]) for o in per}  # scored (the gate skips dark ones)
        scores[name] = {o: {h: float(np.mean(v)) for h, v in c.items() if v} for o, c in per.items()}
        print(
            name, counts[name], {o: {h: round(v, 2) for h, v in c.items()} for o, c in scores[name].items()}, flush=True
        )
    summary: dict[str, Any] = {}
    for order in ("before", "after"):
        means = {
            str(h): float(np.mean([s[order][str(h)] for s in scores.values() if str(h) in s[order]]))
            for h in args.h_factors
        }
        big = [k for k in scores if counts[k][order] >= args.min_images]
        means_big = {str(h): float(np.mean([scores[k][order][str(h)] for k in big])) for h in args.h_factors}
        summary[order] = {
            "mean_over_sources": means,
            "best": max(means, key=means.get),
            f"mean_over_sources_with_{args.min_images}_or_more": means_big,
            f"best_with_{args.min_images}_or_more": max(means_big, key=means_big.get),
            f"sources_with_{args.min_images}_or_more": big,
        }
    both = {
        h: (summary["before"]["mean_over_sources"][h] + summary["after"]["mean_over_sources"][h]) / 2
        for h in summary["before"]["mean_over_sources"]
    }
    summary["both_orders"] = {"mean_over_sources": both, "best": max(both, key=both.get), "shipped": shipped}
    payload = {
        "benchmark": "colour_nlm_strength",
        "command": "python -m benchmarks.colour_nlm_strength " + shlex.join(args.argv),
        "machine": machine_info(),
        "methods": info,
        "settings": {k: v for k, v in vars(args).items() if k != "argv"},
        "images_per_source": counts,
        "per_source_psnr_db": scores,
        "summary": summary,
        "seconds": time.perf_counter() - start,
    }
    write_json(args.output, payload)
    print({k: v["best"] for k, v in summary.items()}, flush=True)
    return payload


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_dir", default=str(DEFAULT_DATASET), help="the packaged collection (built if missing)")
    p.add_argument("--per_source", type=int, default=8)
    p.add_argument("--max_side", type=int, default=512)
    p.add_argument("--h_factors", type=float, nargs="+", default=[0.4, 0.6, 0.8, 1.0, 1.2])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min_images", type=int, default=5, help="the second summary: sources with this many scored")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output", default=str(RESULTS / "candidates" / "colour_nlm_strength.json"))
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point."""
    return run(parse_cli(parser(), argv))


if __name__ == "__main__":
    main()
