"""Detection as a downstream task: MONAI's 2-D RetinaNet trained on clean crops, mAP on degraded/enhanced/clean inputs.

Usage with any enhancement callable and any MONAI datalist whose items have ``"image"`` and ``"boxes"``
(``[x0, y0, x1, y1]`` per object, x = the first spatial axis of the MONAI-loaded image, i.e. the column of the file)::

    ev = DetectionEvaluator(class_names=["nucleus"]).fit(load_datalist("datalist.json", "training"))
    result = ev.evaluate(load_datalist("datalist.json", "test"), {"mine": my_enhancer})
    result["inputs"]["mine"]["mAP_50"], result["recovery"]["mine"]

Runs without torchvision: MONAI's RetinaNet pieces import two torchvision helpers only for ``isinstance`` checks and
for ``BackboneWithFPN``; here the ResNet + FPN feature extractor is built from MONAI's own ``FeaturePyramidNetwork``
(:class:`ResNetFPN`) and the two absent names are replaced by placeholder classes that nothing is an instance of
(:func:`allow_without_torchvision`), so the ATSS matcher and hard-negative sampler (both MONAI) are used.
mAP: ``monai.apps.detection.metrics.coco.COCOMetric`` (AP at IoU 0.5 and mAP over IoU 0.5:0.95, 100 detections).
"""

from __future__ import annotations

import importlib.util
import math
import os
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from dpe_monai.evaluators.bootstrap import paired_recovery
from dpe_monai.evaluators.checks import check_boxes, check_items, check_scored
from dpe_monai.evaluators.common import EnhanceFn, degrade, enhance, for_item, item_id, load_clean
from dpe_monai.evaluators.recovery import recovery_table

__all__ = [
    "DetectionEvaluator",
    "ResNetFPN",
    "allow_without_torchvision",
    "build_detector",
    "train_detector",
    "evaluate_detection",
]


def allow_without_torchvision() -> None:
    """Make ``RetinaNetDetector``'s torchvision-only ``isinstance`` branches harmless when torchvision is absent."""
    if importlib.util.find_spec("torchvision") is not None:
        return
    import monai.apps.detection.networks.retinanet_detector as rd

    class _Absent:  # nothing is an instance of this
        pass

    for name in ("Matcher", "BalancedPositiveNegativeSampler"):
        if not isinstance(getattr(rd, name, None), type):
            setattr(rd, name, _Absent)


class ResNetFPN(nn.Module):
    """ResNet stem + the first ``n_levels`` residual stages, then MONAI's ``FeaturePyramidNetwork`` (+ max-pool level).

    A torchvision-free stand-in for ``monai.networks.blocks.backbone_fpn_utils.BackboneWithFPN``. Output: an ordered
    dict of ``n_levels + 1`` maps with ``out_channels`` channels at strides 4, 8, ... of the input.

    Args:
        in_channels: image channels.
        block_inplanes: widths of the ResNet stages.
        layers: residual blocks per stage.
        n_levels: stages fed to the FPN.
        out_channels: FPN width.
    """

    def __init__(
        self,
        in_channels: int = 3,
        block_inplanes: Sequence[int] = (32, 64, 128, 256),
        layers: Sequence[int] = (2, 2, 1, 1),
        n_levels: int = 2,
        out_channels: int = 64,
    ) -> None:
        super().__init__()
        from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool
        from monai.networks.nets import resnet

        backbone = resnet.ResNet(
            block=resnet.ResNetBlock,
            layers=list(layers),
            block_inplanes=list(block_inplanes),
            spatial_dims=2,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
        )
        self.stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.act, backbone.maxpool)
        self.stages = nn.ModuleList(getattr(backbone, f"layer{i + 1}") for i in range(n_levels))
        widths = [block_inplanes[i] * resnet.ResNetBlock.expansion for i in range(n_levels)]
        self.fpn = FeaturePyramidNetwork(2, widths, out_channels, LastLevelMaxPool(2))
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        feats: OrderedDict[str, torch.Tensor] = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            feats[str(i)] = x
        return self.fpn(feats)


def build_detector(
    num_classes: int = 1,
    in_channels: int = 3,
    base_anchor_shapes: Sequence[Sequence[int]] = ((8, 8), (12, 12), (16, 16)),
    score_thresh: float = 0.05,
    nms_thresh: float = 0.3,
    detections_per_img: int = 100,
) -> nn.Module:
    """A 2-D MONAI ``RetinaNetDetector``: :class:`ResNetFPN` (3 levels, strides 4/8/16), anchors ``base x (1, 2, 4)``,
    ATSS matching, hard-negative sampling."""
    from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
    from monai.apps.detection.networks.retinanet_network import RetinaNet
    from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape

    allow_without_torchvision()
    anchors = AnchorGeneratorWithAnchorShape(feature_map_scales=(1, 2, 4), base_anchor_shapes=base_anchor_shapes)
    network = RetinaNet(
        spatial_dims=2,
        num_classes=num_classes,
        num_anchors=anchors.num_anchors_per_location()[0],
        feature_extractor=ResNetFPN(in_channels),
        size_divisible=16,
    )
    det = RetinaNetDetector(network, anchors, debug=False)
    det.set_atss_matcher(num_candidates=4, center_in_gt=False)
    det.set_hard_negative_sampler(batch_size_per_image=64, positive_fraction=0.3, pool_size=20, min_neg=16)
    det.set_target_keys(box_key="box", label_key="label")
    det.set_box_selector_parameters(
        score_thresh=score_thresh,
        topk_candidates_per_level=1000,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
    )
    return det


def _target(item: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    boxes = torch.as_tensor(item.get("boxes", []), dtype=torch.float32).reshape(-1, 4)
    labels = torch.as_tensor(item.get("labels", [0] * len(boxes)), dtype=torch.long).reshape(-1)
    return {"box": boxes, "label": labels}


def _augment(img: torch.Tensor, box: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips of both spatial axes and (square images) a transpose; boxes follow exactly."""
    s0, s1 = img.shape[-2:]
    box = box.clone()
    if torch.rand(1, generator=gen) < 0.5:
        img, box[:, [0, 2]] = img.flip(-2), s0 - box[:, [2, 0]]
    if torch.rand(1, generator=gen) < 0.5:
        img, box[:, [1, 3]] = img.flip(-1), s1 - box[:, [3, 1]]
    if s0 == s1 and torch.rand(1, generator=gen) < 0.5:
        img, box = img.transpose(-1, -2), box[:, [1, 0, 3, 2]]
    return img.contiguous(), box


def train_detector(
    items: Sequence[Mapping[str, Any]],
    detector: nn.Module | None = None,
    iterations: int = 1000,
    batch_size: int = 4,
    learning_rate: float = 1e-3,
    seed: int = 0,
    device: str | torch.device | None = None,
    num_classes: int = 1,
    augmentation: str = "none",
) -> tuple[nn.Module, dict[str, Any]]:
    """Train a detector on the **clean** images of ``items`` (loss: focal classification + box regression, Adam).

    Augmentation: flips and transposes (boxes follow), and with ``augmentation="nnunet"`` nnU-Net's intensity
    augmentations (:mod:`dpe_monai.evaluators.augmentation`).
    """
    from monai.utils import set_determinism

    from dpe_monai.evaluators.augmentation import task_augmentation

    set_determinism(seed=seed)
    augment = task_augmentation(augmentation, seed)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    det = (detector or build_detector(num_classes)).to(device)
    data = [(load_clean(it)["image"], _target(it)) for it in items]
    opt = torch.optim.Adam(det.network.parameters(), lr=learning_rate)
    gen = torch.Generator().manual_seed(seed)
    det.train()
    curve, start = [], time.perf_counter()
    for it in range(iterations):
        idx = torch.randint(len(data), (min(batch_size, len(data)),), generator=gen).tolist()
        images, targets = [], []
        for i in idx:
            img, tgt = data[i]
            img, box = _augment(img, tgt["box"], gen)
            if augment is not None:
                img = augment(img)
            images.append(img.to(device))
            targets.append({"box": box.to(device), "label": tgt["label"].to(device)})
        losses = det(images, targets)
        loss = losses["classification"] + losses["box_regression"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % 50 == 0 or it == iterations - 1:
            curve.append([it, float(loss.detach())])
    det.eval()
    log = {
        "iterations": iterations,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "augmentation": augmentation,
        "n_train": len(items),
        "n_train_boxes": sum(len(t["box"]) for _, t in data),
        "seconds": time.perf_counter() - start,
        "loss_curve": curve,
    }
    return det, log


def training_code() -> tuple[Any, ...]:
    """The functions and modules that load, build and train the task model: their source joins the task cache's
    key (:func:`~dpe_monai.evaluators.task_cache.training_key`), so a change to them retrains it."""
    from dpe_monai.evaluators import augmentation

    return (build_detector, train_detector, load_clean, augmentation)


def _coco(class_names: Sequence[str]) -> Any:
    from monai.apps.detection.metrics.coco import COCOMetric

    return COCOMetric(classes=list(class_names), iou_list=[0.5], iou_range=[0.5, 0.95, 0.05], max_detection=[100])


def _map(metric: Any, preds: list[dict], gts: list[dict]) -> dict[str, float]:
    from monai.apps.detection.metrics.matching import matching_batch
    from monai.data.box_utils import box_iou

    if not preds:
        return {"mAP_50": math.nan, "mAP_50_95": math.nan, "AR_50": math.nan}
    matches = matching_batch(
        iou_fn=box_iou,
        iou_thresholds=metric.iou_thresholds,
        pred_boxes=[p["box"].numpy() for p in preds],
        pred_classes=[p["label"].numpy() for p in preds],
        pred_scores=[p["label_scores"].numpy() for p in preds],
        gt_boxes=[g["box"].numpy() for g in gts],
        gt_classes=[g["label"].numpy() for g in gts],
    )
    values = metric(matches)[0]

    def score(key: str) -> float:  # COCO's -1 stands for "no ground truth to score": NaN, not a score
        v = float(values[key])
        return v if v >= 0 else math.nan

    return {
        "mAP_50": score("AP_IoU_0.50_MaxDet_100"),
        "mAP_50_95": score("mAP_IoU_0.50_0.95_0.05_MaxDet_100"),
        "AR_50": score("AR_IoU_0.50_MaxDet_100"),
    }


def detect(detector: nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Detections ``{"box", "label", "label_scores"}`` (CPU) for one ``(C, H, W)`` image."""
    device = next(detector.network.parameters()).device
    with torch.inference_mode():
        out = detector([image.to(device)], use_inferer=False)[0]
    return {k: v.detach().cpu() for k, v in out.items()}


def evaluate_detection(
    detector: nn.Module,
    items: Sequence[Mapping[str, Any]],
    enhancers: Mapping[str, EnhanceFn],
    class_names: Sequence[str] = ("object",),
    seed: int = 0,
    mode: str = "paper",
    baselines: Sequence[str] = (),
    n_boot: int = 200,
    **degrade_kwargs: Any,
) -> dict[str, Any]:
    """mAP of ``detector`` on degraded, enhanced (one entry per enhancer) and clean versions of ``items``.

    ``"bootstrap"``: paired bootstrap intervals over the test images of AP@0.5 (recomputed on each resample), of
    each recovery and of each enhancer's recovery minus the best of ``baselines``
    (:func:`~dpe_monai.evaluators.bootstrap.paired_recovery`, ``n_boot`` resamples).
    """
    check_items(items, "test", ("image", "boxes"))
    inputs = ["degraded", *enhancers, "clean"]
    preds: dict[str, list] = {k: [] for k in inputs}
    gts, skipped = [], []
    for item in items:
        loaded = load_clean(item)
        clean = loaded["image"]
        check_boxes(item, clean.shape, len(class_names))
        lq, params = degrade(clean, seed, item_id(item), mode=mode, **degrade_kwargs)
        if not params["applied"]:
            skipped.append(item_id(item))
            continue
        gts.append(_target(item))
        versions = {
            "degraded": lq,
            "clean": clean,
            **{
                k: enhance(for_item(fn, loaded["relative"], params), lq, f"{k} on {item_id(item)}")
                for k, fn in enhancers.items()
            },
        }
        for key in inputs:
            preds[key].append(detect(detector, versions[key]))
    check_scored(len(gts), len(items), len(skipped))
    metric = _coco(class_names)
    results = {k: _map(metric, preds[k], gts) for k in inputs}

    def ap50(idx: np.ndarray) -> dict[str, float]:
        return {k: _map(metric, [preds[k][i] for i in idx], [gts[i] for i in idx])["mAP_50"] for k in inputs}

    boot = {"n_boot": n_boot, **paired_recovery(ap50, len(gts), inputs, baselines, n_boot, seed)} if gts else None
    return {
        "inputs": results,
        "recovery": recovery_table({k: v["mAP_50"] for k, v in results.items()}),
        "recovery_50_95": recovery_table({k: v["mAP_50_95"] for k, v in results.items()}),
        "n_test": len(gts),
        "n_test_boxes": int(sum(len(g["box"]) for g in gts)),
        "skipped": skipped,
        "bootstrap": boot,
    }


class DetectionEvaluator:
    """Train-once, evaluate-many wrapper around :func:`train_detector` and :func:`evaluate_detection`.

    Args:
        class_names: object class names (index order of the items' ``"labels"``).
        seed: seed of training and of the per-item degradation.
        mode: simulator mode.
        train_kwargs: forwarded to :func:`train_detector`.
        degrade_kwargs: forwarded to the simulator (e.g. ``{"brightness_threshold": None}`` for dark images).
    """

    def __init__(
        self,
        class_names: Sequence[str] = ("object",),
        seed: int = 0,
        mode: str = "paper",
        train_kwargs: Mapping[str, Any] | None = None,
        degrade_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.class_names = list(class_names)
        self.seed = seed
        self.mode = mode
        self.train_kwargs = dict(train_kwargs or {})
        self.degrade_kwargs = dict(degrade_kwargs or {})
        self.detector: nn.Module | None = None
        self.train_log: dict[str, Any] = {}

    def fit(self, items: Sequence[Mapping[str, Any]], cache: str | os.PathLike | None = None) -> DetectionEvaluator:
        """Train the detector on the clean ``items`` (or load it from ``cache`` if it was trained there on the same
        items and settings: :func:`~dpe_monai.evaluators.task_cache.load_or_train`)."""
        from dpe_monai.evaluators.task_cache import load_or_train, training_key

        kwargs = {"num_classes": len(self.class_names), **self.train_kwargs}
        check_items(items, "training", ("image", "boxes"))

        def train() -> tuple[nn.Module, dict[str, Any]]:  # images are read and boxes checked only when training
            for item in items:
                check_boxes(item, load_clean(item)["image"].shape, kwargs["num_classes"])
            return train_detector(items, seed=self.seed, **kwargs)

        self.detector, self.train_log = load_or_train(
            cache,
            training_key(items, kwargs, self.seed, code=training_code()),
            lambda: kwargs.get("detector") or build_detector(kwargs["num_classes"]),
            train,
        )
        return self

    def evaluate(
        self,
        items: Sequence[Mapping[str, Any]],
        enhancers: Mapping[str, EnhanceFn],
        baselines: Sequence[str] = (),
        n_boot: int = 200,
    ) -> dict[str, Any]:
        """mAP and recovery on held-out ``items`` for every enhancer, with paired bootstrap intervals (``n_boot``
        resamples) and the differences to the best of ``baselines`` (see :func:`evaluate_detection`)."""
        if self.detector is None:
            raise RuntimeError("call fit() first")
        args = (self.detector, items, enhancers, self.class_names, self.seed, self.mode)
        out = evaluate_detection(*args, baselines=baselines, n_boot=n_boot, **self.degrade_kwargs)
        out["train"] = self.train_log
        return out
