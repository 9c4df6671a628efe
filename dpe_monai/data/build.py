"""Build the packaged collection (and optionally a user's folders) into a MONAI datalist plus 2-D image files.

Usage::

    python -m dpe_monai.data.build --output /tmp/dpe_collection --card docs/DATA_CARD.md
    python -m dpe_monai.data.build --output /tmp/quick --quick              # a few items per source and split
    python -m dpe_monai.data.build --output out --input my_scans/ --group radiology --no-packaged

Everything runs offline from installed packages, except the pyradiomics 3.0.1 source archive: it is read from
``~/.cache/dpe-monai/downloads`` and fetched with ``pip download`` when missing (the source is skipped with a
warning when that fails, or when ``$DPE_MONAI_NO_DOWNLOAD`` is set).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from dpe_monai.data.datacard import render_data_card, summarize
from dpe_monai.data.items import TILE, TILE_ABOVE, expand, write_item
from dpe_monai.data.sources import GROUPS, SOURCES, Subject
from dpe_monai.data.splits import HASH_FRACTIONS, SPLITS, assign_split, check_disjoint
from dpe_monai.io import BadFileWarning, describe_error

__all__ = ["QUICK_ITEMS", "build_collection", "main"]

logger = logging.getLogger(__name__)

#: items per source and split in ``--quick`` builds.
QUICK_ITEMS = 4
DATALIST = "datalist.json"
MARKER = ".dpe-monai-collection"

POLICIES = (
    "2-D items only. Volumes are cut along all three axes (RAS+ for NIfTI: sagittal, coronal, axial, rotated so "
    "superior/anterior is up); multi-frame DICOM along frames only; the pyradiomics patients (brought to RAS+) "
    "along axial planes only, of at least 256 pixels on both sides. Planes thinner than 32 pixels (24 for the 3-D "
    "nuclei) are skipped.",
    "Uninformative planes/tiles are dropped: a pixel is foreground above min + 0.1 x (p99.5 - min) of its subject; "
    "planes need >= 15 % foreground (10 % for DICOM frames/tiles, 5 % for the sparse 3-D nuclei) and a standard "
    "deviation >= 2 % of the subject's range (drops saturated or blank regions).",
    f"2-D images larger than 1.5 x 512^2 pixels are cut into {TILE}^2 tiles (edge tiles flush with the border); "
    "`crop` = [x0, y0, x1, y1] in the original image. Smaller images are kept whole.",
    "Bit depth: 8-bit sources are stored unchanged as 8-bit PNG. All other sources (12-16-bit DICOM after rescale "
    "slope/intercept, int16 NIfTI, uint16 TIFF, float) are stored as 16-bit PNG by one linear map of the subject's "
    "[min, max] onto [0, 65535] (no clipping; `source_range` keeps the map). 16-bit RGB would go to TIFF.",
    "DICOM: MONOCHROME1 is inverted over the BitsStored range (bright = dense everywhere); palette colour is mapped "
    "to RGB (8-bit when the table holds 8-bit values scaled to 16 bits); YBR is converted to RGB by pydicom.",
    "Splits are by subject (a person, specimen or original image), never by slice, tile or patch. Sources with few "
    "subjects have a fixed curated split with >= 1 whole test subject per modality group; the 199 PH2 images (and "
    f"user folders) are split by a seeded SHA-256 hash of the subject id (validation {HASH_FRACTIONS[0]:.0%}, "
    f"test {HASH_FRACTIONS[1]:.0%}).",
    "The MNI152 template is one subject and stays whole in training; downstream segmentation evaluations that need "
    "held-out MNI data must define their own protocol on it.",
    "Labels: MNI tissue classes (0 background, 1 CSF, 2 GM, 3 WM; CSF = brain mask minus GM/WM by argmax of "
    "(1 - GM - WM, GM, WM)) and the brain mask; stardist nucleus instances with per-item `boxes`; the liver lesion "
    "drawn in overlay 0x6000 of the Siemens MR (filled contour; burned-in text and glyphs outside the body dropped); "
    "the pyradiomics tumour masks (binary, on the axial slices the tumour touches, with per-item `boxes`). "
    "Boxes are [x0, y0, x1, y1], half-open, in pixels of the stored item.",
    "Dermoscopy patches are 32x32 PH2 crops (a few are narrower); patch n belongs to original image n // 10 (the "
    "package's generator); "
    "byte-identical copies are kept once. Fundus photographs are put in the dermatology group (colour clinical "
    "photography), and flagged `modality: fundus`.",
    "stardist's 3-D nuclei are synthetic (per stardist) and flagged `synthetic: true`; everything else is acquired.",
    "Limitations: few distinct subjects outside dermoscopy (one MNI template, a dozen DICOM subjects, four "
    "pyradiomics patients); acquired "
    "microscopy for training is two images (IHC, H&E) beside the synthetic nuclei, so training should balance "
    "groups; dermoscopy items are 32x32 and smaller than a 128^2 training crop; licences are as documented by the "
    "packages and their sources (CQ500 is non-commercial).",
)


def _prepare(out: Path) -> None:
    """Create ``out``; clear the ``images``/``labels`` folders of a previous (possibly interrupted) build only."""
    out.mkdir(parents=True, exist_ok=True)
    ours = (out / DATALIST).exists() or (out / MARKER).exists()
    for sub in ("images", "labels"):
        if (out / sub).exists():
            if not ours:
                raise FileExistsError(f"{out / sub} exists and {out} holds no previous collection; choose another dir")
            shutil.rmtree(out / sub)
    (out / DATALIST).unlink(missing_ok=True)
    (out / MARKER).write_text("folder written by dpe_monai.data.build; images/ and labels/ are rebuilt\n")


def _skip(skipped: list[tuple[str, str]], name: str, reason: str) -> None:
    skipped.append((name, reason))
    warnings.warn(f"skipping {name}: {reason}", BadFileWarning, stacklevel=3)


def _iter_subjects(sources: Sequence[str], skipped: list[tuple[str, str]]) -> Iterable[Subject]:
    for key in sources:
        try:
            subjects = sorted(SOURCES[key].subjects(), key=lambda s: s.subject)
        except Exception as exc:  # a missing package or unreadable package data: skip the source, keep going
            _skip(skipped, f"source {key}", f"unavailable ({describe_error(exc)})")
            continue
        yield from subjects


def build_collection(
    output_dir: str | Path,
    *,
    seed: int = 0,
    max_items_per_source: int | None = None,
    verbose: bool = True,
    sources: Sequence[str] | None = None,
    user_folders: Sequence[str | Path] = (),
    user_group: str = "radiology",
    card_path: str | Path | None = None,
    command: str = "python -m dpe_monai.data.build --output DIR",
) -> dict:
    """Assemble the packaged collection (plus any user folders) into ``output_dir``.

    Args:
        output_dir: destination; gets ``datalist.json``, ``summary.json``, ``images/`` and ``labels/``.
        seed: seed of the hash split (curated splits do not depend on it).
        max_items_per_source: cap on items per source *and split* (``--quick`` uses :data:`QUICK_ITEMS`), spread
            evenly over each subject's planes/tiles; ``None`` keeps everything.
        verbose: log progress at INFO level (and print a one-line summary).
        sources: packaged source keys to include (default: all of :data:`~dpe_monai.data.sources.SOURCES`).
        user_folders: folders of the user's images, scanned with :func:`~dpe_monai.data.folders.scan_folder`.
        user_group: modality group of the user's images.
        card_path: also write the markdown data card there.
        command: command line recorded in the data card.

    Returns:
        ``{"datalist": path, "output_dir", "counts", "num_items", "num_skipped", "skipped", "seconds"}``; ``counts``
        is :func:`~dpe_monai.data.datacard.summarize` of the datalist.
    """
    start = time.perf_counter()
    out = Path(output_dir)
    _prepare(out)
    keys = list(SOURCES) if sources is None else list(sources)
    unknown = [k for k in keys if k not in SOURCES]
    if unknown:
        raise ValueError(f"unknown sources {unknown}; choose from {list(SOURCES)}")
    skipped: list[tuple[str, str]] = []
    subjects: list[Subject] = list(_iter_subjects(keys, skipped))
    if user_folders:
        from dpe_monai.data.folders import user_folder_subjects

        for folder in user_folders:
            found, bad = user_folder_subjects(folder, user_group)
            subjects += found
            skipped += bad
    datalist: dict[str, list[dict]] = {split: [] for split in SPLITS}
    taken: Counter = Counter()
    for subject in subjects:
        split = assign_split(subject.subject, subject.split, seed)
        room = None if max_items_per_source is None else max_items_per_source - taken[(subject.source, split)]
        if room is not None and room <= 0:
            continue
        try:
            images = subject.load()
        except Exception as exc:
            _skip(skipped, subject.subject, f"cannot be read ({describe_error(exc)})")
            continue
        before = sum(len(v) for v in datalist.values())
        for image in images:
            for fields, plane, labels in expand(image, room):
                datalist[split].append(write_item(out, subject, image, fields, plane, labels))
                taken[(subject.source, split)] += 1
                room = None if room is None else room - 1
            if room is not None and room <= 0:
                break
        if sum(len(v) for v in datalist.values()) == before:
            _skip(skipped, subject.subject, "no informative 2-D plane or tile (too small, blank or uniform)")
        if verbose:
            logger.info("%-45s %-10s %5d items so far", subject.subject, split, sum(len(v) for v in datalist.values()))
    leaks = check_disjoint(datalist)
    if leaks:  # cannot happen by construction; guard the promise anyway
        raise RuntimeError(f"subjects in more than one split: {leaks}")
    counts = summarize(datalist)
    document = {
        "name": "dpe-monai packaged collection",
        "description": "2-D radiology, dermatology and microscopy images from offline-installable packages",
        "seed": seed,
        "quick": max_items_per_source is not None,
        "tile": TILE,
        "tile_above_pixels": TILE_ABOVE,
        "sources": {k: {"title": SOURCES[k].title, "licence": SOURCES[k].licence} for k in keys},
        **datalist,
    }
    datalist_path = out / DATALIST
    (out / "summary.json").write_text(json.dumps({"counts": counts, "skipped": skipped}, indent=1) + "\n")
    if card_path is not None:
        card = render_data_card(counts, SOURCES, seed=seed, command=command, skipped=skipped, policies=POLICIES)
        Path(card_path).parent.mkdir(parents=True, exist_ok=True)
        Path(card_path).write_text(card)
    tmp = out / f"{DATALIST}.tmp"  # written last and atomically: its presence means a complete build
    tmp.write_text(json.dumps(document, indent=1) + "\n")
    tmp.replace(datalist_path)
    seconds = time.perf_counter() - start
    result = {
        "datalist": str(datalist_path),
        "output_dir": str(out),
        "counts": counts,
        "num_items": counts["total"],
        "num_skipped": len(skipped),
        "skipped": skipped,
        "seconds": round(seconds, 1),
    }
    if verbose:
        per_split = ", ".join(f"{s} {len(datalist[s])}" for s in SPLITS)
        print(f"collection: {counts['total']} items ({per_split}), {len(skipped)} skipped, {seconds:.1f} s -> {out}")
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line entry: ``python -m dpe_monai.data.build --output DIR [--card PATH] [--seed N] [--quick]``.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 when nothing could be built.
    """
    parser = argparse.ArgumentParser(prog="dpe-monai data build", description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True, help="destination folder of the collection")
    parser.add_argument("--card", default=None, help="also write the markdown data card to this path")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hash split (default 0)")
    parser.add_argument("--quick", action="store_true", help=f"tiny CI build: {QUICK_ITEMS} items per source and split")
    parser.add_argument("--max-items", type=int, default=None, help="cap on items per source and split")
    parser.add_argument("--source", action="append", choices=sorted(SOURCES), help="packaged source (repeatable)")
    parser.add_argument("--input", action="append", default=[], help="a folder of your own images (repeatable)")
    parser.add_argument("--group", default="radiology", choices=GROUPS, help="modality group of --input images")
    parser.add_argument("--no-packaged", action="store_true", help="only the --input folders")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    cap = QUICK_ITEMS if args.quick else args.max_items
    command = "python -m dpe_monai.data.build --output DIR" + (" --quick" if args.quick else "")
    command += f" --seed {args.seed}" if args.seed else ""
    result = build_collection(
        args.output,
        seed=args.seed,
        max_items_per_source=cap,
        verbose=not args.quiet,
        sources=[] if args.no_packaged else args.source,
        user_folders=args.input,
        user_group=args.group,
        card_path=args.card,
        command=command + (" --card PATH" if args.card else ""),
    )
    return 0 if result["num_items"] > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
