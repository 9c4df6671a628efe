"""Networks: the DPE generator, its discriminator, and the global-local enhancer built on it."""

from dpe_monai.networks.blocks import GatedConv, ResidualBlock
from dpe_monai.networks.clean_gate import CleanGate
from dpe_monai.networks.discriminator import DPEDiscriminator
from dpe_monai.networks.dpenet import DPENet
from dpe_monai.networks.global_intensity import GlobalIntensity, apply_global_intensity, global_summary, grey_thumbnail
from dpe_monai.networks.global_local import GlobalLocalNet
from dpe_monai.networks.regional_limit import RegionalLimit
from dpe_monai.networks.scan_refiner import ScanRefiner

__all__ = [
    "CleanGate",
    "DPENet",
    "DPEDiscriminator",
    "GatedConv",
    "GlobalIntensity",
    "GlobalLocalNet",
    "RegionalLimit",
    "ResidualBlock",
    "ScanRefiner",
    "apply_global_intensity",
    "global_summary",
    "grey_thumbnail",
]
