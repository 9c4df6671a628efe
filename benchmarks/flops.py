"""FLOP counts and the machine's measured peak, and the timing rule the speed benchmark uses for both.

:func:`gflops` counts a network's forward FLOPs on the meta device; :func:`measure_peak` times a matmul and a 3x3
convolution in fp32 and bf16, so achieved GFLOP/s can be read against what this machine does; :func:`time_call`
is the median-of-repeats timer behind every latency in ``benchmarks/results/speed.json``.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def nlm_flops(layer: nn.Module, shape: torch.Size) -> int:
    """Arithmetic of one :class:`~dpe_monai.networks.NonLocalMeans` call on an input of ``shape`` ``(B, C, *spatial)``,
    counted per output pixel and search shift: the squared difference and its channel mean (``3C``), the patch mean
    (``2 (p - 1) + 1`` as separable sums), the weight (subtract, clamp, divide, exponential, cut-off: 5) and the
    weighted sums (``2C + 1``). Elementwise work that ``FlopCounterMode`` does not see; ``exp`` counts as one."""
    b, c = int(shape[0]), int(shape[1])
    pixels = 1
    for n in shape[2:]:
        pixels *= int(n)
    per_shift = 3 * c + 2 * (layer.patch_size - 1) + 1 + 5 + 2 * c + 1
    return b * pixels * len(layer.shifts) * per_shift


def gflops(net: nn.Module, size: int, channels: int = 3) -> float:
    """Forward GFLOP at ``size``^2, counted on the meta device: 2 x multiply-accumulates of convolutions and matmuls
    (``FlopCounterMode``) plus the non-local-means layers' elementwise arithmetic (:func:`nlm_flops`)."""
    from torch.utils.flop_counter import FlopCounterMode

    from dpe_monai.networks.nonlocal_means import NonLocalMeans

    meta = copy.deepcopy(net).to("meta")
    extra = [0]

    def count(layer: nn.Module, args: tuple, _out: Any) -> None:
        extra[0] += nlm_flops(layer, args[0].shape)

    hooks = [m.register_forward_hook(count) for m in meta.modules() if isinstance(m, NonLocalMeans)]
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            meta(torch.empty(1, channels, size, size, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return (counter.get_total_flops() + extra[0]) / 1e9


def time_call(fn: Callable[[], Any], warmup: int, repeats: int) -> tuple[float, float]:
    """``(median seconds over repeats, seconds of the first call)``; CUDA work is synchronised before each reading."""
    if torch.cuda.is_available():
        inner = fn

        def fn() -> Any:
            out = inner()
            torch.cuda.synchronize()
            return out

    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), first


def measure_peak(device: torch.device, size: int, repeats: int = 3) -> dict[str, float]:
    """Peak GFLOP/s of a ``size``^2 matmul and of a 3x3 64->64 convolution at 256^2 (channels-last), fp32 and bf16.

    Without native bf16 (e.g. AVX2-only CPUs, where bf16 runs emulated and about 10x slower) the bf16 matmul is
    measured at ``min(size, 512)``: enough to show the gap, without minutes of emulated arithmetic.
    """
    from dpe_monai.precision import native_bf16

    out: dict[str, float] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        n = size if name == "fp32" or native_bf16(device) else min(size, 512)
        out[f"matmul_{name}_size"] = n
        a = torch.randn(n, n, device=device, dtype=dtype)
        sec, _ = time_call(lambda a=a: torch.mm(a, a), 1, repeats)
        out[f"matmul_{name}"] = 2 * n**3 / sec / 1e9
        conv = nn.Conv2d(64, 64, 3, padding=1).to(device, dtype).to(memory_format=torch.channels_last)
        x = torch.randn(1, 64, 256, 256, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            sec, _ = time_call(lambda conv=conv, x=x: conv(x), 1, repeats)
        out[f"conv3x3_{name}"] = 2 * 64 * 64 * 9 * 256 * 256 / sec / 1e9
    return out
