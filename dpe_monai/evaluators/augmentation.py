"""Intensity augmentation for the downstream task models: nnU-Net's default intensity schedule as MONAI transforms.

A task model trained on clean images with flips only learns the exact intensity convention of its training images
and their noise level. Scored on enhanced images it then rewards whatever reproduces that convention by accident
(a window a few percent darker) or keeps the noise it never saw removed, rather than the recovered anatomy.
Practical segmenters and detectors are trained with intensity augmentation; this module gives the task models the
one most widely used by default, nnU-Net v2's (``nnUNetTrainer.get_training_transforms``, batchgenerators v2), so
that a downstream score measures the image content an enhancer recovers. The schedule is taken as published, not
tuned to any result here. nnU-Net applies it to z-scored images, so each image is z-scored (its own mean and
standard deviation), augmented, and mapped back to its own scale:

=========================  ===========  =======================================================================
nnU-Net transform          probability  here (on the z-scored image)
=========================  ===========  =======================================================================
Gaussian noise             0.1          ``RandGaussianNoise(std=0.1, sample_std=True)``: noise std drawn from
                                        U(0, 0.1) (nnU-Net's ``noise_variance=(0, 0.1)`` is used as the std)
Gaussian blur              0.2 x 0.5    ``RandGaussianSmooth``, sigma U(0.5, 1) per axis (nnU-Net: probability 0.2,
                                        then 0.5 per channel)
multiplicative brightness  0.15         ``RandScaleIntensity(factors=0.25)``: x * U(0.75, 1.25)
contrast                   0.15         ``RandScaleIntensityFixedMean(factors=0.25, preserve_range=True)``
gamma, inverted image      0.1          :class:`BGGamma` ``(invert_image=True, retain_stats=True)``
gamma                      0.3          :class:`BGGamma` ``(retain_stats=True)``
=========================  ===========  =======================================================================

nnU-Net's ``BGContrast`` draws a gamma below 1 half of the time (U(0.7, 1) or U(1, 1.5)); its brightness and
contrast draws, U(0.75, 1) or U(1, 1.25), are uniform on [0.75, 1.25] as here. A grey image stored in three equal
channels is augmented as one channel (one noise field, as nnU-Net's single-channel scan) and copied back; a colour
image is augmented with all channels at once. nnU-Net's spatial augmentations (rotation, scaling, low-resolution
simulation) are not added: the task models keep their own flips, and the comparison concerns intensities.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.transforms import RandAdjustContrast

__all__ = ["TASK_AUGMENTATIONS", "BGGamma", "TaskIntensityAugment", "task_augmentation"]

#: accepted values of the task models' ``augmentation`` setting.
TASK_AUGMENTATIONS = ("none", "nnunet")


class BGGamma(RandAdjustContrast):
    """MONAI's ``RandAdjustContrast`` with nnU-Net's ``BGContrast`` draw: with probability 1/2 a gamma from
    U(gamma[0], 1), otherwise from U(1, gamma[1]) (when the range straddles 1)."""

    def randomize(self, data: Any | None = None) -> None:
        super().randomize(None)
        if not self._do_transform:
            return
        low, high = self.gamma
        if low < 1.0 < high:
            self.gamma_value = self.R.uniform(low, 1.0) if self.R.uniform() < 0.5 else self.R.uniform(1.0, high)


class TaskIntensityAugment:
    """nnU-Net's default intensity augmentations, applied to one image at a time in its z-scored units.

    Args:
        seed: seeds the transforms' random state; the same seed gives the same sequence of draws.

    Call with a ``(C, H, W)`` (or ``(C, H, W, D)``) float tensor, values nominally in [0, 1]; returns a float32
    tensor of the same shape in the same units (values may leave [0, 1], as in nnU-Net).
    """

    def __init__(self, seed: int = 0) -> None:
        from monai.transforms import (
            Compose,
            RandGaussianNoise,
            RandGaussianSmooth,
            RandScaleIntensity,
            RandScaleIntensityFixedMean,
        )

        self.transform = Compose(
            [
                RandGaussianNoise(prob=0.1, mean=0.0, std=0.1, sample_std=True),
                RandGaussianSmooth(prob=0.1, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0)),
                RandScaleIntensity(prob=0.15, factors=0.25),
                RandScaleIntensityFixedMean(prob=0.15, factors=0.25, preserve_range=True),
                BGGamma(prob=0.1, gamma=(0.7, 1.5), invert_image=True, retain_stats=True),
                BGGamma(prob=0.3, gamma=(0.7, 1.5), invert_image=False, retain_stats=True),
            ]
        ).set_random_state(seed=seed)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        from monai.utils import convert_to_tensor

        x = image.float()
        grey = x.shape[0] > 1 and bool((x == x[:1]).all())
        if grey:
            x = x[:1]
        mean, std = x.mean(), x.std().clamp_min(1e-6)
        z = convert_to_tensor(self.transform((x - mean) / std), dtype=torch.float32, track_meta=False)
        out = z * std + mean
        if grey:
            out = out.expand(image.shape[0], *out.shape[1:])
        return out.contiguous()


def task_augmentation(name: str, seed: int = 0) -> TaskIntensityAugment | None:
    """The task models' augmentation by name.

    Args:
        name: one of :data:`TASK_AUGMENTATIONS`.
        seed: seeds its random draws.

    Returns:
        a :class:`TaskIntensityAugment` for ``"nnunet"``, None for ``"none"``.

    Raises:
        ValueError: an unknown name.
    """
    if name not in TASK_AUGMENTATIONS:
        raise ValueError(f"unknown task augmentation {name!r}; choose from {TASK_AUGMENTATIONS}")
    return None if name == "none" else TaskIntensityAugment(seed)
