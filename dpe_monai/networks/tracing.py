"""Whether the code is being recorded into a graph, so layers take their branch-free paths."""

from __future__ import annotations

import torch

__all__ = ["tracing"]


def tracing() -> bool:
    """True while ``torch.export``, ``torch.compile``, the ONNX exporter or ``torch.jit.trace`` record the code.

    A data-dependent Python branch (``if bool(mask.any())``) would be baked into such a graph, so the callers compute
    every path and select with ``torch.where`` instead. Never True in TorchScript, which scripts both branches.
    """
    if not torch.jit.is_scripting():
        return torch.compiler.is_compiling() or torch.jit.is_tracing()
    return False
