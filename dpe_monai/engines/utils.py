"""Small engine helpers: paired-batch preparation, precision selection, EMA."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.utils import CommonKeys as Keys
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from dpe_monai.precision import autocast, cpu_has_native_bf16  # noqa: F401 - re-exported
from dpe_monai.precision import resolve_amp_dtype as _resolve

__all__ = ["PairedBatch", "resolve_amp_dtype", "make_ema", "autocast"]


class PairedBatch:
    """``prepare_batch`` for MONAI engines: returns ``(low_quality, clean)`` moved to ``device``.

    Args:
        input_key: batch key of the degraded input (written by ``RandLowQualityd``).
        target_key: batch key of the clean reference.
        channels_last: convert 4-D tensors to ``torch.channels_last`` memory format.
        context_key: batch key of a whole-image context (``GlobalContextd``); when set and present, the batch is
            returned as MONAI's 4-tuple ``(inputs, targets, (), {"context": ...})`` so the engine's inferer
            passes it to the network (:class:`~dpe_monai.networks.GlobalLocalNet`).
        relative_key: batch key of the route flag (``RelativeFlagd``, :func:`dpe_monai.contract.is_scan`), passed as
            ``relative``.
    """

    def __init__(
        self,
        input_key: str = "lq",
        target_key: str = Keys.IMAGE,
        channels_last: bool = False,
        context_key: str | None = None,
        relative_key: str | None = None,
    ) -> None:
        self.input_key = input_key
        self.target_key = target_key
        self.channels_last = channels_last
        self.context_key = context_key
        self.relative_key = relative_key

    def _move(self, x: torch.Tensor, device: torch.device | str | None, non_blocking: bool) -> torch.Tensor:
        x = torch.as_tensor(x).to(device=device, non_blocking=non_blocking, dtype=torch.float32)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: torch.device | str | None = None,
        non_blocking: bool = False,
        **_: Any,
    ) -> tuple:
        inputs = self._move(batchdata[self.input_key], device, non_blocking)
        target = batchdata.get(self.target_key)
        target = None if target is None else self._move(target, device, non_blocking)
        kwargs = {}
        if self.context_key is not None and self.context_key in batchdata:
            kwargs["context"] = self._move(batchdata[self.context_key], device, non_blocking)
        if self.relative_key is not None and self.relative_key in batchdata:
            kwargs["relative"] = self._move(batchdata[self.relative_key], device, non_blocking).reshape(-1)
        return (inputs, target, (), kwargs) if kwargs else (inputs, target)


def resolve_amp_dtype(precision: str | None, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of the one precision policy (:func:`dpe_monai.precision.resolve_amp_dtype`)."""
    return _resolve(precision, device)[0]


def make_ema(network: torch.nn.Module, decay: float, warmup: bool = True) -> AveragedModel:
    """Exponential moving average of ``network`` weights (BasicSR/NAFNet ``net_g_ema``), buffers included.

    With ``warmup`` the decay at update ``n`` is ``min(decay, (1 + n) / (10 + n))`` (as TensorFlow's
    ``ExponentialMovingAverage(num_updates=...)``), so short runs are not dominated by the initial weights:
    with a fixed 0.999 the random initialisation still weighs 0.999**2000 = 13 % after 2,000 updates.
    """
    if not warmup:
        return AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    def avg_fn(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor | int) -> torch.Tensor:
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        return averaged * d + current * (1.0 - d)

    return AveragedModel(network, avg_fn=avg_fn, use_buffers=True)
