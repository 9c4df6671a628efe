"""Engines: the conditional-GAN trainer, task-driven fine-tuning (GradProm) and their helpers."""

from dpe_monai.engines.gradient_promotion import promote_gradients
from dpe_monai.engines.task_driven import TASK_MODES, TaskDrivenTrainer
from dpe_monai.engines.trainer import ConditionalGANTrainer
from dpe_monai.engines.utils import PairedBatch, autocast, make_ema, resolve_amp_dtype

__all__ = [
    "ConditionalGANTrainer",
    "PairedBatch",
    "TASK_MODES",
    "TaskDrivenTrainer",
    "autocast",
    "make_ema",
    "promote_gradients",
    "resolve_amp_dtype",
]
