"""The packaged collection: an offline quick build, subject-level splits, bit depths, labels, the data card."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from monai.transforms import LoadImage
from PIL import Image

from dpe_monai.data.build import QUICK_ITEMS, build_collection, main
from dpe_monai.data.pyradiomics_data import NO_DOWNLOAD_ENV, archive_path
from dpe_monai.data.sources import GROUPS, SOURCES
from dpe_monai.data.splits import SPLITS, assign_split, check_disjoint


def _no_network(*args, **kwargs):
    raise OSError("network access attempted during an offline build")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One ``--quick`` build of every packaged source with the network (and the pyradiomics download) disabled."""
    out = tmp_path_factory.mktemp("collection")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(NO_DOWNLOAD_ENV, "1")
        mp.setattr(socket, "socket", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        mp.setattr(socket, "getaddrinfo", _no_network)
        result = build_collection(out, max_items_per_source=QUICK_ITEMS, verbose=False, card_path=out / "CARD.md")
    result["document"] = json.loads(Path(result["datalist"]).read_text())
    return result


def test_quick_build_offline_covers_every_source_and_group(quick: dict) -> None:
    doc = quick["document"]
    # the one downloaded source is skipped, with a warning, when its archive is not cached
    optional = set() if archive_path().is_file() else {"pyradiomics"}
    assert [name for name, _ in quick["skipped"]] == [f"source {k}" for k in sorted(optional)], quick["skipped"]
    items = [it for s in SPLITS for it in doc[s]]
    assert {it["source"] for it in items} == set(SOURCES) - optional
    for split in SPLITS:
        assert {it["modality_group"] for it in doc[split]} == set(GROUPS), split
    # at most QUICK_ITEMS per source and split
    for source in SOURCES:
        for split in SPLITS:
            assert sum(it["source"] == source for it in doc[split]) <= QUICK_ITEMS


def test_no_subject_in_two_splits(quick: dict) -> None:
    doc = quick["document"]
    assert check_disjoint(doc) == {}
    # a test item never shares a volume or an original image with a training item
    train_subjects = {it["subject"] for it in doc["training"]}
    assert not train_subjects & {it["subject"] for it in doc["test"]}


def test_datalist_is_standard_monai(quick: dict) -> None:
    root = Path(quick["output_dir"])
    train = load_decathlon_datalist(quick["datalist"], is_segmentation=True, data_list_key="training", base_dir=root)
    assert train and all(Path(it["image"]).is_file() for it in train)
    assert all(not Path(it["image"]).is_absolute() for s in SPLITS for it in quick["document"][s])
    labelled = [it for it in train if "label" in it]
    assert labelled and all(Path(it["label"]).is_file() for it in labelled)
    img = LoadImage(image_only=True)(train[0]["image"])
    assert img.ndim in (2, 3)


def test_sixteen_bit_sources_stay_sixteen_bit(quick: dict) -> None:
    root = Path(quick["output_dir"])
    items = [it for s in SPLITS for it in quick["document"][s]]
    sixteen = [it for it in items if it["bit_depth"] == 16]
    assert {it["source"] for it in sixteen} >= {"pydicom_data", "stardist"}  # 12-16-bit DICOM, uint16 TIFF
    for it in items:
        arr = np.asarray(Image.open(root / it["image"])) if it["image"].endswith(".png") else None
        if arr is None:
            continue
        assert arr.dtype == (np.uint16 if it["bit_depth"] == 16 else np.uint8), it["image"]
        assert arr.ndim == (3 if it["channels"] == 3 else 2)
    # a 16-bit item really uses more than 8 bits, and MONAI's reader returns the same values
    cr = next(it for it in sixteen if it["modality"] == "CR")
    arr = np.asarray(Image.open(root / cr["image"]))
    assert len(np.unique(arr)) > 256
    loaded = LoadImage(image_only=True, dtype=None)(str(root / cr["image"]))
    np.testing.assert_array_equal(loaded.numpy().T, arr)


def test_labels_travel_with_images(quick: dict) -> None:
    root = Path(quick["output_dir"])
    items = [it for s in SPLITS for it in quick["document"][s]]
    mni = [it for it in items if it["source"] == "mni152"]
    assert mni and all({"label", "brain_mask"} <= set(it) for it in mni)
    for it in mni:
        tissue, mask = (np.asarray(Image.open(root / it[k])) for k in ("label", "brain_mask"))
        assert set(np.unique(tissue)) <= {0, 1, 2, 3}
        np.testing.assert_array_equal(tissue > 0, mask > 0)
    nuclei = next(it for it in items if it["subject"] == "stardist:dsb2018_img2d")
    instances = np.asarray(Image.open(root / nuclei["label"]))
    assert len(nuclei["boxes"]) == len(np.unique(instances)) - 1 == 125
    x0, y0, x1, y1 = nuclei["boxes"][0]
    assert 0 <= x0 < x1 <= nuclei["width"] and 0 <= y0 < y1 <= nuclei["height"]
    lesion = next(it for it in items if it.get("label_kind") == "lesion" and it["source"] == "pydicom_data")
    assert lesion in quick["document"]["test"]
    mask = np.asarray(Image.open(root / lesion["label"]))
    assert 200 < int(mask.sum()) < 2000 and len(lesion["boxes"]) == 1


def test_data_card_is_generated_and_portable(quick: dict) -> None:
    card = Path(quick["output_dir"], "CARD.md").read_text()
    assert "| radiology |" in card and "licence" in card
    assert str(quick["output_dir"]) not in card and "/tmp" not in card


def test_hash_split_is_fixed_and_seeded() -> None:
    subjects = [f"s{i}" for i in range(2000)]
    first = [assign_split(s, seed=0) for s in subjects]
    assert first == [assign_split(s, seed=0) for s in subjects]
    assert first != [assign_split(s, seed=1) for s in subjects]
    shares = {s: first.count(s) / len(first) for s in SPLITS}
    assert abs(shares["test"] - 0.2) < 0.03 and abs(shares["validation"] - 0.1) < 0.03
    assert assign_split("anything", fixed="test", seed=5) == "test"
    leak = {"training": [{"subject": "a"}], "test": [{"subject": "a"}, {"subject": "b"}]}
    assert check_disjoint(leak) == {"a": {"training", "test"}}


def test_cli_card_is_reproducible(tmp_path: Path) -> None:
    cards = []
    for run in range(2):
        card = tmp_path / f"card{run}.md"
        argv = ["--output", str(tmp_path / "out"), "--quick", "--quiet", "--source", "skimage_data"]
        assert main([*argv, "--card", str(card)]) == 0
        cards.append(card.read_text())
    assert cards[0] == cards[1]
    doc = json.loads((tmp_path / "out" / "datalist.json").read_text())
    assert {it["source"] for s in SPLITS for it in doc[s]} == {"skimage_data"}


def test_group_balanced_weights_draw_groups_equally_or_as_weighted() -> None:
    from dpe_monai.data import group_balanced_weights

    items = [{"modality_group": "a"}] * 3 + [{"modality_group": "b"}]
    w = group_balanced_weights(items)
    assert sum(w[:3]) == pytest.approx(0.5) and w[3] == pytest.approx(0.5)
    w = group_balanced_weights(items, group_weights={"b": 3.0})
    assert sum(w[:3]) == pytest.approx(0.25) and w[3] == pytest.approx(0.75)
