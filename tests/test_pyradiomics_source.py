"""The pyradiomics 3.0.1 patients: 4 whole patients, a whole-patient split, aligned tumour masks, 16-bit storage.

Skipped when the source archive is not cached (``~/.cache/dpe-monai/downloads/pyradiomics-3.0.1.tar.gz``); the
tests never download it.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpe_monai.data.build import build_collection
from dpe_monai.data.pyradiomics_data import NO_DOWNLOAD_ENV, PATIENTS, archive_path, read_patient
from dpe_monai.data.slicing import foreground_threshold
from dpe_monai.data.splits import SPLITS, check_disjoint

pytestmark = pytest.mark.skipif(not archive_path().is_file(), reason=f"{archive_path()} is not cached")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A full build of the pyradiomics source alone (downloads disabled)."""
    out = tmp_path_factory.mktemp("pyradiomics")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(NO_DOWNLOAD_ENV, "1")
        result = build_collection(out, sources=["pyradiomics"], verbose=False)
    assert result["num_skipped"] == 0, result["skipped"]
    return out, json.loads(Path(result["datalist"]).read_text())


def _items(doc: dict) -> list[tuple[str, dict]]:
    return [(split, it) for split in SPLITS for it in doc[split]]


def test_four_patients_whole_patient_split(built: tuple[Path, dict]) -> None:
    _, doc = built
    items = _items(doc)
    assert {it["subject"] for _, it in items} == {f"pyradiomics:{p}" for p, *_ in PATIENTS}
    assert check_disjoint(doc) == {}
    split_of = {it["subject"]: split for split, it in items}
    assert split_of == {f"pyradiomics:{p}": split for p, _, _, split in PATIENTS}
    test = {it["subject"]: it["modality"] for it in doc["test"]}
    assert sorted(test.values()) == ["CT", "MR"]  # one whole brain MR and one whole chest CT held out
    for _, it in items:
        assert it["modality_group"] == "radiology" and it["orientation"] == "axial"
        assert min(it["height"], it["width"]) >= 256


def test_masks_align_with_their_slices(built: tuple[Path, dict]) -> None:
    root, doc = built
    with_label: Counter = Counter()
    for _, it in _items(doc):
        image = np.asarray(Image.open(root / it["image"]))
        if "label" not in it:
            continue
        with_label[it["subject"]] += 1
        mask = np.asarray(Image.open(root / it["label"]))
        assert mask.shape == image.shape
        assert set(np.unique(mask)) == {0, 1}
        assert it["label_kind"] == "lesion" and it["boxes"]
        inside = image[mask > 0] > foreground_threshold(image)  # the tumour lies in the body, not in the air
        assert inside.mean() > 0.95, it["image"]
    archive = archive_path()
    for patient, *_ in PATIENTS:
        _, mask = read_patient(archive, patient)
        assert with_label[f"pyradiomics:{patient}"] == int(mask.any(axis=(0, 1)).sum())  # every tumour slice kept


def test_sixteen_bit_storage(built: tuple[Path, dict]) -> None:
    root, doc = built
    ranges: dict[str, set[tuple[float, float]]] = {}
    for _, it in _items(doc):
        assert it["bit_depth"] == 16 and it["source_dtype"] == "int16"
        ranges.setdefault(it["subject"], set()).add(tuple(it["source_range"]))
        with Image.open(root / it["image"]) as img:
            assert img.mode.startswith("I;16") or img.mode == "I"
            assert np.asarray(img).dtype in (np.uint16, np.int32)
    assert all(len(r) == 1 for r in ranges.values())  # one map per patient
    lung = ranges["pyradiomics:lung1"].pop()
    assert lung[0] == -1024.0  # CT in HU


def test_tumour_datalist_slab_folds(tmp_path: Path) -> None:
    """Slab folds: the two test slabs split every patient's tumour slices at the median, never touch training."""
    from dpe_monai.evaluators.datasets import tumour_datalist

    docs = [json.loads(Path(tumour_datalist(tmp_path / f"f{k}", test_fold=k)).read_text()) for k in (0, 1)]
    tests = [{(it["patient"], it["slice_index"]) for it in d["test"]} for d in docs]
    assert not tests[0] & tests[1]
    for doc, test in zip(docs, tests):
        assert all(it["has_tumour"] and it["boxes"] for it in doc["test"])
        assert not test & {(it["patient"], it["slice_index"]) for it in doc["training"]}
    tumour = {(it["patient"], it["slice_index"]) for d in docs for it in d["training"] + d["test"] if it["has_tumour"]}
    assert tests[0] | tests[1] == tumour  # each tumour slice is tested once
    for patient in {p for p, _ in tumour}:
        lower = max(z for p, z in tests[0] if p == patient)
        assert lower < min(z for p, z in tests[1] if p == patient)  # lower slab below the upper one
    with pytest.raises(ValueError, match="split"):
        tumour_datalist(tmp_path / "bad", split="random")
