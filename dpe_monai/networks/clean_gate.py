"""Is this image already good? A learned whole-image test that lets good photographs pass through unchanged.

Algorithm 1 degrades only images brighter than ``B_T`` and then darkens and flattens them, so a network trained on
its pairs has never seen a dark *target*: it brightens every dark image it is given. A dermoscopy patch inside a
dark lesion, or a dim retina crop, is such an image, and brightening it erases what a reader needs (the lesion's
blue-grey or dark brown turns to skin colour). The scan path keeps a well-exposed scan's own scale by its window
(``keep_scale``); the colour path had no such test.

:class:`CleanGate` reads a few whole-image statistics that Algorithm 1 moves (contrast and colour relative to the
mean, the 1-99 % range and top, the noise level against the signal) and returns ``p``, the probability that the
image is a good one given as it is, and the pass weight ``w = clip((p - t) / (1 - t), 0, 1)`` (``t = 0.5``: an image
starts to pass when the gate thinks it more likely good than degraded, and passes whole only when the gate is sure).
:class:`~dpe_monai.networks.GlobalLocalNet` (``clean_gate=True``) then returns ``x + (1 - w) * (enhanced - x)`` on
its colour path: a good image comes back unchanged, a degraded one fully enhanced. The gate is trained apart from
the enhancer, as a classifier of clean training images (all of them, dark ones included) against their Algorithm 1
versions in both noise orders (``bundles/dpe_enhancement/scripts/train_clean_gate.py``). An untrained gate says
``p = 0``: enhance everything, as before.

Everything is reductions, a sort and a small MLP (MONAI's :class:`~monai.networks.nets.FullyConnectedNet`): the
gate scripts (TorchScript) and exports to ONNX.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import FullyConnectedNet
from torch import nn

from dpe_monai.networks.nonlocal_means import noise_sigma, strided_sorted

__all__ = ["CleanGate", "channel_top", "check_exposed", "exposure_weight", "flatness_weight", "gate_features"]

#: the statistics :func:`gate_features` returns, in order
FEATURES: tuple[str, ...] = (
    "log_mean",
    "contrast",
    "relative_colour",
    "colour",
    "p99",
    "range_1_99",
    "log_noise",
    "noise_to_contrast",
)


def gate_features(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Whole-image statistics of ``x`` ``(B, C, *spatial)`` in [0, 1]: ``(B, 8)`` float32, in :data:`FEATURES`
    order: the log mean grey level, the grey standard deviation over the mean, the mean channel spread
    (max - min over channels) over the mean and as it is, the grey 99th percentile, the 1-99 % range, the log
    noise level (:func:`~dpe_monai.networks.nonlocal_means.noise_sigma`, the mean of its estimates along the two
    in-plane axes, so a transposed image gives the same statistics) and the noise level over the grey standard
    deviation. A grey image has no channel spread (0)."""
    x = x.float()
    b = x.shape[0]
    grey = x.mean(dim=1).reshape(b, -1)
    mean = grey.mean(dim=1)
    std = grey.std(dim=1)
    colour = (x.amax(dim=1) - x.amin(dim=1)).reshape(b, -1).mean(dim=1)
    q = strided_sorted(grey)
    idx = (torch.tensor([0.01, 0.99], device=x.device) * (q.shape[1] - 1)).round().long()  # symbolic in export
    p1, p99 = q.index_select(1, idx).unbind(1)  # no .item(): also on meta tensors (FLOP counting)
    sigma = 0.5 * (noise_sigma(x) + noise_sigma(x.transpose(2, 3)))  # both in-plane axes: a transpose reads the same
    cols = [
        torch.log(mean + eps),
        std / (mean + eps),
        colour / (mean + eps),
        colour,
        p99,
        p99 - p1,
        torch.log(sigma + 1e-4),
        sigma / (std + 1e-4),
    ]
    return torch.stack(cols, dim=1)


class CleanGate(nn.Module):
    """Pass weight ``w = clip((p - threshold) / (1 - threshold), 0, 1)`` of ``p = sigmoid(mlp((gate_features(x) -
    shift) / scale))``: ``(B, C, *spatial)`` in [0, 1] -> ``(B,)`` in [0, 1] (:meth:`probability`: ``p``).

    Args:
        hidden: the MLP's hidden widths.
        features: the number of statistics (:data:`FEATURES`).
        threshold: the probability from which an image starts to pass (0.5; higher trades pass-through of good
            images for enhancement of degraded ones the gate mistakes for good: on the validation split 0.5 left 27
            of 277 good images below 35 dB of themselves, against 99 without the gate, for 0.15-0.17 dB of the
            degraded images' PSNR; 0.9 left 32 for 0.06-0.07 dB; ``train_clean_gate.py --check``).

        exposed: ``(a, b)``, ``0 < a < b <= 1``: besides the learned test, an image whose bright end ``top``
            reaches ``b`` passes whole (from ``a`` on, partly: ``w = max(w, clip((top - a) / (b - a), 0, 1))``);
            ``top`` is the largest of the grey 99th percentile and each channel's own 99th percentile
            (:func:`channel_top`), so saturated colour on a mid-grey field (coloured text or a colour-Doppler
            overlay on a grey image) counts as exposed too. Algorithm 1's brightness factor is at most 0.8 and
            scales every channel, and every realistic degradation darkens the image or only adds noise, so no
            degraded image the enhancer was made for ends near white in any channel (the collection's degraded
            colour test images: every channel's 99th percentile at most 0.77), while the MLP, which never saw such
            images, can say anything about them (a near-white secondary capture came back with dark blobs; a
            mid-grey secondary capture with red, green and blue text came back white). None: the learned test alone.

    ``shift`` and ``scale`` (buffers, saved with the weights) standardise the statistics; the training script sets
    them from its training set. The output layer starts at zero weight and a large negative bias, so an untrained
    gate passes nothing (``p`` about 0) but what ``exposed`` passes.
    """

    def __init__(
        self,
        hidden: Sequence[int] = (32, 32),
        features: int = len(FEATURES),
        threshold: float = 0.5,
        exposed: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}.")
        self.threshold = float(threshold)
        self.exposed = check_exposed(exposed)
        self.p99_column = FEATURES.index("p99")
        self.range_column = FEATURES.index("range_1_99")
        self.mlp = FullyConnectedNet(features, 1, list(hidden), act="PRELU")
        self.register_buffer("shift", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))
        nn.init.zeros_(self.mlp.output.weight)
        nn.init.constant_(self.mlp.output.bias, -20.0)

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        """The gate's logit ``(B,)`` (training uses it with ``BCEWithLogitsLoss``)."""
        return self.logit_of_features(gate_features(x))

    def logit_of_features(self, f: torch.Tensor) -> torch.Tensor:
        """The logit ``(B,)`` of precomputed :func:`gate_features` ``(B, 8)``."""
        return self.mlp((f - self.shift) / self.scale)[:, 0]

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """``p`` ``(B,)``: the probability that ``x`` is a good image given as it is."""
        return torch.sigmoid(self.logit(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The pass weight ``w`` ``(B,)`` in [0, 1] of whole images ``x`` ``(B, C, *spatial)`` in [0, 1]: the learned
        test's, raised to 1 for an image with (almost) no range (:func:`flatness_weight`) and, with ``exposed``, for one
        ending near white in grey or in any channel."""
        f = gate_features(x)
        p = torch.sigmoid(self.logit_of_features(f))
        w = ((p - self.threshold) / (1.0 - self.threshold)).clamp(0.0, 1.0)
        if self.exposed is not None:
            top = torch.maximum(f[:, self.p99_column], channel_top(x))
            w = torch.maximum(w, exposure_weight(top, self.exposed))
        return torch.maximum(w, flatness_weight(f[:, self.range_column]))


def channel_top(x: torch.Tensor, q: float = 0.99) -> torch.Tensor:
    """The largest per-channel ``q`` quantile of ``x`` ``(B, C, *spatial)``: ``(B,)`` (a channel's bright end; for a
    grey image the grey one). Sorted on the shared strided sample (:func:`strided_sorted`), export-friendly."""
    b, c = x.shape[0], x.shape[1]
    s = strided_sorted(x.float().reshape(b * c, -1))
    idx = (torch.tensor([q], device=x.device) * (s.shape[1] - 1)).round().long()
    return s.index_select(1, idx).reshape(b, c).amax(dim=1)


def check_exposed(exposed: Sequence[float] | None) -> tuple[float, float] | None:
    """``exposed`` as a float pair ``(a, b)`` with ``0 < a < b <= 1``, or None; anything else raises ``ValueError``."""
    if exposed is None:
        return None
    if len(exposed) != 2 or not 0.0 < exposed[0] < exposed[1] <= 1.0:
        raise ValueError(f"exposed must be (a, b) with 0 < a < b <= 1, or None; got {exposed!r}.")
    return float(exposed[0]), float(exposed[1])


def flatness_weight(width: torch.Tensor, below: float = 0.5e-3, above: float = 1e-3) -> torch.Tensor:
    """``clip((above - width) / (above - below), 0, 1)``: 1 for an image whose value range ``width`` (in [0, 1]
    units) is under ``below``, 0 from ``above`` on: the tone map's own floor on a window's width (1e-3, a quarter of
    an 8-bit level). Such an image holds nothing to stretch and passes whole: a black one, or a nearly empty one
    whose few non-black pixels fall outside its 0.5-99.5 % window (it was stretched to mid-grey around white specks)."""
    return ((above - width) / (above - below)).clamp(0.0, 1.0)


def exposure_weight(top: torch.Tensor, exposed: tuple[float, float]) -> torch.Tensor:
    """``clip((top - a) / (b - a), 0, 1)`` for ``(a, b) = exposed``: how surely an image whose bright end (a high
    percentile, in [0, 1]) is ``top`` is exposed rather than darkened (1 from ``b`` on, 0 up to ``a``)."""
    return ((top - exposed[0]) / (exposed[1] - exposed[0])).clamp(0.0, 1.0)
