"""The one precision policy: what ``precision="auto"`` means for training and inference, decided by measurement.

Machines differ: some CPUs here run bf16 natively (AVX-512 BF16 / AMX), others only AVX2, where bf16 convolutions
are about 10x slower than fp32. So ``"auto"`` never assumes: bf16 is chosen only when

1. the device advertises native bf16 (CUDA with bf16 support, or a CPU flag), **and**
2. a measured 3x3 convolution (the network's dominant operation) runs at least ``min_speedup`` times faster in
   bf16 autocast than in fp32 on this device. The speedup is measured once per machine (device name, torch
   version, thread count) and kept in ``~/.cache/dpe-monai/precision.json`` (``$DPE_MONAI_PRECISION_CACHE``; empty:
   measure every time), so repeated runs on one machine make the same choice: a fresh timing on a busy shared
   machine can land on either side of ``min_speedup`` and flip the last bit of a result between runs.

Inference adds a third check of its own (:class:`~dpe_monai.inference.Enhancer`): the network's output on a probe
image in bf16 must match fp32 within a tolerance. fp16 is CUDA-only. The decision is returned with its evidence, so
callers can log it. Depends on torch only; every layer may import it.
"""

from __future__ import annotations

import json
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "autocast",
    "bf16_speedup",
    "cpu_has_native_bf16",
    "machine_key",
    "native_bf16",
    "resolve_amp_dtype",
    "stored_speedup",
]


def cpu_has_native_bf16() -> bool:
    """True when the CPU advertises AVX-512 BF16 or AMX-BF16 (Linux ``/proc/cpuinfo``)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def native_bf16(device: torch.device | str) -> bool:
    """True when ``device`` advertises native bf16 arithmetic."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return dev.type == "cpu" and cpu_has_native_bf16()


def autocast(device: torch.device | str, dtype: torch.dtype | None) -> torch.autocast:
    """``torch.autocast`` for ``device`` that is a no-op when ``dtype`` is None."""
    dev = torch.device(device)
    return torch.autocast(device_type=dev.type, dtype=dtype or torch.float32, enabled=dtype is not None)


@lru_cache(maxsize=8)
def bf16_speedup(device: str = "cpu", size: int = 96, channels: int = 32, repeats: int = 3) -> float:
    """Measured fp32 time / bf16-autocast time of a ``channels``->``channels`` 3x3 conv at ``size``^2 on ``device``.

    Returns:
        The speedup (> 1: bf16 is faster). Cached per device for the life of the process.
    """
    dev = torch.device(device)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(dev).eval()
    x = torch.rand(2, channels, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    conv = conv.to(memory_format=torch.channels_last)

    def timed(dtype: torch.dtype | None) -> float:
        best = float("inf")
        with torch.inference_mode(), autocast(dev, dtype):
            conv(x)  # warm-up (oneDNN primitive creation)
            for _ in range(repeats):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                conv(x)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t)
        return best

    return timed(None) / max(timed(torch.bfloat16), 1e-9)


def machine_key(device: torch.device | str) -> str:
    """What a stored speedup belongs to: the device's name, the torch version and the thread count."""
    dev = torch.device(device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    else:
        name = "unknown cpu"
        try:
            with open("/proc/cpuinfo") as f:
                name = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), name)
        except OSError:
            pass
    return f"{dev.type} | {name} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def _store() -> Path | None:
    path = os.environ.get("DPE_MONAI_PRECISION_CACHE")
    if path is None:
        return Path.home() / ".cache" / "dpe-monai" / "precision.json"
    return Path(path).expanduser() if path else None


def stored_speedup(device: torch.device | str) -> tuple[float, str]:
    """:func:`bf16_speedup` measured once per :func:`machine_key` and kept on disk; returns ``(speedup, source)``.

    ``source`` is the store's path when the value was read from it, else ``"measured"``. An unreadable store is
    measured over; an unwritable one is left alone (the choice is then made per process).
    """
    key, path = machine_key(device), _store()
    table: dict[str, float] = {}
    if path is not None:
        try:
            table = json.loads(path.read_text())
            return float(table[key]), str(path)
        except (OSError, ValueError, KeyError, TypeError):
            table = table if isinstance(table, dict) else {}
    speedup = bf16_speedup(str(torch.device(device)))
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({**table, key: speedup}, indent=1))
            os.replace(tmp, path)
        except OSError:
            pass
    return speedup, "measured"


def resolve_amp_dtype(
    precision: str | None, device: torch.device | str, min_speedup: float = 1.2
) -> tuple[torch.dtype | None, dict[str, Any]]:
    """Map ``"fp32" | "bf16" | "fp16" | "auto"`` to an autocast dtype (``None`` = full fp32) and its evidence.

    Returns:
        ``(dtype, record)``; ``record`` holds ``requested``, ``chosen`` and for ``"auto"`` the ``native`` flag and
        the measured ``speedup``.

    Raises:
        ValueError: unknown precision, or fp16 off CUDA.
    """
    dev = torch.device(device)
    requested = (precision or "fp32").lower()
    record: dict[str, Any] = {"requested": requested}
    if requested in ("fp32", "float32", "none", "false"):
        dtype = None
    elif requested in ("fp16", "float16"):
        if dev.type != "cuda":
            raise ValueError("fp16 autocast is only supported on CUDA; use bf16 or fp32 on CPU")
        dtype = torch.float16
    elif requested in ("bf16", "bfloat16"):
        dtype = torch.bfloat16
    elif requested == "auto":
        record["native"] = native_bf16(dev)
        dtype = None
        if record["native"]:
            record["speedup"], record["speedup_source"] = stored_speedup(dev)
            dtype = torch.bfloat16 if record["speedup"] >= min_speedup else None
        elif dev.type == "cuda":  # no bf16 on this GPU: fp16 autocast (with a GradScaler in training)
            dtype = torch.float16
    else:
        raise ValueError(f"unknown precision {precision!r}; expected fp32, bf16, fp16 or auto")
    record["chosen"] = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    return dtype, record
