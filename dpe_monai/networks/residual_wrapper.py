"""Give any image-to-image network DPENet's I/O convention, so baselines (MONAI ``BasicUNet``) train and run alike."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GlobalResidualNet"]


class GlobalResidualNet(nn.Module):
    """Wrap ``network`` as an enhancer in DPENet's convention: ``[0, 1] -> [0, 1]`` with a global residual.

    ``y = (tanh(network(2x - 1) + (2x - 1)) + 1) / 2``, exactly DPENet's head (its ``global_residual`` and tanh), so an
    unbounded network such as MONAI's ``BasicUNet`` becomes a bounded enhancer that starts near the identity. The
    input is replicate-padded to a multiple of ``multiple`` and the output cropped back, so any size works.

    Bundle config example (``configs/basicunet.json``)::

        "network_def": {"_target_": "dpe_monai.networks.residual_wrapper.GlobalResidualNet",
                        "network": {"_target_": "BasicUNet", "spatial_dims": 2, "in_channels": 3, "out_channels": 3}}

    Args:
        network: maps ``(B, C, *spatial)`` to ``(B, C, *spatial)``.
        in_channels: ``C`` (read by :class:`~dpe_monai.inference.Enhancer`).
        multiple: pad spatial sizes to a multiple of this (16 for a 4-level U-Net).
    """

    def __init__(self, network: nn.Module, in_channels: int = 3, multiple: int = 16) -> None:
        super().__init__()
        self.network = network
        self.in_channels = int(in_channels)
        self.out_channels = int(in_channels)
        self.multiple = int(multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Enhance ``x`` ``(B, C, *spatial)`` in [0, 1]; returns the same shape in [0, 1]."""
        spatial = x.shape[2:]
        pads: list[int] = []
        lead: list[int] = []
        for s in spatial:
            extra = (s + self.multiple - 1) // self.multiple * self.multiple - s  # as in DPENet (torch.compile)
            lead.append(extra // 2)
            pads = [extra // 2, extra - extra // 2] + pads
        xs = F.pad(x * 2.0 - 1.0, pads, mode="replicate")
        y = (torch.tanh(self.network(xs) + xs) + 1.0) * 0.5
        for d, size in enumerate(spatial):
            y = y.narrow(2 + d, lead[d], size)
        return y
