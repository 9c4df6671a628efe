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
from dpe_monai.evaluators.augmentation import BGGamma, TaskIntensityAugment, task_augmentation
from dpe_monai.evaluators.detection import train_detector
from dpe_monai.evaluators.segmentation import build_segmenter, task_segmenter, train_segmenter


def test_schedule_is_seeded_and_follows_nnunet_probabilities():
    x = torch.rand(1, 32, 32) * 0.8 + 0.1
    a, b, c = TaskIntensityAugment(0), TaskIntensityAugment(0), TaskIntensityAugment(1)
    outs_a = [a(x) for _ in range(400)]
    outs_b = [b(x) for _ in range(400)]
    outs_c = [c(x) for _ in range(400)]
    assert all(torch.equal(p, q) for p, q in zip(outs_a, outs_b))  # same seed, same draws
    assert not all(torch.equal(p, q) for p, q in zip(outs_a, outs_c))
    assert all(type(y) is torch.Tensor and y.shape == x.shape and y.dtype == torch.float32 for y in outs_a)
    untouched = np.mean([torch.allclose(y, x, atol=1e-5) for y in outs_a])
    # each transform fires on its own: P(none fires) = 0.9 * 0.9 * 0.85 * 0.85 * 0.9 * 0.7 = 0.37
    assert 0.29 < untouched < 0.45
    spread = torch.tensor([float(y.std() / x.std()) for y in outs_a])
    assert spread.min() < 0.85 and spread.max() > 1.15  # brightness / contrast x U(0.75, 1.25) about the mean


def test_grey_images_stay_grey_and_gamma_draws_like_bgcontrast():
    grey = (torch.rand(1, 24, 24) * 0.5 + 0.2).expand(3, 24, 24)
    aug = TaskIntensityAugment(2)
    outs = [aug(grey) for _ in range(100)]
    assert all(torch.equal(o[0], o[1]) and torch.equal(o[0], o[2]) for o in outs)  # one noise field, one gamma
    assert sum(not torch.allclose(o, grey, atol=1e-5) for o in outs) > 40
    gamma = BGGamma(prob=1.0, gamma=(0.7, 1.5))
    gamma.set_random_state(0)
    draws = []
    for _ in range(2000):
        gamma.randomize()
        draws.append(gamma.gamma_value)
    draws = np.array(draws)
    assert 0.45 < (draws < 1).mean() < 0.55 and draws.min() >= 0.7 and draws.max() <= 1.5  # MONAI's own: 0.375


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


def test_task_models_train_on_augmented_images(squares, monkeypatch):
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
    calls = []
    original = TaskIntensityAugment.__call__

    def counted(self, image):
        calls.append(image.shape)
        return original(self, image)

    monkeypatch.setattr(TaskIntensityAugment, "__call__", counted)
    _, det_log = train_detector(squares, iterations=2, batch_size=2, augmentation="nnunet")
    assert det_log["augmentation"] == "nnunet" and len(calls) == 4  # every image of both batches


def test_task_segmenter_cache_tells_augmented_from_plain(squares, tmp_path):
    """The tumour task's U-Net cache (also the task-driven fine-tune's) retrains when the settings change."""
    path = tmp_path / "cache" / "task_segmenter.pt"
    kw = {"iterations": 1, "batch_size": 2}
    task_segmenter(squares, path, **kw)
    first = json.loads(path.with_suffix(".json").read_text())
    task_segmenter(squares, path, **kw)
    assert json.loads(path.with_suffix(".json").read_text()) == first  # loaded, not retrained
    task_segmenter(squares, path, augmentation="nnunet", **kw)
    second = json.loads(path.with_suffix(".json").read_text())
    assert second["key"] != first["key"] and second["log"]["augmentation"] == "nnunet"


def test_task_datalists_work_from_a_relative_folder(tmp_path, monkeypatch):
    """A relative output folder (``--work_dir outputs/...``) gives a datalist whose images load."""
    monkeypatch.chdir(tmp_path)
    path = ds.stardist_crops_datalist("relative/nuclei", crop=128, stride=128)
    entry = json.loads(open(path).read())["training"][0]["image"]
    assert entry.startswith(str(tmp_path))
    items = load_datalist(path, "training")
    assert items and all(Path(it["image"]).is_file() for it in items)
