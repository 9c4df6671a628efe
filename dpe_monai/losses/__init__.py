"""Losses of DPE: regularised feature loss, conditional-GAN losses and the combined generator objective."""

from dpe_monai.losses.adversarial import (
    DiscriminatorLoss,
    GeneratorAdversarialLoss,
    discriminator_loss,
    generator_adversarial_loss,
    noisy_labels,
)
from dpe_monai.losses.backbones import VGGFeatures, hed_weights_path, load_hed_vgg16_state
from dpe_monai.losses.dpe_loss import DPELoss
from dpe_monai.losses.feature_loss import RegularisedFeatureLoss, gradient_difference

__all__ = [
    "DPELoss",
    "DiscriminatorLoss",
    "GeneratorAdversarialLoss",
    "RegularisedFeatureLoss",
    "VGGFeatures",
    "discriminator_loss",
    "generator_adversarial_loss",
    "gradient_difference",
    "hed_weights_path",
    "load_hed_vgg16_state",
    "noisy_labels",
]
