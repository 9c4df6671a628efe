"""Regularised feature loss (paper eq. 9) and the authors' gradient-difference-weighted variant."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from monai.utils import LossReduction
from torch import nn

from dpe_monai.losses.backbones import VGGFeatures

__all__ = ["RegularisedFeatureLoss", "gradient_difference", "reduce"]


def reduce(per_sample: torch.Tensor, reduction: LossReduction | str) -> torch.Tensor:
    """``(B,)`` per-sample losses reduced as MONAI's losses do: ``"none"`` keeps them, ``"mean"`` / ``"sum"``."""
    reduction = LossReduction(reduction)
    if reduction == LossReduction.NONE:
        return per_sample
    return per_sample.mean() if reduction == LossReduction.MEAN else per_sample.sum()


def sample_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of each sample of ``x`` ``(B, ...)``: ``(B,)``."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


def gradient_difference(
    pred: torch.Tensor, target: torch.Tensor, reduction: LossReduction | str = "mean"
) -> torch.Tensor:
    """Finite-difference mismatch between two images, as in the authors' code.

    ``sum_{axes} sum |d_axis(pred) - d_axis(target)| / numel(pred)``, with ``d_axis`` the forward difference along
    each spatial axis (width and height for 2-D; depth too for 3-D). The divisor is ``B * C * (spatial size)``,
    not the (smaller) number of differences, exactly as the reference implementation.

    Args:
        pred: ``(B, C, *spatial)``.
        target: same shape as ``pred``.
        reduction: ``"mean"`` (the batch's value above), ``"sum"`` or ``"none"``: each sample's value as for a
            batch of one, ``(B,)``.

    Returns:
        A non-negative scalar tensor (``(B,)`` with ``"none"``).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    total = pred.new_zeros(pred.shape[0])
    for axis in range(2, pred.ndim):
        total = total + (torch.diff(pred, dim=axis) - torch.diff(target, dim=axis)).abs().flatten(1).sum(dim=1)
    return reduce(total / pred[0].numel(), reduction)


class RegularisedFeatureLoss(nn.Module):
    """Regularised feature loss ``L_RFL`` of DPE (paper eq. 9).

    ``regulariser="constant"`` (the paper): ``lambda_r * mean |psi(pred) - psi(target)|`` where the mean over the
    feature map is the paper's ``1 / (H_j W_j C_j)`` normalisation (and the batch).

    ``regulariser="product"`` (the authors' code): ``lambda_r * gradient_difference(pred, target) *
    mean |psi(pred) - psi(target)|`` -- the "total variation regulariser" becomes a data-dependent weight. Both
    factors vanish for identical images, so this term is quadratic near the optimum and much smaller than L1.

    ``psi`` is a frozen :class:`~dpe_monai.losses.backbones.VGGFeatures`. The paper uses an ImageNet VGG-19; no
    package ships those weights offline, so the default is HED's VGG-16 ``conv5_3`` (pre-ReLU), see
    docs/LOSSES.md. Pass ``backbone="vgg19", weights_path=...`` with a torchvision VGG-19 state dict to follow the
    paper. With several ``layer`` names, the per-layer means are averaged.

    Args:
        backbone: ``"hed_vgg16"``, ``"vgg19"``, ``"random"``, or a ready :class:`VGGFeatures` (or any module
            mapping images to a list of feature maps).
        weights_path: weights file for the backbone (required for ``"vgg19"``).
        layer: feature layer name(s); default ``conv5_3`` (VGG-16) / ``conv5_4`` (VGG-19).
        lambda_r: the regulariser weight ``lambda_R``.
        regulariser: ``"constant"`` or ``"product"``.
        spatial_dims: 2 for images ``(B, C, H, W)``, 3 for volumes ``(B, C, H, W, D)`` (VGG applied per slice along
            the last axis, MONAI's layout).
        seed: seed of the ``"random"`` backbone.
        input_norm: override the backbone's input normalisation (see :class:`VGGFeatures`).
        reduction: over the batch, as MONAI's losses: ``"mean"`` (default), ``"sum"``, or ``"none"`` (``(B,)``: each
            sample's loss as for a batch of one). With ``"product"``, ``"mean"`` keeps the authors' definition (the
            product of the batch's two means), which is not the mean of the per-sample products.

    Shapes: ``forward(pred, target)`` with both ``(B, C, *spatial)``, C in {1, 3}, values in [0, 1] -> scalar
    (``(B,)`` with ``reduction="none"``).
    ``target`` is treated as a constant: its features are computed without gradient.
    """

    def __init__(
        self,
        backbone: str | nn.Module = "hed_vgg16",
        weights_path: str | os.PathLike | None = None,
        layer: str | Sequence[str] | None = None,
        lambda_r: float = 1.0,
        regulariser: str = "constant",
        spatial_dims: int = 2,
        seed: int = 0,
        input_norm: str | None = None,
        reduction: LossReduction | str = "mean",
    ) -> None:
        super().__init__()
        self.reduction = LossReduction(reduction)
        if regulariser not in ("constant", "product"):
            raise ValueError(f"regulariser must be 'constant' or 'product', got {regulariser!r}")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if isinstance(backbone, str):
            backbone = VGGFeatures(backbone, weights_path=weights_path, layers=layer, input_norm=input_norm, seed=seed)
        self.backbone = backbone
        self.lambda_r = float(lambda_r)
        self.regulariser = regulariser
        self.spatial_dims = spatial_dims

    def feature_distance(
        self, pred: torch.Tensor, target: torch.Tensor, reduction: LossReduction | str = "mean"
    ) -> torch.Tensor:
        """``mean |psi(pred) - psi(target)|`` averaged over the configured layers: a scalar, or ``(B,)`` per sample
        with ``reduction="none"`` (``"sum"``: their sum)."""
        with torch.no_grad():
            f_target = self.backbone(target)
        f_pred = self.backbone(pred)
        if isinstance(f_pred, torch.Tensor):
            f_pred, f_target = [f_pred], [f_target]
        if LossReduction(reduction) == LossReduction.MEAN:
            return torch.stack([(a - b).abs().mean() for a, b in zip(f_pred, f_target)]).mean()
        per_sample = torch.stack([sample_mean((a - b).abs()) for a, b in zip(f_pred, f_target)]).mean(dim=0)
        return reduce(per_sample, reduction)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss between ``pred`` and ``target``, ``(B, C, *spatial)`` in [0, 1]; a scalar (``(B,)`` with
        ``reduction="none"``)."""
        if pred.shape != target.shape:
            raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
        if pred.ndim != self.spatial_dims + 2:
            raise ValueError(f"expected {self.spatial_dims + 2}-D input (B, C, *spatial), got {tuple(pred.shape)}")
        if self.reduction == LossReduction.MEAN:
            loss = self.feature_distance(pred, target)
            if self.regulariser == "product":
                loss = gradient_difference(pred, target) * loss
            return self.lambda_r * loss
        loss = self.feature_distance(pred, target, "none")
        if self.regulariser == "product":
            loss = gradient_difference(pred, target, "none") * loss
        return reduce(self.lambda_r * loss, self.reduction)
