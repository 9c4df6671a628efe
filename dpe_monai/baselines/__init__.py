"""Baselines run in the same scripts as DPE: classical (scikit-image) methods, and a factory by name."""

from __future__ import annotations

import os

import torch

from dpe_monai.baselines.classical import CLASSICAL, ClassicalEnhancer
from dpe_monai.baselines.oracle import OracleEnhancer

__all__ = ["CLASSICAL", "ClassicalEnhancer", "OracleEnhancer", "get_method"]


def get_method(method: str, network: torch.nn.Module | None = None, checkpoint: str | os.PathLike | None = None):
    """An enhancement module by name: ``"dpe"`` (``network`` with ``checkpoint`` weights) or a classical method."""
    if method == "dpe":
        if network is None or checkpoint is None:
            raise ValueError("method 'dpe' needs the network and a checkpoint")
        from dpe_monai.inference import load_network

        return load_network(network, checkpoint)
    return ClassicalEnhancer(method)
