"""Segmentation as a downstream task: a MONAI U-Net trained on clean images, scored on degraded/enhanced/clean inputs.

Usage with any enhancement callable and any MONAI datalist whose items have ``"image"`` and ``"label"`` (class
indices)::

    from dpe_monai.evaluators import SegmentationEvaluator, load_datalist
    ev = SegmentationEvaluator(num_classes=4, class_names=["background", "CSF", "GM", "WM"])
    ev.fit(load_datalist("datalist.json", "training"))           # clean images only
    result = ev.evaluate(load_datalist("datalist.json", "test"), {"mine": my_enhancer})
    result["inputs"]["mine"]["mean_dice"], result["recovery"]["mine"]

Dice per class is MONAI's ``DiceMetric`` (``include_background=True``, classes absent from a reference are ignored
for that image) averaged over the test images; ``mean_dice`` is the mean over the foreground classes. Recovery is
``(Dice_enh - Dice_LQ) / (Dice_clean - Dice_LQ)`` on ``mean_dice`` (:mod:`dpe_monai.evaluators.recovery`).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dpe_monai.evaluators.bootstrap import paired_recovery
from dpe_monai.evaluators.checks import check_classes, check_items, check_label, check_scored
from dpe_monai.evaluators.common import EnhanceFn, degrade, enhance, for_item, item_id, load_clean
from dpe_monai.evaluators.recovery import recovery_table

__all__ = [
    "SegmentationEvaluator",
    "build_segmenter",
    "evaluate_segmentation",
    "segment",
    "task_segmenter",
    "train_segmenter",
]

logger = logging.getLogger(__name__)


def build_segmenter(
    num_classes: int, in_channels: int = 3, channels: Sequence[int] = (16, 32, 64, 128)
) -> torch.nn.Module:
    """A 2-D MONAI ``UNet`` (strides 2, two residual units per level, instance norm)."""
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=num_classes,
        channels=tuple(channels),
        strides=(2,) * (len(channels) - 1),
        num_res_units=2,
        norm="instance",
    )


def _pad_to(x: torch.Tensor, size: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    return F.pad(x, [0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2]], value=value)


def _padded_size(shapes: Sequence[Sequence[int]], multiple: int) -> tuple[int, int]:
    h = max(s[-2] for s in shapes)
    w = max(s[-1] for s in shapes)
    return (-(-h // multiple) * multiple, -(-w // multiple) * multiple)


def train_segmenter(
    items: Sequence[Mapping[str, Any]],
    num_classes: int,
    network: torch.nn.Module | None = None,
    iterations: int = 1500,
    batch_size: int = 8,
    learning_rate: float = 1e-3,
    seed: int = 0,
    device: str | torch.device | None = None,
    max_side: int | None = 1024,
    positive_fraction: float | None = None,
    augmentation: str = "none",
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train a segmenter on the **clean** images of ``items`` (``"image"`` + ``"label"``).

    Loss: MONAI ``DiceCELoss`` (softmax, one-hot labels); Adam; random flips along both axes, and with
    ``augmentation="nnunet"`` nnU-Net's intensity augmentations per image
    (:mod:`dpe_monai.evaluators.augmentation`). Images are padded
    (zeros, bottom/right) to a common size divisible by 16. Batches are drawn uniformly, or, with
    ``positive_fraction``, that share of each batch from the images with foreground (for rare structures such as
    tumours) and the rest from the others.

    Returns:
        ``(network in eval mode, log)`` with the loss curve every 50 iterations and the wall time.
    """
    import time

    from monai.losses import DiceCELoss
    from monai.utils import set_determinism

    from dpe_monai.evaluators.augmentation import task_augmentation

    set_determinism(seed=seed)
    augment = task_augmentation(augmentation, seed)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    network = (network or build_segmenter(num_classes)).to(device)
    data = [load_clean(it, label=True, max_side=max_side) for it in items]
    size = _padded_size([d["image"].shape for d in data], 16)
    images = torch.stack([_pad_to(d["image"], size) for d in data])
    labels = torch.stack([_pad_to(d["label"][None].float(), size) for d in data]).long()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(network.parameters(), lr=learning_rate)
    gen = torch.Generator().manual_seed(seed)
    has_fg = labels.flatten(1).amax(1) > 0
    pools = [has_fg.nonzero()[:, 0], (~has_fg).nonzero()[:, 0]]
    n_pos = round(batch_size * positive_fraction) if positive_fraction is not None else None
    if n_pos is not None and (len(pools[0]) == 0 or (n_pos < batch_size and len(pools[1]) == 0)):
        n_pos = None  # one pool is empty: uniform sampling
    network.train()
    curve, start = [], time.perf_counter()
    for it in range(iterations):
        if n_pos is None:
            idx = torch.randint(len(images), (min(batch_size, len(images)),), generator=gen)
        else:
            sizes = (n_pos, batch_size - n_pos)
            idx = torch.cat(
                [pool[torch.randint(len(pool), (k,), generator=gen)] for pool, k in zip(pools, sizes) if k > 0]
            )  # k == 0: an empty pool is never drawn from
        x, y = images[idx], labels[idx]
        for axis in (-1, -2):
            if torch.rand(1, generator=gen) < 0.5:
                x, y = x.flip(axis), y.flip(axis)
        if augment is not None:
            x = torch.stack([augment(image) for image in x])
        loss = loss_fn(network(x.to(device)), y.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % 50 == 0 or it == iterations - 1:
            curve.append([it, float(loss.detach())])
    network.eval()
    log = {
        "iterations": iterations,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "positive_fraction": positive_fraction,
        "augmentation": augmentation,
        "n_train": len(items),
        "seconds": time.perf_counter() - start,
        "loss_curve": curve,
        "padded_size": list(size),
    }
    return network, log


def training_code() -> tuple[Any, ...]:
    """The functions and modules that load, build and train the task model: their source joins the task cache's
    key (:func:`~dpe_monai.evaluators.task_cache.training_key`), so a change to them retrains it."""
    from dpe_monai.evaluators import augmentation

    return (build_segmenter, train_segmenter, task_segmenter, load_clean, augmentation)


def task_segmenter(
    items: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    num_classes: int = 2,
    seed: int = 0,
    device: str | torch.device | None = None,
    positive_fraction: float | None = 0.75,
    **train_kwargs: Any,
) -> torch.nn.Module:
    """The U-Net of a task, trained on the clean ``items`` once and kept at ``path`` (a state dict and its ``.json``
    log, written atomically, keyed by the items, settings and training code:
    :func:`~dpe_monai.evaluators.task_cache.load_or_train`); later calls with the same items, settings and code load
    it, others retrain. Used as the frozen task network of
    task-driven fine-tuning and by the tumour benchmark, so both see the same network. ``positive_fraction`` of each
    batch comes from images with foreground (see :func:`train_segmenter`).

    Returns:
        the network in eval mode, on ``device``.
    """
    from dpe_monai.evaluators.task_cache import load_or_train, training_key

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    settings = {"num_classes": num_classes, "positive_fraction": positive_fraction, **train_kwargs}
    network, log = load_or_train(
        path,
        training_key(items, settings, seed, code=training_code()),
        lambda: build_segmenter(num_classes),
        lambda: train_segmenter(  # builds the U-Net after seeding: its initial weights follow the seed alone
            items,
            num_classes,
            seed=seed,
            device=device,
            positive_fraction=positive_fraction,
            **train_kwargs,
        ),
    )
    if not log["cached"]:
        logger.info("task segmenter trained on %d items in %.0f s -> %s", len(items), log["seconds"], path)
    return network.to(device).eval()


def segment(network: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class index map ``(B, H, W)`` for ``(B, C, H, W)`` images (padded to a multiple of 16 and cropped back)."""
    device = next(network.parameters()).device
    size = _padded_size([x.shape], 16)
    with torch.inference_mode():
        logits = network(_pad_to(x, size).to(device))
    return logits.argmax(1)[:, : x.shape[-2], : x.shape[-1]].cpu()


def evaluate_segmentation(
    network: torch.nn.Module,
    items: Sequence[Mapping[str, Any]],
    enhancers: Mapping[str, EnhanceFn],
    num_classes: int,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
    mode: str = "paper",
    max_side: int | None = 1024,
    baselines: Sequence[str] = (),
    n_boot: int = 1000,
    **degrade_kwargs: Any,
) -> dict[str, Any]:
    """Dice per class of ``network`` on degraded, enhanced (one entry per enhancer) and clean versions of ``items``.

    Each input also gets ``"intensity_bias"``: per class, the mean of (input - clean) over that class's pixels of
    all test images (channel mean, in [0, 1] units): how far the input's intensity convention sits from the one the
    task model was trained on (a task model trained without intensity augmentation reads such a shift as tissue).

    Items the simulator leaves untouched (luminance gate) are skipped and listed in ``"skipped"``. ``"bootstrap"``
    holds paired bootstrap intervals over the test images of the mean foreground Dice, of each recovery and of each
    enhancer's recovery minus the best of ``baselines``
    (:func:`~dpe_monai.evaluators.bootstrap.paired_recovery`, ``n_boot`` resamples).
    """
    from monai.metrics import DiceMetric

    check_classes(num_classes, class_names)
    check_items(items, "test", ("image", "label"))
    names = list(class_names or [str(i) for i in range(num_classes)])
    inputs = ["degraded", *enhancers, "clean"]
    metrics = {k: DiceMetric(include_background=True, reduction="mean_batch", ignore_empty=True) for k in inputs}
    bias = {k: np.zeros((num_classes, 2)) for k in inputs}  # per class: sum of (input - clean), pixel count
    skipped, n = [], 0
    for item in items:
        data = load_clean(item, label=True, max_side=max_side)
        clean, label = data["image"], data["label"]
        check_label(item, clean, label, num_classes)
        lq, params = degrade(clean, seed, item_id(item), mode=mode, **degrade_kwargs)
        if not params["applied"]:
            skipped.append(item_id(item))
            continue
        n += 1
        versions = {
            "degraded": lq,
            "clean": clean,
            **{
                k: enhance(for_item(fn, data["relative"], params), lq, f"{k} on {item_id(item)}")
                for k, fn in enhancers.items()
            },
        }
        ref = F.one_hot(label[None], num_classes).permute(0, 3, 1, 2).float()
        for key in inputs:
            pred = F.one_hot(segment(network, versions[key][None]), num_classes).permute(0, 3, 1, 2).float()
            metrics[key](y_pred=pred, y=ref)
            diff = (versions[key] - clean).mean(dim=0)
            for c in range(num_classes):
                bias[key][c] += (float(diff[label == c].sum()), float((label == c).sum()))
    check_scored(n, len(items), len(skipped))
    results: dict[str, Any] = {}
    for key in inputs:
        per_class = metrics[key].aggregate().tolist()
        fg = [v for v in per_class[1:] if np.isfinite(v)]
        shift = [s / m if m else math.nan for s, m in bias[key]]
        results[key] = {
            "dice": dict(zip(names, per_class)),
            "mean_dice": float(np.mean(fg)) if fg else math.nan,
            "intensity_bias": dict(zip(names, shift)),
        }
    mean = {k: v["mean_dice"] for k, v in results.items()}
    per_class_recovery = {c: recovery_table({k: v["dice"][c] for k, v in results.items()}) for c in names[1:]}
    return {
        "inputs": results,
        "recovery": recovery_table(mean),
        "recovery_per_class": per_class_recovery,
        "n_test": n,
        "skipped": skipped,
        "class_names": names,
        "bootstrap": _bootstrap(metrics, inputs, baselines, n_boot, seed) if n else None,
    }


def _bootstrap(
    metrics: Mapping[str, Any], inputs: Sequence[str], baselines: Sequence[str], n_boot: int, seed: int
) -> dict[str, Any]:
    """Paired intervals of the mean foreground Dice over resampled test images (classes absent from an image left
    out, as ``DiceMetric(ignore_empty=True)`` aggregates them)."""
    per_image = {k: metrics[k].get_buffer().double().numpy()[:, 1:] for k in inputs}  # (images, fg classes)

    def score(idx: np.ndarray) -> dict[str, float]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a class absent from every resampled image
            return {k: float(np.nanmean(np.nanmean(a[idx], axis=0))) for k, a in per_image.items()}

    n = next(iter(per_image.values())).shape[0]
    return {"n_boot": n_boot, **paired_recovery(score, n, inputs, baselines, n_boot, seed)}


class SegmentationEvaluator:
    """Train-once, evaluate-many wrapper around :func:`train_segmenter` and :func:`evaluate_segmentation`.

    Args:
        num_classes: number of label classes (background included).
        class_names: names of the classes (index order).
        seed: seed of training and of the per-item degradation.
        mode: simulator mode.
        train_kwargs: forwarded to :func:`train_segmenter` (``iterations``, ``batch_size``, ``network``...).
        degrade_kwargs: forwarded to the simulator (e.g. ``{"brightness_threshold": None}``).
    """

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        seed: int = 0,
        mode: str = "paper",
        train_kwargs: Mapping[str, Any] | None = None,
        degrade_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        check_classes(num_classes, class_names)
        self.num_classes = num_classes
        self.class_names = class_names
        self.seed = seed
        self.mode = mode
        self.train_kwargs = dict(train_kwargs or {})
        self.degrade_kwargs = dict(degrade_kwargs or {})
        self.network: torch.nn.Module | None = None
        self.train_log: dict[str, Any] = {}

    def fit(self, items: Sequence[Mapping[str, Any]], cache: str | os.PathLike | None = None) -> SegmentationEvaluator:
        """Train the U-Net on the clean ``items`` (or load it from ``cache`` if it was trained there on the same
        items and settings: :func:`~dpe_monai.evaluators.task_cache.load_or_train`)."""
        from dpe_monai.evaluators.task_cache import load_or_train, training_key

        kwargs = self.train_kwargs
        check_items(items, "training", ("image", "label"))

        def train() -> tuple[torch.nn.Module, dict[str, Any]]:  # labels are read and checked only when training
            for item in items:
                data = load_clean(item, label=True, max_side=kwargs.get("max_side", 1024))
                check_label(item, data["image"], data["label"], self.num_classes)
            return train_segmenter(items, self.num_classes, seed=self.seed, **kwargs)

        key = training_key(items, {"num_classes": self.num_classes, **kwargs}, self.seed, code=training_code())
        self.network, self.train_log = load_or_train(
            cache, key, lambda: kwargs.get("network") or build_segmenter(self.num_classes), train
        )
        return self

    def evaluate(
        self,
        items: Sequence[Mapping[str, Any]],
        enhancers: Mapping[str, EnhanceFn],
        baselines: Sequence[str] = (),
        n_boot: int = 1000,
    ) -> dict[str, Any]:
        """Dice and recovery on held-out ``items`` for every enhancer, with paired bootstrap intervals (``n_boot``
        resamples) and the differences to the best of ``baselines`` (see :func:`evaluate_segmentation`)."""
        if self.network is None:
            raise RuntimeError("call fit() first")
        args = (self.network, items, enhancers, self.num_classes, self.class_names, self.seed, self.mode)
        out = evaluate_segmentation(*args, baselines=baselines, n_boot=n_boot, **self.degrade_kwargs)
        out["train"] = self.train_log
        return out
