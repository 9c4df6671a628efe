"""An LPIPS-like deep feature distance on a frozen, offline VGG (NOT LPIPS)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from monai.metrics.regression import RegressionMetric
from monai.utils import MetricReduction
from torch import nn

from dpe_monai.losses.backbones import VGGFeatures

__all__ = ["FeatureDistanceMetric", "compute_feature_distance", "DEFAULT_FEATURE_LAYERS"]

#: the five layers LPIPS uses on VGG-16 (the last ReLU of each block).
DEFAULT_FEATURE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")


def _unit(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


def compute_feature_distance(backbone: nn.Module, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image feature distance ``(B,)``: per layer, the channel vectors at each position are scaled to unit
    length, the squared Euclidean distance between the two images' vectors is averaged over positions; the result
    is averaged over the backbone's layers. Range [0, 4] ([0, 2] after a ReLU); 0 for identical images.

    Args:
        backbone: returns a list of feature maps ``(B, C_l, *spatial_l)`` for a ``(B, C, *spatial)`` image.
        y_pred: ``(B, C, *spatial)`` in [0, 1].
        y: same shape as ``y_pred``.
    """
    if y_pred.shape != y.shape:
        raise ValueError(f"y_pred and y shapes differ: {tuple(y_pred.shape)} vs {tuple(y.shape)}")
    per_layer = []
    for a, b in zip(backbone(y_pred), backbone(y)):
        d = (_unit(a) - _unit(b)).pow(2).sum(dim=1)  # (B, *spatial_l)
        per_layer.append(d.flatten(1).mean(dim=1))
    return torch.stack(per_layer, dim=1).mean(dim=1)


class FeatureDistanceMetric(RegressionMetric):
    """LPIPS-*like* perceptual distance, accumulated over iterations like MONAI's regression metrics.

    What it computes: :func:`compute_feature_distance` on a frozen VGG at several layers (default the five LPIPS
    layers ``relu1_2 .. relu5_3``), channel-wise unit normalisation, mean squared distance, plain average over
    layers. Lower is better.

    What it is not: this is **not LPIPS**. LPIPS weights each channel with linear heads calibrated on human
    perceptual judgements (the BAPPS data) and uses ImageNet VGG/AlexNet features; here there are no learned
    weights, and the default backbone is HED's VGG-16 (ImageNet-initialised, then fine-tuned for edge detection),
    the only VGG weights that install offline. Values are therefore **not comparable to published LPIPS
    numbers**; use it only to rank methods evaluated with the same backbone and layers. A torchvision VGG-19 can
    be used instead (``backbone="vgg19", weights_path=...``, layers ``relu1_2, relu2_2, relu3_4, relu4_4,
    relu5_4``).

    Args:
        backbone: ``"hed_vgg16"`` (default), ``"vgg19"``, ``"random"`` or a ready module returning a list of
            feature maps.
        weights_path: backbone weights file (needed for ``"vgg19"``).
        layers: layer names; default :data:`DEFAULT_FEATURE_LAYERS` (VGG-16 names).
        reduction: MONAI reduction of the ``(N, 1)`` buffer.
        get_not_nans: ``aggregate`` also returns the not-nan count.

    Inputs: ``y_pred``, ``y`` of shape ``(B, C, H, W)`` (or ``(B, C, H, W, D)``, per slice along the last axis),
    C = 1 or 3, in [0, 1].
    """

    def __init__(
        self,
        backbone: str | nn.Module = "hed_vgg16",
        weights_path: str | os.PathLike | None = None,
        layers: Sequence[str] | None = None,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(reduction=reduction, get_not_nans=get_not_nans)
        if isinstance(backbone, str):
            backbone = VGGFeatures(backbone, weights_path=weights_path, layers=list(layers or DEFAULT_FEATURE_LAYERS))
        self.backbone = backbone

    def _compute_metric(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        backbone = self.backbone
        param = next(backbone.parameters(), None)
        if param is not None and param.device != y_pred.device:
            backbone.to(y_pred.device)
        with torch.no_grad():
            return compute_feature_distance(backbone, y_pred.float(), y.float()).unsqueeze(1)
