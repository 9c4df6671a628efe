"""Downstream datalists built from the packaged sources, with held-out regions that never train the task model.

* :func:`mni_slab_datalist`: axial slices of the MNI ICBM152 T1 with CSF/GM/WM/background labels; a contiguous slab
  of slices is held out for testing, with ``gap`` slices dropped on each side so no neighbour of a test slice trains.
* :func:`mni_lesion_datalist`: the same slab split with **synthetic** T1-hypointense white-matter lesions pasted into
  the slices; their boxes are exact (the pasted masks).
* :func:`stardist_crops_datalist`: the stardist DSB2018 fluorescence image (real, 125 annotated nuclei) cut into
  crops; a vertical strip is held out for testing (``gap`` pixels dropped between the two regions).
* :func:`tumour_datalist`: the real tumour masks of the 4 ``pyradiomics`` patients (2 brain post-contrast MR, 2 chest
  CT); every axial slice, split into two folds of whole patients (one MR and one CT each).

Files are written as PNG (uint8) under ``out_dir`` with a MONAI datalist ``datalist.json`` (``training`` / ``test``).
Boxes follow the collection's convention ``[x0, y0, x1, y1]`` (x = column, half-open), which is the order of the
spatial axes of MONAI-loaded 2-D images ``(C, W, H)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = [
    "TEST_SOURCES",
    "TUMOUR_FOLDS",
    "boxes_from_instances",
    "mni_lesion_datalist",
    "mni_slab_datalist",
    "stardist_crops_datalist",
    "tumour_datalist",
]

TISSUE_CLASSES = ["background", "CSF", "GM", "WM"]
WM_LABEL = TISSUE_CLASSES.index("WM")


def boxes_from_instances(instances: np.ndarray, min_area: int = 1) -> list[list[int]]:
    """``[x0, y0, x1, y1]`` (x = column, half-open) of every labelled region of a ``(rows, cols)`` array."""
    from skimage.measure import regionprops

    boxes = []
    for region in regionprops(instances.astype(np.int64)):
        if region.area >= min_area:
            r0, c0, r1, c1 = region.bbox
            boxes.append([int(c0), int(r0), int(c1), int(r1)])
    return boxes


def _save(path: Path, arr: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return str(path)


def _mni_axial(min_brain: float) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Axial slice indices with at least ``min_brain`` brain fraction, the T1 volume and the tissue labels."""
    from dpe_monai.data.sources import mni152

    image = next(mni152()).load()[0]
    t1, tissue = image.array, image.labels["label"]
    keep = [z for z in range(t1.shape[2]) if (tissue[:, :, z] > 0).mean() >= min_brain]
    return keep, t1, tissue


def _slab_split(indices: list[int], n_total: int, test_slab: tuple[float, float], gap: int) -> dict[str, list[int]]:
    lo, hi = int(round(test_slab[0] * n_total)), int(round(test_slab[1] * n_total))
    test = [z for z in indices if lo <= z < hi]
    train = [z for z in indices if z < lo - gap or z >= hi + gap]
    return {"training": train, "test": test}


def _plane(vol: np.ndarray, z: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(vol[:, :, z]))  # the collection's display orientation of RAS volumes


def mni_slab_datalist(
    out_dir: str | os.PathLike,
    test_slab: tuple[float, float] = (0.5, 0.6),
    gap: int = 3,
    min_brain: float = 0.15,
    step: int = 1,
) -> str:
    """Write MNI axial slices + tissue labels with a held-out slab; returns the datalist path.

    Args:
        out_dir: output folder.
        test_slab: the held-out slab as fractions of the axial extent (189 slices at 1 mm).
        gap: slices dropped on each side of the slab.
        min_brain: minimum brain fraction of a kept slice.
        step: keep every ``step``-th training slice (CI runs).
    """
    out = Path(out_dir).resolve()  # absolute: the datalist resolves relative entries against its own folder
    keep, t1, tissue = _mni_axial(min_brain)
    split = _slab_split(keep, t1.shape[2], test_slab, gap)
    split["training"] = split["training"][::step]
    lists: dict[str, list[dict]] = {}
    for name, zs in split.items():
        lists[name] = [
            {
                "image": _save(out / "images" / f"mni_axial{z:03d}.png", _plane(t1, z).astype(np.uint8)),
                "label": _save(out / "labels" / f"mni_axial{z:03d}_label.png", _plane(tissue, z).astype(np.uint8)),
                "slice_index": z,
                "orientation": "axial",
                "modality_group": "radiology",
                "modality": "MR",
                "subject": "mni152:icbm152_2009",
                "label_classes": TISSUE_CLASSES,
            }
            for z in zs
        ]
    info = {"test_slab": list(test_slab), "gap": gap, "min_brain": min_brain, "axis": "axial (RAS axis 2)"}
    path = out / "datalist.json"
    path.write_text(json.dumps({"description": "MNI152 axial tissue slab split", "split": info, **lists}, indent=1))
    return str(path)


def _paste_lesions(
    img: np.ndarray, brain: np.ndarray, wm: np.ndarray, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, list]:
    """Paste up to ``n`` smooth hypointense ellipses (T1 "black holes") centred in white matter ``wm``, at least 70 %
    inside it and fully inside the eroded ``brain``; returns the image and their boxes."""
    out = img.astype(np.float32) / 255.0
    rows, cols = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    inside = ndimage.binary_erosion(brain, iterations=4)
    centres = np.argwhere(ndimage.binary_erosion(wm, iterations=2) & inside)
    boxes: list[list[int]] = []
    taken = np.zeros(img.shape, bool)
    for _ in range(20 * n if len(centres) else 0):
        if len(boxes) == n:
            break
        cr, cc = centres[rng.integers(len(centres))]
        ar, ac = rng.uniform(3, 7), rng.uniform(3, 7)
        ellipse = ((rows - cr) / ar) ** 2 + ((cols - cc) / ac) ** 2 <= 1.0
        if not inside[ellipse].all() or wm[ellipse].mean() < 0.7:
            continue
        if taken[ndimage.binary_dilation(ellipse, iterations=3)].any():
            continue
        soft = ndimage.gaussian_filter(ellipse.astype(np.float32), 1.0)
        out = out * (1.0 - soft * rng.uniform(0.4, 0.6))
        taken |= ellipse
        boxes.extend(boxes_from_instances(ellipse.astype(np.int64)))
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8), boxes


def mni_lesion_datalist(
    out_dir: str | os.PathLike,
    test_slab: tuple[float, float] = (0.5, 0.6),
    gap: int = 3,
    min_brain: float = 0.25,
    max_lesions: int = 3,
    seed: int = 0,
    step: int = 1,
) -> str:
    """Write MNI axial slices with 1..``max_lesions`` synthetic lesions each (exact boxes); returns the datalist path.

    The lesions are **synthetic**: ellipses of 3-7 px semi-axes, blurred (sigma 1 px) and darkened by 40-60 % (like
    T1-hypointense white-matter lesions), centred in white matter, at least 70 % inside it, inside the eroded brain
    mask, without overlap. Same slab split as :func:`mni_slab_datalist`.
    """
    out = Path(out_dir).resolve()  # absolute: the datalist resolves relative entries against its own folder
    keep, t1, tissue = _mni_axial(min_brain)
    split = _slab_split(keep, t1.shape[2], test_slab, gap)
    split["training"] = split["training"][::step]
    rng = np.random.default_rng(seed)
    lists: dict[str, list[dict]] = {}
    for name, zs in split.items():
        lists[name] = []
        for z in zs:
            labels = _plane(tissue, z)
            img, boxes = _paste_lesions(
                _plane(t1, z), labels > 0, labels == WM_LABEL, rng, int(rng.integers(1, max_lesions + 1))
            )
            lists[name].append(
                {
                    "image": _save(out / "images" / f"mni_lesion_axial{z:03d}.png", img),
                    "boxes": boxes,
                    "labels": [0] * len(boxes),
                    "slice_index": z,
                    "modality_group": "radiology",
                    "modality": "MR",
                    "synthetic": True,
                }
            )
    info = {"test_slab": list(test_slab), "gap": gap, "seed": seed, "lesions": "synthetic, see docstring"}
    path = out / "datalist.json"
    path.write_text(json.dumps({"description": "MNI152 slices with synthetic lesions", "split": info, **lists}))
    return str(path)


def stardist_crops_datalist(
    out_dir: str | os.PathLike,
    crop: int = 128,
    stride: int = 32,
    test_fraction: float = 0.3,
    gap: int = 16,
    min_area: int = 20,
) -> str:
    """Cut stardist's ``img2d.tif`` (512^2 fluorescence, 125 nuclei) into crops with a held-out strip.

    Columns ``[W - test_fraction * W, W)`` are the test strip, cut into non-overlapping crops (rows); training crops
    (``crop`` x ``crop``, ``stride`` apart) come from columns left of the strip minus ``gap``. Boxes of every nucleus
    visible in a crop (at least ``min_area`` pixels) from the instance mask. Intensities: ``img / max * 255`` (uint8).
    """
    import tifffile

    from dpe_monai.data.sources import package_dir

    root = package_dir("stardist") / "data" / "images"
    img, mask = tifffile.imread(root / "img2d.tif"), tifffile.imread(root / "mask2d.tif")
    img8 = np.clip(np.round(img.astype(np.float64) / img.max() * 255.0), 0, 255).astype(np.uint8)
    h, w = img.shape
    split_col = int(round(w * (1.0 - test_fraction)))
    out = Path(out_dir).resolve()  # absolute: the datalist resolves relative entries against its own folder
    lists: dict[str, list[dict]] = {"training": [], "test": []}

    def add(name: str, r0: int, c0: int, r1: int, c1: int) -> None:
        boxes = boxes_from_instances(mask[r0:r1, c0:c1], min_area=min_area)
        path = _save(out / "images" / f"img2d_{name}_r{r0:03d}c{c0:03d}.png", img8[r0:r1, c0:c1])
        lists[name].append(
            {
                "image": path,
                "boxes": boxes,
                "labels": [0] * len(boxes),
                "crop": [c0, r0, c1, r1],
                "modality_group": "microscopy",
                "modality": "fluorescence",
            }
        )

    for r0 in range(0, h - crop + 1, stride):
        for c0 in range(0, split_col - gap - crop + 1, stride):
            add("training", r0, c0, r0 + crop, c0 + crop)
    for r0 in range(0, h, crop):
        add("test", r0, split_col, min(r0 + crop, h), w)
    info = {"crop": crop, "stride": stride, "test_columns": [split_col, w], "gap": gap, "min_area": min_area}
    path = out / "datalist.json"
    path.write_text(json.dumps({"description": "stardist img2d nucleus crops", "split": info, **lists}))
    return str(path)


#: two folds of whole patients, one MR and one CT each. Fold 0 holds the patients of the collection's training split
#: (so the shipped enhancer has seen them as training targets), fold 1 those of its test split (unseen).
#: the collection sources (``item["source"]``) whose images these datalists *test* on: every MNI152 slice can hold the
#: held-out slab (segmentation, lesions) and every pyradiomics patient is in a tumour test slab. A model that acts on
#: scans and is evaluated downstream must not train on them (stardist's DSB2018 image, the nuclei test, is in the
#: collection's test split already).
TEST_SOURCES: tuple[str, ...] = ("mni152", "pyradiomics")
TUMOUR_FOLDS: tuple[tuple[str, ...], ...] = (("brain1", "lung1"), ("brain2", "lung2"))
#: display window per modality, 8-bit storage: MR 0 .. the patient's 99.5th percentile; CT -1000 .. 400 HU (lung to
#: soft tissue, where the lung lesions and their surroundings are).
_CT_WINDOW = (-1000.0, 400.0)


def _window8(volume: np.ndarray, modality: str) -> np.ndarray:
    lo, hi = _CT_WINDOW if modality == "CT" else (0.0, float(np.percentile(volume, 99.5)))
    scaled = (volume.astype(np.float64) - lo) / (hi - lo)
    return np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)


def _downsample(plane: np.ndarray, factor: int, mask: bool) -> np.ndarray:
    if factor == 1:
        return plane
    h, w = plane.shape[0] // factor * factor, plane.shape[1] // factor * factor
    blocks = plane[:h, :w].reshape(h // factor, factor, w // factor, factor).astype(np.float64).mean(axis=(1, 3))
    return (blocks >= 0.5).astype(np.uint8) if mask else np.round(blocks).astype(np.uint8)


def tumour_datalist(
    out_dir: str | os.PathLike,
    test_fold: int = 1,
    size: int = 256,
    tumour_only_test: bool = True,
    realistic: bool = False,
    split: str = "slab",
) -> str:
    """Write the ``pyradiomics`` patients' axial slices with their real tumour masks; returns the datalist path.

    Every axial slice becomes an 8-bit PNG at ``size`` px (the 512^2 CT planes are 2 x 2 block-averaged; the masks
    are the blocks at least half inside the tumour) in the collection's display orientation, with a binary label map
    (0 background, 1 tumour) and, on tumour slices, the tumour's box(es) ``[x0, y0, x1, y1]``. Windows: MR 0 to the
    patient's 99.5th percentile, CT -1000..400 HU.

    Two ways to split (``split``):

    - ``"slab"`` (default): every patient is in both splits. Its tumour slices are cut at their median slice into a
      lower and an upper slab; ``test`` = slab ``test_fold`` (0 lower, 1 upper) of every patient, ``training`` = all
      other slices (tumour-free ones teach the task models what is not a tumour). Test slices are unseen, but their
      patients (and the neighbouring slices) are not.
    - ``"patient"``: whole patients (:data:`TUMOUR_FOLDS`), ``test`` = the patients of fold ``test_fold``. With one
      training patient per modality the task models do not generalise (tumour Dice 0 on the clean held-out slices,
      measured with ``python -m benchmarks.downstream --tasks tumour --tumour_split patient``).

    With
    ``tumour_only_test`` the test split keeps only the slices with tumour (Dice and boxes are defined there).
    With ``realistic``, every item carries ``degradation_mode``: ``mri_bias_rician`` for MR, ``lowdose_ct`` for CT
    (the evaluators use it instead of their own mode).

    Args:
        out_dir: output folder.
        test_fold: index into :data:`TUMOUR_FOLDS` (``"patient"``) or the slab, 0 lower / 1 upper (``"slab"``).
        size: side of the stored slices (the CT planes are downsampled by ``512 // size``).
        tumour_only_test: keep only tumour slices in the test split.
        realistic: tag items with the modality's realistic degradation mode.
        split: ``"slab"`` or ``"patient"``.
    """
    if split not in ("slab", "patient"):
        raise ValueError(f"split must be 'slab' or 'patient', got {split!r}")
    from dpe_monai.data.pyradiomics_data import PATIENTS, cached_archive, read_patient

    out = Path(out_dir).resolve()  # absolute: the datalist resolves relative entries against its own folder
    archive = cached_archive()
    modality = {p[0]: p[1] for p in PATIENTS}
    test_patients = set(TUMOUR_FOLDS[test_fold])
    lists: dict[str, list[dict]] = {"training": [], "test": []}
    counts: dict[str, dict[str, int]] = {}
    for patient in sorted({p for fold in TUMOUR_FOLDS for p in fold}):
        image, mask = read_patient(archive, patient)
        image8 = _window8(image, modality[patient])
        factor = max(1, image.shape[0] // size)
        tumour_z = [z for z in range(image.shape[2]) if mask[:, :, z].any()]
        median_z = tumour_z[len(tumour_z) // 2] if tumour_z else -1
        counts[patient] = {"slices": 0, "tumour_slices": 0}
        for z in range(image.shape[2]):
            img, lab = _plane(image8, z), _plane(mask, z)
            img, lab = _downsample(img, factor, False), _downsample(lab, factor, True)
            has_tumour = bool(lab.any())
            if split == "patient":
                part = "test" if patient in test_patients else "training"
            else:
                in_test_slab = has_tumour and (z >= median_z) == bool(test_fold)
                part = "test" if in_test_slab else "training"
            if part == "test" and tumour_only_test and not has_tumour:
                continue
            counts[patient]["slices"] += 1
            counts[patient]["tumour_slices"] += int(has_tumour)
            boxes = boxes_from_instances(ndimage.label(lab)[0]) if has_tumour else []
            item = {
                "image": _save(out / "images" / f"{patient}_axial{z:03d}.png", img),
                "label": _save(out / "labels" / f"{patient}_axial{z:03d}_label.png", lab),
                "boxes": boxes,
                "labels": [0] * len(boxes),
                "has_tumour": has_tumour,
                "patient": patient,
                "subject": f"pyradiomics:{patient}",
                "slice_index": z,
                "modality_group": "radiology",
                "modality": modality[patient],
                "label_classes": ["background", "tumour"],
            }
            if realistic:
                item["degradation_mode"] = "mri_bias_rician" if modality[patient] == "MR" else "lowdose_ct"
            lists[part].append(item)
    info = {
        "split": split,
        "folds": [list(f) for f in TUMOUR_FOLDS] if split == "patient" else ["lower tumour slab", "upper tumour slab"],
        "test_fold": test_fold,
        "size": size,
        "counts": counts,
        "windows": {"MR": "0 .. patient p99.5", "CT": list(_CT_WINDOW)},
        "tumour_only_test": tumour_only_test,
    }
    path = out / "datalist.json"
    path.write_text(json.dumps({"description": f"pyradiomics tumour slices, {split} folds", "split": info, **lists}))
    return str(path)
