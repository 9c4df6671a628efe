"""Inference: the shared fast enhancement path and file-level enhancement."""

from dpe_monai.inference.enhancer import Enhancer, EnhancerInferer, load_network, load_weights
from dpe_monai.inference.files import EnhanceSummary, enhance_files, enhance_native

__all__ = [
    "EnhanceSummary",
    "Enhancer",
    "EnhancerInferer",
    "enhance_files",
    "enhance_native",
    "load_network",
    "load_weights",
]
