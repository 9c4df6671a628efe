"""Engines: the conditional-GAN trainer and its helpers."""

from dpe_monai.engines.trainer import ConditionalGANTrainer
from dpe_monai.engines.utils import PairedBatch, autocast, make_ema, resolve_amp_dtype

__all__ = ["ConditionalGANTrainer", "PairedBatch", "autocast", "make_ema", "resolve_amp_dtype"]
