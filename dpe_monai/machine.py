"""The machine a run happens on, as results and reports record it: CPU model, cores, threads, bf16, GPU, versions."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

__all__ = ["machine_summary"]


def machine_summary() -> dict[str, Any]:
    """``cpu`` (the model name from ``/proc/cpuinfo`` where there is one), ``logical_cpus``, ``torch_threads``,
    ``native_bf16`` (:func:`~dpe_monai.precision.cpu_has_native_bf16`), ``cuda`` (the GPU's name or None), and the
    ``python``, ``torch`` and ``monai`` versions."""
    import monai

    from dpe_monai.precision import cpu_has_native_bf16

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "native_bf16": cpu_has_native_bf16(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
    }
