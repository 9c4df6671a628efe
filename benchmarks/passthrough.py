"""Do-no-harm benchmark: good images given as they are must come back nearly unchanged.

    python -m benchmarks.passthrough

Two sets, both *clean* (never degraded):

1. the packaged collection's test split (whole held-out subjects), loaded as the evaluation protocol loads it
   (intensity contract, RGB, centre crop to 1024), enhanced by each network: PSNR(output, input) per group, the mean
   of the group means and the pooled mean over images;
2. real clinical DICOMs from pydicom-data, through the CLI's own path (``enhance_native``: the contract in and
   out, in the scan's units): PSNR(output, input) in the contract's [0, 1] and whether the output stays inside the
   scan's own range;
3. 8-bit grey exports: the test split's percentile-windowed grey scans rounded to 8 bits, as a viewer's PNG export
   would store them (:class:`~dpe_monai.transforms.EightBitExport`), enhanced as the CLI treats such a file:
   the 0..255 window, and the scan route because the image is grey (:func:`~dpe_monai.contract.is_scan`).
4. 8-bit grey scans at their source's own scale: MNI152's T1 (nilearn, uint8, black background, brightest tissue
   at about 235, as the segmentation benchmark stores it), every ``--mni_step``-th axial slice with at least 15 %
   brain, enhanced as the CLI treats such a file (as in 3). One subject: a check that a scan which does not fill
   0..255 is not brightened (bundle >= 0.7.0's ``keep_scale``), not a headline.

Writes ``benchmarks/results/passthrough.json``. The issue's bar: mean PSNR(output, input) >= 35 dB.
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch

from benchmarks.common import DEFAULT_DATASET, RESULTS, build_methods, json_arg, machine_info, parse_cli, write_json

logger = logging.getLogger("benchmarks.passthrough")
BAR_DB = 35.0  # the bar for a good image given as it is
DICOMS = ("CT_small.dcm", "MR_small.dcm", "693_UNCR.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm", "MR2_UNCR.dcm")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 100.0 if mse <= 1e-10 else 10 * math.log10(1.0 / mse)  # identical to float precision: capped at 100 dB


def _summary(rows: list[dict]) -> dict[str, Any]:
    groups: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        groups[r["group"]].append(r["psnr"])
    from dpe_monai.evaluators.quality import MIN_GROUP_N

    means = {g: float(np.mean(v)) for g, v in sorted(groups.items())}
    headline = [g for g in means if len(groups[g]) >= MIN_GROUP_N] or list(means)
    return {
        # the mean counts an unchanged image as 100 dB; the median and the count below the bar say how many changed
        "groups": {
            g: {
                "mean": means[g],
                "median": float(np.median(v)),
                "min": float(np.min(v)),
                "n": len(v),
                "below_bar": int(np.sum(np.asarray(v) < BAR_DB)),
            }
            for g, v in sorted(groups.items())
        },
        "average": float(np.mean([means[g] for g in headline])) if means else math.nan,
        "average_of": headline,
        "pooled": float(np.mean([r["psnr"] for r in rows])) if rows else math.nan,
    }


def _mni_slices(step: int) -> list[tuple[str, torch.Tensor]]:
    """MNI152 T1 axial slices (display orientation, stored uint8 values / 255, 3 channels) with >= 15 % brain."""
    from dpe_monai.data.sources import mni152

    t1 = next(mni152()).load()[0].array
    keep = [z for z in range(t1.shape[2]) if (t1[:, :, z] > 0).mean() >= 0.15][::step]
    out = []
    for z in keep:
        plane = np.ascontiguousarray(np.rot90(t1[:, :, z])).astype(np.uint8).astype(np.float32) / 255.0
        out.append((f"mni152_axial{z:03d}", torch.from_numpy(plane)[None].repeat(3, 1, 1)))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Score every network on the clean test split and on the real DICOMs; write the JSON."""
    from pydicom.data import get_testdata_file

    from dpe_monai.contract import is_relative, is_scan, to_unit
    from dpe_monai.data import ensure_collection
    from dpe_monai.evaluators.common import enhance, for_item, item_id, load_clean, load_datalist
    from dpe_monai.inference.files import enhance_native, native_window
    from dpe_monai.io import discover, read_image
    from dpe_monai.transforms import EightBitExport, is_grey, is_near_grey

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    methods, info = build_methods(args.methods, args.dpe_checkpoint, json_arg(args.dpe_network), precision="fp32")
    items = load_datalist(args.datalist or ensure_collection(args.dataset_dir), "test")
    if args.per_group:
        from benchmarks.quality import evenly_per_group

        items = evenly_per_group(items, args.per_group)
    clean = [(item, load_clean(item, max_side=1024)) for item in items]
    payload: dict[str, Any] = {
        "benchmark": "passthrough",
        "command": "python -m benchmarks.passthrough " + shlex.join(args.argv),
        "machine": machine_info(),
        "methods": info,
        "threshold_db": BAR_DB,
        "per_group": args.per_group,
        "collection": {},
        "dicoms": {},
        "grey_exports": {},
        "source_scale": {},
    }
    exports = [(i, EightBitExport()(d["image"])) for i, d in clean if is_relative(d["rule"]) and is_grey(d["image"])]
    mni = _mni_slices(args.mni_step)
    for name, fn in methods.items():
        rows = []
        for item, loaded in clean:  # with the route flag the CLI and the quality protocol pass
            img = loaded["image"]
            out = enhance(for_item(fn, loaded["relative"]), img)
            rows.append({"id": item_id(item), "group": str(item.get("modality_group", "all")), "psnr": _psnr(out, img)})
        payload["collection"][name] = {"summary": _summary(rows), "per_image": rows}
        rows = []
        for item, img in exports:
            out = enhance(for_item(fn, is_scan("container", is_near_grey(img))), img)  # as the CLI routes it
            rows.append({"id": item_id(item), "group": str(item.get("modality_group", "all")), "psnr": _psnr(out, img)})
        payload["grey_exports"][name] = {"summary": _summary(rows), "per_image": rows}
        rows = []
        for sid, img in mni:
            out = enhance(for_item(fn, is_scan("container", True)), img)
            rows.append({"id": sid, "group": "radiology (MNI152, one subject)", "psnr": _psnr(out, img)})
        payload["source_scale"][name] = {"summary": _summary(rows), "per_image": rows}
        dic = []
        for fname in DICOMS:
            path = get_testdata_file(fname, download=False)
            if path is None:
                continue
            jobs, _ = discover([path])
            image = read_image(jobs[0].paths, jobs[0].kind)
            out = enhance_native(image, fn)
            lo, hi, rule = native_window(image)
            dic.append(
                {
                    "file": fname,
                    "window": [lo, hi, rule],
                    "psnr": _psnr(to_unit(out, lo, hi), to_unit(image.array, lo, hi)),
                    "inside_own_range": bool(out.min() >= image.array.min() and out.max() <= image.array.max()),
                }
            )
        payload["dicoms"][name] = dic
        logger.info("%s: collection %s", name, payload["collection"][name]["summary"])
    payload["wall_seconds"] = time.perf_counter() - start
    write_json(args.output, payload)
    return payload


def parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_dir", default=str(DEFAULT_DATASET))
    p.add_argument("--datalist", default=None, help="any MONAI datalist JSON (overrides --dataset_dir)")
    p.add_argument("--methods", nargs="+", default=["dpe_paper", "dpe"])
    p.add_argument("--dpe_checkpoint", default=None, help="default: bundles/dpe_enhancement/models/model.pt")
    p.add_argument("--dpe_network", default=None, help="network_def JSON (default: inference.json's)")
    p.add_argument("--per_group", type=int, default=None, help="N evenly spaced items per group")
    p.add_argument("--mni_step", type=int, default=8, help="every N-th MNI152 axial slice (set 4)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--output", default=str(RESULTS / "passthrough.json"))
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point."""
    return run(parse_cli(parser(), argv))


if __name__ == "__main__":
    main()
