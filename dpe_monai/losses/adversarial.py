"""Conditional-GAN losses of DPE (paper eq. 10) on discriminator logits.

:class:`~dpe_monai.networks.DPEDiscriminator` returns logits; the paper's sigmoid followed by binary cross-entropy is
computed here as ``binary_cross_entropy_with_logits``, the same function in a numerically stable form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DiscriminatorLoss",
    "GeneratorAdversarialLoss",
    "discriminator_loss",
    "generator_adversarial_loss",
    "noisy_labels",
]

REAL_LABEL_RANGE = (0.7, 1.0)
FAKE_LABEL_RANGE = (0.0, 0.3)


def noisy_labels(
    logits: torch.Tensor, low: float, high: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One label per sample drawn from ``U[low, high)``, broadcast to the shape of ``logits`` ``(B, ...)``.

    Args:
        logits: discriminator output ``(B, ...)``; gives the batch size, dtype and device.
        low: lower bound, >= 0.
        high: upper bound, <= 1 (binary cross-entropy targets must lie in [0, 1]).
        generator: optional CPU ``torch.Generator`` for reproducible labels.
    """
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"label range must satisfy 0 <= low <= high <= 1, got [{low}, {high})")
    u = torch.rand(logits.shape[0], generator=generator, dtype=torch.float32)
    labels = (low + (high - low) * u).to(device=logits.device, dtype=logits.dtype)
    return labels.view(-1, *([1] * (logits.ndim - 1))).expand_as(logits)


def discriminator_loss(
    real_logits: torch.Tensor,
    fake_logits: torch.Tensor,
    label_noise: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Discriminator loss ``BCE(D(real), 1) + BCE(D(fake), 0)`` on logits (each term a mean over its elements).

    With ``label_noise=True`` the targets follow the authors' code ("noisy labels"): real ~ U[0.7, 1.0), fake ~
    U[0, 0.3), one label per sample. The authors draw real labels from U[0.7, 1.2); targets above 1 are not
    valid cross-entropy targets (``F.binary_cross_entropy`` raises "all elements of target should be between 0 and
    1" in current PyTorch, and with logits the loss becomes unbounded below), so the range is capped at 1.

    Args:
        real_logits: ``D`` logits for clean (reference) images, ``(B, ...)``.
        fake_logits: ``D`` logits for generated images, ``(B, ...)`` (detach the generator output before ``D``).
        label_noise: use noisy labels instead of hard 1 / 0.
        generator: optional ``torch.Generator`` (CPU) for the label noise.

    Returns:
        A scalar tensor.
    """
    if label_noise:
        real_t = noisy_labels(real_logits, *REAL_LABEL_RANGE, generator=generator)
        fake_t = noisy_labels(fake_logits, *FAKE_LABEL_RANGE, generator=generator)
    else:
        real_t, fake_t = torch.ones_like(real_logits), torch.zeros_like(fake_logits)
    return F.binary_cross_entropy_with_logits(real_logits, real_t) + F.binary_cross_entropy_with_logits(
        fake_logits, fake_t
    )


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator adversarial loss ``L_G = BCE(D(fake), 1)`` = ``-mean log D(I_U, I_G)`` (paper eq. 10), on logits.

    Args:
        fake_logits: ``D`` logits for generated images, ``(B, ...)`` (not detached).

    Returns:
        A scalar tensor.
    """
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


class DiscriminatorLoss(nn.Module):
    """Module form of :func:`discriminator_loss`: ``forward(real_logits, fake_logits) -> scalar``.

    Args:
        label_noise: use the authors' noisy labels (see :func:`discriminator_loss`).
        seed: seed of the label-noise generator (``None``: the global RNG).
    """

    def __init__(self, label_noise: bool = False, seed: int | None = None) -> None:
        super().__init__()
        self.label_noise = label_noise
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def forward(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return discriminator_loss(real_logits, fake_logits, self.label_noise, self.generator)


class GeneratorAdversarialLoss(nn.Module):
    """Module form of :func:`generator_adversarial_loss`: ``forward(fake_logits) -> scalar``."""

    def forward(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return generator_adversarial_loss(fake_logits)
