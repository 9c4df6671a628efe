"""dpe_monai.evaluators.augmentation: nnU-Net's intensity schedule for the task models, seeded and wired in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dpe_monai.evaluators import datasets as ds
from dpe_monai.evaluators import load_datalist
from dpe_monai.evaluators.augmentation import TaskIntensityAugment, task_augmentation
from dpe_monai.evaluators.detection import train_detector
from dpe_monai.evaluators.segmentation import build_segmenter, train_segmenter


def test_schedule_is_seeded_and_follows_nnunet_probabilities():
    x = torch.rand(3, 32, 32) * 0.8 + 0.1
    a, b, c = TaskIntensityAugment(0), TaskIntensityAugment(0), TaskIntensityAugment(1)
    outs_a = [a(x) for _ in range(300)]
    outs_b = [b(x) for _ in range(300)]
    outs_c = [c(x) for _ in range(300)]
    assert all(torch.equal(p, q) for p, q in zip(outs_a, outs_b))  # same seed, same draws
    assert not all(torch.equal(p, q) for p, q in zip(outs_a, outs_c))
    assert all(type(y) is torch.Tensor and y.shape == x.shape and y.dtype == torch.float32 for y in outs_a)
    untouched = np.mean([torch.equal(y, x) for y in outs_a])
    # each transform fires on its own: P(none fires) = 0.9 * 0.8 * 0.85 * 0.85 * 0.9 * 0.7 = 0.33
    assert 0.25 < untouched < 0.42
    ratios = torch.tensor([float(y.mean() / x.mean()) for y in outs_a])
    assert ratios.min() < 0.85 and ratios.max() > 1.15  # brightness reaches beyond +-15 %, as nnU-Net's 0.75-1.25


def test_names():
    assert task_augmentation("none") is None
    assert isinstance(task_augmentation("nnunet", 3), TaskIntensityAugment)
    with pytest.raises(ValueError, match="unknown task augmentation"):
        task_augmentation("heavy")


@pytest.fixture()
def squares(tmp_path):
    rng = np.random.default_rng(0)
    items = []
    for i in range(4):
        img = np.full((32, 32), 180, np.uint8)
        lab = np.zeros((32, 32), np.uint8)
        r, c = rng.integers(2, 20, 2)
        img[r : r + 8, c : c + 8], lab[r : r + 8, c : c + 8] = 50, 1
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        Image.fromarray(lab).save(tmp_path / f"{i}_label.png")
        box = [int(c), int(r), int(c + 8), int(r + 8)]
        items.append({"image": str(tmp_path / f"{i}.png"), "label": str(tmp_path / f"{i}_label.png"), "boxes": [box]})
    return items


def _weights(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_task_models_train_on_augmented_images(squares):
    """The setting reaches the training loop: same seed, different weights; the log records it."""
    kw = {"iterations": 3, "batch_size": 2, "seed": 0}

    def net() -> torch.nn.Module:
        torch.manual_seed(0)
        return build_segmenter(2, channels=(4, 8))

    plain, log0 = train_segmenter(squares, 2, network=net(), **kw)
    again, _ = train_segmenter(squares, 2, network=net(), **kw)
    aug, log1 = train_segmenter(squares, 2, network=net(), augmentation="nnunet", **kw)
    assert log0["augmentation"] == "none" and log1["augmentation"] == "nnunet"
    assert torch.equal(_weights(plain), _weights(again)) and not torch.equal(_weights(plain), _weights(aug))
    _, det_log = train_detector(squares, iterations=2, batch_size=2, augmentation="nnunet")
    assert det_log["augmentation"] == "nnunet"


def test_task_datalists_work_from_a_relative_folder(tmp_path, monkeypatch):
    """A relative output folder (``--work_dir outputs/...``) gives a datalist whose images load."""
    monkeypatch.chdir(tmp_path)
    path = ds.stardist_crops_datalist("relative/nuclei", crop=128, stride=128)
    entry = json.loads(open(path).read())["training"][0]["image"]
    assert entry.startswith(str(tmp_path))
    items = load_datalist(path, "training")
    assert items and all(Path(it["image"]).is_file() for it in items)
