"""The downstream evaluators refuse bad input with one line naming the item, and never score a meaningless number.

From a user audit: a clean score below the degraded one gave a recovery of 56 (sign flipped), COCO's -1 placeholder
came back as an mAP, NaN or 0..255 enhancer output was clamped and scored, labels of another size or with a class
past ``num_classes`` trained silently, and a test set the luminance gate emptied returned all-NaN results.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dpe_monai.evaluators import DetectionEvaluator, SegmentationEvaluator
from dpe_monai.evaluators.common import enhance
from dpe_monai.evaluators.recovery import recovery
from dpe_monai.evaluators.segmentation import build_segmenter, evaluate_segmentation


def _items(root: Path, n: int = 2, size: int = 32, level: float = 0.7, label_size: int | None = None) -> list[dict]:
    """Bright textured PNGs with a two-class disc label (or a label of ``label_size``)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        img = np.clip(level + 0.1 * rng.standard_normal((size, size)), 0, 1)
        side = label_size or size
        yy, xx = np.mgrid[:side, :side]
        lab = ((yy - side / 2) ** 2 + (xx - side / 2) ** 2 < (side / 4) ** 2).astype(np.uint8)
        Image.fromarray((img * 255).astype(np.uint8)).save(root / f"img{i}.png")
        Image.fromarray(lab).save(root / f"lab{i}.png")
        items.append({"image": str(root / f"img{i}.png"), "label": str(root / f"lab{i}.png")})
    return items


def test_recovery_is_nan_when_the_degraded_input_scores_better():
    assert math.isnan(recovery(0.489, degraded=0.754, clean=0.749))  # was 56.3
    assert recovery(0.75, degraded=0.5, clean=1.0) == 0.5


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda x: x * float("nan"), "mine on a.png: enhancement returned 48 NaN/inf values"),
        (lambda x: x * 255, "mine on a.png: enhancement returned values in [255, 255]; it must return [0, 1] units"),
        (
            lambda x: x[:, :1],
            "mine on a.png: enhancement returned shape (1, 1, 4, 4) for an input of shape (1, 3, 4, 4)",
        ),
        (lambda x: x[0], "mine on a.png: enhancement returned shape (3, 4, 4) for an input of shape (1, 3, 4, 4)"),
    ],
)
def test_an_enhancer_that_returns_nonsense_is_named(fn, message):
    with pytest.raises(ValueError) as err:
        enhance(fn, torch.ones(3, 4, 4), "mine on a.png")
    assert str(err.value) == message
    assert torch.equal(enhance(lambda x: x + 0.01, torch.ones(3, 4, 4)), torch.ones(3, 4, 4))  # overshoot clipped


def test_segmentation_inputs_are_checked_before_training(tmp_path):
    with pytest.raises(ValueError, match="num_classes=1: a segmentation needs at least 2 classes"):
        SegmentationEvaluator(num_classes=1)
    with pytest.raises(ValueError, match="2 class_names for num_classes=3"):
        SegmentationEvaluator(num_classes=3, class_names=["bg", "a"])
    ev = SegmentationEvaluator(num_classes=2, train_kwargs={"iterations": 1})
    with pytest.raises(ValueError, match="the training items are empty"):
        ev.fit([])
    good = _items(tmp_path / "good")
    with pytest.raises(ValueError, match=r"img0.png: this training item has no 'label'"):
        ev.fit([{"image": good[0]["image"]}])
    bad = _items(tmp_path / "size", label_size=40)
    with pytest.raises(ValueError) as err:
        ev.fit(bad)
    assert str(err.value).startswith(f"{bad[0]['label']}: label of size (40, 40) does not match its image")
    with pytest.raises(ValueError) as err:
        SegmentationEvaluator(num_classes=2).fit([{**good[0], "label": good[0]["image"]}])  # an image as label
    assert str(err.value).startswith(f"{good[0]['image']}: class indices") and "outside 0..1" in str(err.value)


def test_a_colour_coded_label_is_refused_and_a_grey_one_stored_as_rgb_is_read(tmp_path):
    good = _items(tmp_path / "rgb")
    lab = np.asarray(Image.open(good[0]["label"]))
    Image.fromarray(np.stack([lab, lab, lab], -1)).save(good[0]["label"])  # the same index in R, G and B: fine
    coded = np.stack([lab, 1 - lab, np.zeros_like(lab)], -1)  # red: class 1, green: background
    Image.fromarray(coded).save(good[1]["label"])
    with pytest.raises(ValueError) as err:
        SegmentationEvaluator(num_classes=2, train_kwargs={"iterations": 1}).fit(good)
    assert str(err.value) == (
        f"{good[1]['label']}: a label with 3 channels that differ (a colour-coded label?): store one class index per "
        "pixel, as a single-channel image"
    )
    ev = SegmentationEvaluator(num_classes=2, train_kwargs={"iterations": 1, "batch_size": 1}).fit(good[:1])
    out = ev.evaluate(good[:1], {"identity": lambda x: x}, baselines=["identity"], n_boot=7)
    assert out["bootstrap"]["n_boot"] == 7  # the evaluator passes its bootstrap size through


def test_a_test_set_the_luminance_gate_empties_is_an_error_with_the_override(tmp_path):
    dark = _items(tmp_path / "dark", level=0.15)
    net = build_segmenter(2)
    with pytest.raises(ValueError, match="none of the 2 test items was scored: 2 are at or under"):
        evaluate_segmentation(net, dark, {"identity": lambda x: x}, 2)
    out = evaluate_segmentation(net, dark, {"identity": lambda x: x}, 2, brightness_threshold=None, n_boot=10)
    assert out["n_test"] == 2 and set(out["inputs"]) == {"degraded", "identity", "clean"}


def test_detection_boxes_are_checked_and_no_ground_truth_is_nan(tmp_path):
    from dpe_monai.evaluators.detection import _coco, _map

    items = _items(tmp_path / "det")
    ev = DetectionEvaluator(class_names=["object"], train_kwargs={"iterations": 1})
    cases = [
        ({}, "this training item has no 'boxes'"),
        ({"boxes": [[1, 2, 3]]}, "boxes must be [[x0, y0, x1, y1], ...]; got an array of shape (1, 3)"),
        ({"boxes": [[5, 5, 2, 9]]}, "every box needs x1 > x0 and y1 > y0"),
        ({"boxes": [[5, 5, 40, 9]]}, "boxes reach outside the image of size (32, 32)"),
        ({"boxes": [[5, 5, 9, 9]], "labels": [5]}, "box labels 5..5 are outside 0..0"),
        ({"boxes": [[5, 5, 9, 9]], "labels": [0, 0]}, "2 labels for 1 boxes"),
    ]
    for extra, message in cases:
        with pytest.raises(ValueError) as err:
            ev.fit([{"image": items[0]["image"], **extra}])
        assert str(err.value).startswith(f"{items[0]['image']}: {message}"), json.dumps(extra)
    boxed = [{**it, "boxes": [[8, 8, 24, 24]], "labels": [0]} for it in items]
    out = ev.fit(boxed).evaluate(boxed, {"identity": lambda x: x}, baselines=["identity"], n_boot=5)
    assert out["bootstrap"]["n_boot"] == 5
    empty = {"box": torch.zeros(0, 4), "label": torch.zeros(0, dtype=torch.long)}
    pred = {"box": torch.tensor([[1.0, 1.0, 5.0, 5.0]]), "label": torch.zeros(1, dtype=torch.long)}
    pred["label_scores"] = torch.tensor([0.9])
    scores = _map(_coco(["object"]), [pred], [empty])  # no true box: COCO says -1
    assert all(math.isnan(v) for v in scores.values()), scores
