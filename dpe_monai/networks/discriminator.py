"""The DPE discriminator: nine convolutions, conditional by default (paper Sec. II-B, eq. 10)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Act, Norm
from torch import nn

from dpe_monai.networks.blocks import conv

__all__ = ["DPEDiscriminator"]


class DPEDiscriminator(nn.Module):
    """Nine-convolution discriminator.

    Layers 1-8 are 3x3 convolutions followed by swish; layers 3, 5 and 7 halve the resolution and double the
    depth (``channels`` = 64, 128, 256, 512 by default), layer 9 is a 1x1 convolution to one channel.

    The paper activates layer 9 with a sigmoid. This module returns the **logits** (a patch map of shape
    ``(B, 1, *spatial / 8)``); the adversarial losses in :mod:`dpe_monai.losses` apply the sigmoid inside a
    numerically stable BCE-with-logits, which is the same function. Use :meth:`probability` for ``D(.)`` itself.

    Conditional (default): ``forward(candidate, condition)`` concatenates the low-quality input ``condition``
    with the candidate (clean or generated) along channels, i.e. ``D(I_U, I_x)`` as in eq. 10.
    Unconditional (``conditional=False``, the authors' code): ``forward(candidate)``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of one image (the candidate); the conditional model sees ``2 * in_channels``.
        conditional: see above.
        channels: depth of the four stages.
        norm: optional normalisation after convs 2-8 (e.g. ``"batch"`` as the authors' code); paper: none.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        conditional: bool = True,
        channels: Sequence[int] = (64, 128, 256, 512),
        norm: str | None = None,
    ) -> None:
        super().__init__()
        self.conditional = conditional
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        c_prev = in_channels * (2 if conditional else 1)
        idx = 0
        for stage, c in enumerate(channels):
            for j in range(2):
                idx += 1
                stride = 2 if (j == 0 and stage > 0) else 1  # layers 3, 5, 7
                layers.append(conv(spatial_dims, c_prev, c, stride=stride))
                if norm is not None and idx > 1:
                    layers.append(Norm[norm, spatial_dims](c))
                layers.append(Act[Act.SWISH]())
                c_prev = c
        layers.append(conv(spatial_dims, c_prev, 1, kernel_size=1))
        self.net = nn.Sequential(*layers)

    def forward(self, candidate: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Return logits ``(B, 1, *spatial')`` for ``candidate`` (and ``condition``), both ``(B, C, *spatial)``."""
        if self.conditional:
            if condition is None:
                raise ValueError("a conditional DPEDiscriminator needs the low-quality input as `condition`")
            candidate = torch.cat([condition, candidate], dim=1)
        return self.net(candidate)

    def probability(self, candidate: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """``D(.)`` in (0, 1), the paper's sigmoid output."""
        return torch.sigmoid(self.forward(candidate, condition))
