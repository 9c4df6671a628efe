"""Intensity augmentation for the downstream task models: nnU-Net's default intensity schedule as MONAI transforms.

A task model trained on clean images with flips only learns the exact intensity convention of its training images
and their noise level. Scored on enhanced images it then rewards whatever reproduces that convention by accident
(a window a few percent darker) or keeps the noise it never saw removed, rather than the recovered anatomy.
Practical segmenters and detectors are trained with intensity augmentation; this module gives the task models the
one most widely used by default, nnU-Net's (Isensee et al., Nat. Methods 2021, ``nnUNetTrainer``), so that a
downstream score measures the image content an enhancer recovers. The schedule is taken as published, not tuned to
any result here:

=========================  ===========  =======================================================================
nnU-Net transform          probability  MONAI transform here
=========================  ===========  =======================================================================
Gaussian noise             0.1          ``RandGaussianNoise(std=0.1)``: std drawn from U(0, 0.1) on [0, 1] data
                                        (nnU-Net: variance U(0, 0.1) on z-scored data, i.e. std up to ~0.3 of the
                                        image's std; a brain slice's std is ~0.3 of its range)
Gaussian blur              0.2          ``RandGaussianSmooth(sigma in [0.5, 1])``
multiplicative brightness  0.15         ``RandScaleIntensity(factors=0.25)``: x * U(0.75, 1.25)
contrast                   0.15         ``RandScaleIntensityFixedMean(factors=0.25, preserve_range=True)``
gamma, inverted image      0.1          ``RandAdjustContrast(gamma=(0.7, 1.5), invert_image=True, retain_stats)``
gamma                      0.3          ``RandAdjustContrast(gamma=(0.7, 1.5), retain_stats=True)``
=========================  ===========  =======================================================================

nnU-Net's spatial augmentations (rotation, scaling, low-resolution simulation) are not added: the task models keep
their own flips, and the comparison concerns intensities.
"""

from __future__ import annotations

import torch

__all__ = ["TASK_AUGMENTATIONS", "TaskIntensityAugment", "task_augmentation"]

#: accepted values of the task models' ``augmentation`` setting.
TASK_AUGMENTATIONS = ("none", "nnunet")


class TaskIntensityAugment:
    """nnU-Net's default intensity augmentations, applied to one image at a time.

    Args:
        seed: seeds the transforms' random state; the same seed gives the same sequence of draws.

    Call with a ``(C, H, W)`` (or ``(C, H, W, D)``) float tensor, values nominally in [0, 1]; returns a float tensor of
    the same shape (values may leave [0, 1], as in nnU-Net).
    """

    def __init__(self, seed: int = 0) -> None:
        from monai.transforms import (
            Compose,
            RandAdjustContrast,
            RandGaussianNoise,
            RandGaussianSmooth,
            RandScaleIntensity,
            RandScaleIntensityFixedMean,
        )

        self.transform = Compose(
            [
                RandGaussianNoise(prob=0.1, mean=0.0, std=0.1, sample_std=True),
                RandGaussianSmooth(prob=0.2, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0)),
                RandScaleIntensity(prob=0.15, factors=0.25),
                RandScaleIntensityFixedMean(prob=0.15, factors=0.25, preserve_range=True),
                RandAdjustContrast(prob=0.1, gamma=(0.7, 1.5), invert_image=True, retain_stats=True),
                RandAdjustContrast(prob=0.3, gamma=(0.7, 1.5), invert_image=False, retain_stats=True),
            ]
        ).set_random_state(seed=seed)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        from monai.utils import convert_to_tensor

        out = self.transform(image.float())
        return convert_to_tensor(out, dtype=torch.float32, track_meta=False).contiguous()


def task_augmentation(name: str, seed: int = 0) -> TaskIntensityAugment | None:
    """The augmentation named ``name`` (one of :data:`TASK_AUGMENTATIONS`), or None for ``"none"``."""
    if name not in TASK_AUGMENTATIONS:
        raise ValueError(f"unknown task augmentation {name!r}; choose from {TASK_AUGMENTATIONS}")
    return None if name == "none" else TaskIntensityAugment(seed)
