"""Networks: the DPE generator and its discriminator."""

from dpe_monai.networks.blocks import GatedConv, ResidualBlock
from dpe_monai.networks.discriminator import DPEDiscriminator
from dpe_monai.networks.dpenet import DPENet

__all__ = ["DPENet", "DPEDiscriminator", "GatedConv", "ResidualBlock"]
