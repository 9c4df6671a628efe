"""Building blocks of the DPE generator, written with MONAI's layer factories.

Every block takes ``spatial_dims`` so the same code builds 2-D and 3-D networks.
"""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Act, Conv
from torch import nn


def conv(
    spatial_dims: int, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, padding_mode: str = "zeros"
) -> nn.Module:
    """A ``Conv[CONV, spatial_dims]`` with 'same' padding for odd kernels (``padding_mode`` as in torch)."""
    return Conv[Conv.CONV, spatial_dims](
        in_ch, out_ch, kernel_size=kernel_size, stride=stride, padding=kernel_size // 2, padding_mode=padding_mode
    )


class ResidualBlock(nn.Module):
    """``x + conv3x3(PReLU(conv3x3(x)))`` (paper eq. 1). Shape in = shape out: ``(B, C, *spatial)``.

    Args:
        spatial_dims: 2 or 3.
        channels: number of feature channels ``C``.
    """

    def __init__(self, spatial_dims: int, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv(spatial_dims, channels, channels), Act[Act.PRELU](), conv(spatial_dims, channels, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class GatedConv(nn.Module):
    """Contextual gate on a skip connection (paper eqs. 4-6): ``LeakyReLU(W_a * x) * sigmoid(W_b * x)``.

    Following the authors' code the two 3x3 convolutions use reflection padding and the LeakyReLU slope is 0.2.
    Shape in = shape out: ``(B, C, *spatial)``.

    Args:
        spatial_dims: 2 or 3.
        channels: number of feature channels ``C``.
        negative_slope: LeakyReLU slope.
    """

    def __init__(self, spatial_dims: int, channels: int, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.feature = conv(spatial_dims, channels, channels, padding_mode="reflect")
        self.gate = conv(spatial_dims, channels, channels, padding_mode="reflect")
        self.act = Act[Act.LEAKYRELU](negative_slope=negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.feature(x)) * torch.sigmoid(self.gate(x))
