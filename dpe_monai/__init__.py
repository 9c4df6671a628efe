"""dpe-monai: Deep Perceptual Enhancement (Sharif et al., IEEE JBHI 2022) for medical images, on MONAI.

Subpackages (imported lazily, so ``import dpe_monai`` stays cheap and bundle expressions such as
``$dpe_monai.engines.make_ema(...)`` work after a bare ``$import dpe_monai``):

- ``networks``: DPENet generator, DPEDiscriminator;
- ``losses``: regularised feature loss, adversarial losses, DPELoss;
- ``transforms``: Algorithm 1 degradation, intensity windowing, input preparation;
- ``metrics``: PSNR/SSIM (MONAI), CIEDE2000 DeltaE, feature distance;
- ``data``: the packaged collection and user-folder loading;
- ``engines`` / ``handlers``: conditional-GAN trainer and its Ignite handlers;
- ``inference``: the shared fast ``Enhancer``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBPACKAGES = (
    "networks",
    "losses",
    "transforms",
    "metrics",
    "data",
    "engines",
    "handlers",
    "inference",
    "io",
    "tracking",
    "baselines",
)


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
