"""The DPE generator objective ``L_P = L1 + L_RFL + lambda_G * L_G`` (paper eq. 11)."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from monai.utils import LossReduction
from torch import nn

from dpe_monai.losses.adversarial import generator_adversarial_loss
from dpe_monai.losses.feature_loss import RegularisedFeatureLoss, reduce, sample_mean

__all__ = ["DPELoss"]

_MODES = {
    # mode: (lambda_adv, RFL regulariser)
    "paper": (1e-4, "constant"),
    "reference_code": (1e-3, "product"),
}


class DPELoss(nn.Module):
    """Generator loss of DPE: ``lambda_l1 * L1 + lambda_rfl * L_RFL + lambda_adv * BCE(D(fake), 1)``.

    ``mode="paper"`` (eq. 11): ``lambda_adv = 1e-4`` and the constant-weight regularised feature loss.
    ``mode="reference_code"`` (the authors' repository): ``lambda_adv = 1e-3`` and the product-form RFL
    (gradient difference x feature L1, see :class:`RegularisedFeatureLoss`). Explicit arguments override the mode.

    Example::

        loss_fn = DPELoss()                                  # paper, HED VGG-16 features
        loss_fn = DPELoss(backbone="random")                 # tests / smoke runs
        loss_fn = DPELoss(feature_loss=None)                 # ablation "base": L1 (+ adversarial)
        parts = loss_fn.components(pred, target, d_logits)   # {"l1", "rfl", "adv", "total"}

    Args:
        lambda_l1: weight of the L1 (reconstruction) term.
        lambda_rfl: weight of the feature term; 0 disables it (no backbone is built).
        lambda_adv: weight of the adversarial term; default from ``mode``.
        feature_loss: ``"default"`` builds a :class:`RegularisedFeatureLoss` from ``backbone``/``weights_path``/
            ``mode``; a module ``f(pred, target) -> scalar`` is used as is; ``None`` disables the term.
        mode: ``"paper"`` or ``"reference_code"``.
        backbone: backbone spec for the default feature loss (``"hed_vgg16"``, ``"vgg19"``, ``"random"``).
        weights_path: weights file of the backbone (``"vgg19"`` needs one).
        spatial_dims: 2 or 3, passed to the default feature loss.
        regulariser: override the RFL regulariser (``"constant"``/``"product"``) of the default feature loss.
        reduction: over the batch, as MONAI's losses: ``"mean"`` (default), ``"sum"``, or ``"none"``: ``(B,)``, each
            sample's loss as for a batch of one (a custom ``feature_loss`` must then take ``reduction="none"`` as a
            :class:`RegularisedFeatureLoss` does).

    Shapes: ``pred``/``target`` ``(B, C, *spatial)`` in [0, 1]; ``fake_logits`` = ``D(pred)`` logits ``(B, ...)``
    (not detached), or ``None`` for no adversarial term (pre-training, ablations).
    """

    def __init__(
        self,
        lambda_l1: float = 1.0,
        lambda_rfl: float = 1.0,
        lambda_adv: float | None = None,
        feature_loss: nn.Module | str | None = "default",
        mode: str = "paper",
        backbone: str = "hed_vgg16",
        weights_path: str | os.PathLike | None = None,
        spatial_dims: int = 2,
        regulariser: str | None = None,
        reduction: LossReduction | str = "mean",
    ) -> None:
        super().__init__()
        self.reduction = LossReduction(reduction)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
        default_adv, default_reg = _MODES[mode]
        self.mode = mode
        self.lambda_l1 = float(lambda_l1)
        self.lambda_rfl = float(lambda_rfl)
        self.lambda_adv = float(default_adv if lambda_adv is None else lambda_adv)
        if isinstance(feature_loss, str):
            if feature_loss != "default":
                raise ValueError(f"feature_loss must be a module, None or 'default', got {feature_loss!r}")
            feature_loss = (
                RegularisedFeatureLoss(
                    backbone=backbone,
                    weights_path=weights_path,
                    regulariser=regulariser or default_reg,
                    spatial_dims=spatial_dims,
                    reduction="none" if self.reduction != LossReduction.MEAN else "mean",
                )
                if self.lambda_rfl != 0
                else None
            )
        self.feature_loss = feature_loss
        self.l1 = nn.L1Loss()

    def components(
        self, pred: torch.Tensor, target: torch.Tensor, fake_logits: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Unweighted terms and their weighted sum.

        Returns:
            ``{"l1", "rfl", "adv", "total"}``, scalars (``(B,)`` with ``reduction="none"``); ``total = lambda_l1*l1 +
            lambda_rfl*rfl + lambda_adv*adv``. ``rfl`` is 0 when the feature loss is disabled and ``adv`` is 0 when
            ``fake_logits`` is ``None``.
        """
        use_rfl = self.feature_loss is not None and self.lambda_rfl != 0
        if self.reduction == LossReduction.MEAN:
            zero = pred.new_zeros(())
            l1 = self.l1(pred, target)
            rfl = self.feature_loss(pred, target) if use_rfl else zero
            adv = generator_adversarial_loss(fake_logits) if fake_logits is not None else zero
        else:  # per sample, then reduced
            zero = pred.new_zeros(pred.shape[0])
            l1 = sample_mean((pred - target).abs())
            rfl = self.feature_loss(pred, target) if use_rfl else zero
            if rfl.shape != zero.shape:
                raise ValueError(f"reduction={self.reduction.value!r} needs per-sample feature losses (B,), got "
                                 f"shape {tuple(rfl.shape)}: give the feature loss reduction='none'")  # fmt: skip
            adv = zero
            if fake_logits is not None:
                bce = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits), reduction="none")
                adv = sample_mean(bce)
            l1, rfl, adv = (reduce(t, self.reduction) for t in (l1, rfl, adv))
        total = self.lambda_l1 * l1 + self.lambda_rfl * rfl + self.lambda_adv * adv
        return {"l1": l1, "rfl": rfl, "adv": adv, "total": total}

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, fake_logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The total loss (a scalar; ``(B,)`` with ``reduction="none"``); see :meth:`components`."""
        return self.components(pred, target, fake_logits)["total"]
