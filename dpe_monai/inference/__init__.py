"""Inference: the shared fast enhancement path."""

from dpe_monai.inference.enhancer import Enhancer, load_weights

__all__ = ["Enhancer", "load_weights"]
