"""dpe_monai.evaluators: recovery, quality scoring, segmentation and detection on tiny synthetic datalists, builders."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dpe_monai.evaluators import (
    DetectionEvaluator,
    QualityScorer,
    SegmentationEvaluator,
    load_clean,
    load_datalist,
    paired_set,
    recovery,
    recovery_table,
    score_enhancers,
)
from dpe_monai.evaluators import datasets as ds
from dpe_monai.evaluators.detection import ResNetFPN, _coco, _map
from dpe_monai.evaluators.quality import subjects_per_group
from dpe_monai.evaluators.segmentation import build_segmenter


def _synthetic(root, n_train=6, n_test=3, size=48, seed=0) -> str:
    """Bright images with dark squares: labels (class 1 = square) and boxes ([x0, y0, x1, y1], x = column)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lists = {"training": [], "test": []}
    for split, n in (("training", n_train), ("test", n_test)):
        for i in range(n):
            img = np.full((size, size), 200, np.uint8) + rng.integers(0, 20, (size, size), dtype=np.uint8)
            lab = np.zeros((size, size), np.uint8)
            boxes = []
            for _ in range(2):
                r, c, s = rng.integers(2, size - 14), rng.integers(2, size - 14), rng.integers(6, 12)
                img[r : r + s, c : c + s] = 40
                lab[r : r + s, c : c + s] = 1
                boxes.append([int(c), int(r), int(c + s), int(r + s)])
            Image.fromarray(img).save(root / f"{split}{i}.png")
            Image.fromarray(lab).save(root / f"{split}{i}_label.png")
            lists[split].append(
                {
                    "image": f"{split}{i}.png",
                    "label": f"{split}{i}_label.png",
                    "boxes": boxes,
                    "labels": [0, 0],
                    "modality_group": "radiology" if i % 2 else "microscopy",
                }
            )
    path = root / "datalist.json"
    path.write_text(json.dumps(lists))
    return str(path)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return _synthetic(tmp_path_factory.mktemp("synthetic"))


def test_recovery():
    assert recovery(0.8, 0.5, 1.0) == pytest.approx(0.6)
    assert recovery(0.4, 0.5, 1.0) == pytest.approx(-0.2)
    assert math.isnan(recovery(0.9, 0.7, 0.7)) and math.isnan(recovery(float("nan"), 0.1, 0.9))
    assert recovery_table({"degraded": 0.2, "clean": 0.6, "a": 0.4}) == {"a": pytest.approx(0.5)}


def test_loading_matches_box_convention(synthetic):
    item = load_datalist(synthetic, "training")[0]
    data = load_clean(item, label=True)
    assert data["image"].shape == (3, 48, 48) and data["label"].dtype == torch.int64
    x0, y0, x1, y1 = item["boxes"][0]
    assert float(data["image"][0, x0:x1, y0:y1].max()) < 0.2  # the dark square sits in the box (x = first axis)
    assert bool((data["label"][x0:x1, y0:y1] == 1).all())


def test_quality_scoring(synthetic):
    items = load_datalist(synthetic, "test")
    pairs, skipped = paired_set(items, seed=1, limit_per_group=1)
    assert len(pairs) == 2 and not skipped and {p["group"] for p in pairs} == {"radiology", "microscopy"}
    scores = score_enhancers(pairs, {"half": lambda x: x * 0.5}, QualityScorer("random"), keep=lambda p: True)
    s = scores["summary"]
    assert set(s) == {"input", "half"} and {"radiology", "microscopy", "average", "pooled"} <= set(s["input"])
    for m in ("psnr", "ssim", "delta_e", "feature_distance"):
        assert np.isfinite(s["input"]["average"][m])
    assert s["input"]["average"]["psnr"] != s["half"]["average"]["psnr"]
    assert set(scores["outputs"][pairs[0]["id"]]) == {"input", "half", "reference"}


def test_subjects_per_group():
    pairs = [
        {"id": "a/1", "group": "radiology", "subject": "ct1"},
        {"id": "a/2", "group": "radiology", "subject": "ct1"},
        {"id": "b/1", "group": "radiology", "subject": "ct2"},
        {"id": "c/1", "group": "microscopy"},  # no subject: the item counts as its own subject
    ]
    assert subjects_per_group(pairs) == {"microscopy": 1, "radiology": 2}


def test_segmentation_evaluator(synthetic):
    ev = SegmentationEvaluator(
        2,
        ["background", "square"],
        seed=0,
        train_kwargs={"iterations": 4, "batch_size": 2, "network": build_segmenter(2, channels=(4, 8))},
    )
    ev.fit(load_datalist(synthetic, "training"))
    out = ev.evaluate(load_datalist(synthetic, "test"), {"identity": lambda x: x, "again": lambda x: x}, ["identity"])
    assert out["n_test"] == 3 and list(out["inputs"]) == ["degraded", "identity", "again", "clean"]
    assert out["inputs"]["identity"] == out["inputs"]["degraded"]
    assert set(out["inputs"]["clean"]["dice"]) == {"background", "square"}
    assert out["train"]["iterations"] == 4 and "identity" in out["recovery"]
    boot = out["bootstrap"]  # per-image Dice resampled: the full sample reproduces DiceMetric's aggregate
    for k, v in out["inputs"].items():
        assert boot["scores"][k]["value"] == pytest.approx(v["mean_dice"], abs=1e-6)
        assert boot["scores"][k]["low"] <= v["mean_dice"] + 1e-9 and boot["scores"][k]["high"] >= v["mean_dice"] - 1e-9
    assert boot["versus_best"] is None or boot["versus_best"]["best"] == "identity"
    assert out["inputs"]["clean"]["intensity_bias"] == {"background": 0.0, "square": 0.0}


def test_segmentation_reports_each_inputs_intensity_bias_per_class(synthetic):
    ev = SegmentationEvaluator(
        2,
        ["background", "square"],
        train_kwargs={"iterations": 1, "batch_size": 2, "network": build_segmenter(2, channels=(4, 8))},
    )
    ev.fit(load_datalist(synthetic, "training"))
    items = load_datalist(synthetic, "test")
    out = ev.evaluate(items, {"black": lambda x: torch.zeros_like(x)})
    # a black output sits minus the clean mean of each class below the clean images (pixels of all images pooled)
    sums = torch.zeros(2, 2, dtype=torch.float64)
    for item in items:
        data = load_clean(item, label=True)
        grey = data["image"].mean(dim=0)
        for c in range(2):
            sums[c] += torch.tensor([float(grey[data["label"] == c].sum()), float((data["label"] == c).sum())])
    bias = out["inputs"]["black"]["intensity_bias"]
    assert bias["background"] == pytest.approx(-float(sums[0, 0] / sums[0, 1]), abs=1e-5)
    assert bias["square"] == pytest.approx(-float(sums[1, 0] / sums[1, 1]), abs=1e-5)
    assert out["inputs"]["degraded"]["intensity_bias"]["square"] != 0.0


def test_detection_evaluator_without_torchvision(synthetic):
    assert importlib.util.find_spec("torchvision") is None  # the point of this test: MONAI's RetinaNet runs anyway
    feats = ResNetFPN(3)(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape[-2:]) for f in feats.values()] == [(16, 16), (8, 8), (4, 4)]
    ev = DetectionEvaluator(["square"], train_kwargs={"iterations": 3, "batch_size": 2})
    ev.fit(load_datalist(synthetic, "training"))
    out = ev.evaluate(load_datalist(synthetic, "test"), {"identity": lambda x: x})
    assert out["n_test"] == 3 and out["n_test_boxes"] == 6
    assert out["inputs"]["identity"] == out["inputs"]["degraded"]
    assert all(0.0 <= v["mAP_50"] <= 1.0 for v in out["inputs"].values())
    for k, v in out["inputs"].items():  # AP recomputed on the full sample is the reported AP
        assert out["bootstrap"]["scores"][k]["value"] == pytest.approx(v["mAP_50"])


def test_coco_map_of_perfect_detections():
    gts = [{"box": torch.tensor([[2.0, 3, 10, 12], [20, 20, 30, 26]]), "label": torch.tensor([0, 0])}]
    preds = [{"box": gts[0]["box"], "label": gts[0]["label"], "label_scores": torch.tensor([0.9, 0.8])}]
    assert _map(_coco(["x"]), preds, gts) == {"mAP_50": 1.0, "mAP_50_95": 1.0, "AR_50": 1.0}


def test_stardist_crops_hold_out_a_strip(tmp_path):
    data = json.loads(open(ds.stardist_crops_datalist(tmp_path, crop=128, stride=64)).read())
    left = data["split"]["test_columns"][0] - data["split"]["gap"]
    assert all(it["crop"][2] <= left for it in data["training"])
    assert all(it["crop"][0] == data["split"]["test_columns"][0] for it in data["test"])
    assert sum(len(it["boxes"]) for it in data["test"]) > 20
    for it in data["training"] + data["test"]:
        w, h = it["crop"][2] - it["crop"][0], it["crop"][3] - it["crop"][1]
        assert all(0 <= b[0] < b[2] <= w and 0 <= b[1] < b[3] <= h for b in it["boxes"])


def test_mni_slab_and_lesions_never_train_on_the_test_slab(tmp_path):
    seg = json.loads(open(ds.mni_slab_datalist(tmp_path / "seg", step=6)).read())
    lo, hi = (round(f * 189) for f in seg["split"]["test_slab"])
    gap = seg["split"]["gap"]
    assert seg["test"] and all(lo <= it["slice_index"] < hi for it in seg["test"])
    assert all(it["slice_index"] < lo - gap or it["slice_index"] >= hi + gap for it in seg["training"])
    les = json.loads(open(ds.mni_lesion_datalist(tmp_path / "les", step=10)).read())
    item = les["test"][0]
    assert item["synthetic"] and 1 <= len(item["boxes"]) <= 3
    img = np.asarray(Image.open(item["image"])).astype(float)
    clean_item = next(it for it in seg["test"] if it["slice_index"] == item["slice_index"])
    clean = np.asarray(Image.open(clean_item["image"])).astype(float)
    touched = np.zeros(img.shape, bool)
    for x0, y0, x1, y1 in item["boxes"]:  # x = column of the PNG (MONAI's loaders make it the first axis)
        assert 5 <= x1 - x0 <= 16 and 5 <= y1 - y0 <= 16
        assert img[y0:y1, x0:x1].mean() < 0.85 * clean[y0:y1, x0:x1].mean()  # hypointense lesion inside its box
        touched[max(y0 - 3, 0) : y1 + 3, max(x0 - 3, 0) : x1 + 3] = True
    assert np.array_equal(img[~touched], clean[~touched])  # nothing changes away from the lesions


@pytest.mark.parametrize("name", ["downstream_segmentation", "downstream_detection"])
def test_bundle_configs(name, synthetic, tmp_path):
    """The bundle's downstream configs run the *shipped* enhancer (inference.json's network_def with
    models/model.pt), as a user runs them; only the task model's training is cut short."""
    from monai.bundle import ConfigParser

    bundle = Path(__file__).resolve().parents[1] / "bundles" / "dpe_enhancement"
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / f"{name}.json"))
    parser.update(
        {
            "bundle_root": str(bundle),
            "output_dir": str(tmp_path),
            "datalist": synthetic,
            "iterations": 2,
            "batch_size": 2,
            "class_names": ["background", "square"] if "segmentation" in name else ["square"],
            "num_classes": 2,
        }
    )
    result = parser.get_parsed_content("result")
    assert list(result["inputs"]) == ["degraded", "dpe", "clean"] and "dpe" in result["recovery"]


def test_a_group_of_one_does_not_carry_the_mean_of_groups():
    from dpe_monai.evaluators.quality import MIN_GROUP_N, quality_table, summarise

    rows = [{"group": "big", "metrics": {"m": {"psnr": 20.0}}} for _ in range(MIN_GROUP_N)]
    rows.append({"group": "single", "metrics": {"m": {"psnr": 40.0}}})
    summary = summarise(rows, ["m"])
    assert summary["m"]["average"]["psnr"] == pytest.approx(20.0)
    assert summary["m"]["pooled"]["psnr"]["mean"] == pytest.approx((20.0 * MIN_GROUP_N + 40.0) / (MIN_GROUP_N + 1))
    table = quality_table(summary, ["m"], metrics=("psnr",))
    assert "single (n < 5: not in the mean of groups)" in table and "| big |" in table
    # with no group that large, every group counts (tiny CI collections)
    small = summarise(rows[-2:], ["m"])
    assert small["m"]["average"]["psnr"] == pytest.approx(30.0)
