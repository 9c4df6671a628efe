"""The machine a run happens on, as results and reports record it: CPU model, cores, caches, threads, bf16, GPU,
versions.

Two machines that both call themselves "AMD EPYC" can pick different oneDNN kernels (their cache sizes differ), and a
task model trained for 1,500 iterations on each can then end apart; the CPU's family / model / stepping, its caches
and the numerical libraries' versions are recorded so such runs can be told apart afterwards.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

__all__ = ["machine_summary"]


def _cpu_id() -> tuple[str, str | None]:
    """The model name and ``"family F model M stepping S"`` from ``/proc/cpuinfo`` (the platform's name and None
    where there is no such file)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    ident = None
    if "cpu family" in fields:
        ident = f"family {fields['cpu family']} model {fields.get('model', '?')} stepping {fields.get('stepping', '?')}"
    return name, ident


def _caches() -> dict[str, str]:
    """CPU 0's cache sizes by level and type (``{"L1d": "32K", "L2": "1024K", ...}``; empty where sysfs has none)."""
    out: dict[str, str] = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        out[f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")] = size
    return out


def machine_summary() -> dict[str, Any]:
    """``cpu`` (the model name from ``/proc/cpuinfo`` where there is one), ``cpu_id`` (family / model / stepping or
    None), ``cpu_caches``, ``logical_cpus``, ``torch_threads``, ``native_bf16``
    (:func:`~dpe_monai.precision.cpu_has_native_bf16`), ``cuda`` (the GPU's name or None), and the ``python``,
    ``torch``, ``monai``, ``numpy`` and ``scipy`` versions."""
    import monai
    import numpy
    import scipy

    from dpe_monai.precision import cpu_has_native_bf16

    cpu, ident = _cpu_id()
    return {
        "cpu": cpu,
        "cpu_id": ident,
        "cpu_caches": _caches(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "native_bf16": cpu_has_native_bf16(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }
