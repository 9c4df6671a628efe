"""Gradient promotion (GradProm, Zhang & Cheng): add the task gradient to the enhancement gradient only where the
two agree.

The enhancer's parameters get two gradients per step: ``g_e`` from the enhancement loss (L1 to the clean image)
and ``g_t`` from a frozen downstream network's task loss on the enhanced image. GradProm updates with
``g_e + w * g_t`` when ``cos(g_e, g_t) > 0`` and with ``g_e`` alone otherwise, so the task can never pull the
enhancer against its own objective. The cosine is taken over all parameters at once (``"global"``) or separately for
each parameter tensor (``"tensor"``, i.e. per layer weight / bias).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["GRANULARITIES", "promote_gradients"]

GRANULARITIES = ("global", "tensor")


def _flat(grads: Sequence[torch.Tensor | None], like: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, like)])


def promote_gradients(
    enhancement: Sequence[torch.Tensor | None],
    task: Sequence[torch.Tensor | None],
    weight: float = 1.0,
    granularity: str = "global",
    eps: float = 1e-12,
) -> tuple[list[torch.Tensor], dict[str, float]]:
    """Combine the enhancement and task gradients of the same parameters by the GradProm rule.

    Args:
        enhancement: ``g_e``, one tensor (or None: no gradient) per parameter.
        task: ``g_t``, same order and shapes.
        weight: ``w``, the task gradient's weight when it is promoted.
        granularity: ``"global"`` (one cosine over all parameters) or ``"tensor"`` (one per parameter tensor).
        eps: guards the cosine against zero gradients (a zero gradient counts as not aligned).

    Returns:
        ``(combined, stats)``: the gradient per parameter, and ``{"cosine": ..., "promoted": ...}``: the global
        cosine and the promoted share (of all parameter elements for ``"tensor"``; 0 or 1 for ``"global"``).
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if len(enhancement) != len(task):
        raise ValueError(f"got {len(enhancement)} enhancement and {len(task)} task gradients")
    ref = [g_e if g_e is not None else g_t for g_e, g_t in zip(enhancement, task)]
    if any(r is None for r in ref):
        raise ValueError("a parameter has neither an enhancement nor a task gradient")
    g_e = [g if g is not None else torch.zeros_like(r) for g, r in zip(enhancement, ref)]
    g_t = [g if g is not None else torch.zeros_like(r) for g, r in zip(task, ref)]
    flat_e, flat_t = _flat(g_e, ref), _flat(g_t, ref)
    cosine = float(torch.dot(flat_e, flat_t) / (flat_e.norm() * flat_t.norm()).clamp_min(eps))
    if granularity == "global":
        promote = cosine > 0
        combined = [e + weight * t if promote else e.clone() for e, t in zip(g_e, g_t)]
        return combined, {"cosine": cosine, "promoted": float(promote)}
    combined, promoted, total = [], 0, 0
    for e, t in zip(g_e, g_t):
        cos = torch.dot(e.reshape(-1), t.reshape(-1)) / (e.norm() * t.norm()).clamp_min(eps)
        agree = bool(cos > 0)
        combined.append(e + weight * t if agree else e.clone())
        promoted += e.numel() if agree else 0
        total += e.numel()
    return combined, {"cosine": cosine, "promoted": promoted / max(total, 1)}
