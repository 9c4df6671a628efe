"""Trained task models are cached by their training items and settings, and retrained when those change."""

from __future__ import annotations

import torch

from dpe_monai.evaluators.task_cache import load_or_train, training_key


def _items(tmp_path, text: str = "a") -> list[dict]:
    img = tmp_path / "img.png"
    img.write_text(text)
    return [{"image": str(img), "boxes": [[1, 2, 3, 4]]}]


def test_cache_loads_same_training_and_retrains_on_change(tmp_path):
    calls = []

    def train():
        calls.append(1)
        torch.manual_seed(len(calls))
        return torch.nn.Linear(2, 2), {"seconds": 1.0}

    path = tmp_path / "cache" / "model.pt"
    key = training_key(_items(tmp_path), {"iterations": 5}, 0)
    first, log = load_or_train(path, key, lambda: torch.nn.Linear(2, 2), train)
    assert log["cached"] is False and path.is_file() and path.with_suffix(".json").is_file()
    again, log = load_or_train(path, key, lambda: torch.nn.Linear(2, 2), train)
    assert log["cached"] is True and len(calls) == 1
    assert torch.equal(again.weight, first.weight)
    for changed in (
        training_key(_items(tmp_path, "b"), {"iterations": 5}, 0),  # an image changed
        training_key(_items(tmp_path), {"iterations": 6}, 0),  # a setting changed
        training_key(_items(tmp_path), {"iterations": 5}, 1),  # the seed changed
    ):
        assert changed != key
    key6 = training_key(_items(tmp_path), {"iterations": 6}, 0)
    _, log = load_or_train(path, key6, lambda: torch.nn.Linear(2, 2), train)
    assert log["cached"] is False and len(calls) == 2


def _train_v1():
    return 1


def _train_v2():
    return 2


def test_key_follows_the_training_code(tmp_path):
    """A model trained by other code is not reused: the source of the training functions joins the key."""
    from dpe_monai.evaluators import detection, segmentation

    items, settings = _items(tmp_path), {"iterations": 5}
    assert training_key(items, settings, 0, code=(_train_v1,)) != training_key(items, settings, 0, code=(_train_v2,))
    assert training_key(items, settings, 0, code=(_train_v1,)) == training_key(items, settings, 0, code=(_train_v1,))
    assert segmentation.train_segmenter in segmentation.training_code()
    assert detection.train_detector in detection.training_code()
    assert training_key(items, settings, 0, code=segmentation.training_code()) != training_key(items, settings, 0)


def test_task_segmenter_weights_follow_the_seed_alone(tmp_path):
    """The task U-Net is built after seeding: random draws made before the call (e.g. building the enhancers being
    compared) do not change it (they did before: fold 0's tumour U-Net differed between checkouts)."""
    import numpy as np
    from PIL import Image

    from dpe_monai.evaluators.segmentation import task_segmenter

    rng = np.random.default_rng(0)
    items = []
    for i in range(2):
        img, lab = tmp_path / f"i{i}.png", tmp_path / f"l{i}.png"
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(img)
        Image.fromarray((rng.random((32, 32)) > 0.7).astype(np.uint8)).save(lab)
        items.append({"image": str(img), "label": str(lab)})
    states = []
    for draws in (0, 7):
        torch.manual_seed(123)
        torch.rand(draws)  # what ran before in the process
        net = task_segmenter(items, tmp_path / f"seg{draws}.pt", 2, seed=0, device="cpu", iterations=2, batch_size=2)
        states.append(net.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
