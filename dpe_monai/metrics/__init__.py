"""Image-quality metrics: MONAI's PSNR and SSIM, CIEDE2000 (DeltaE) and an LPIPS-like feature distance."""

from monai.metrics import PSNRMetric, SSIMMetric

from dpe_monai.metrics.deltae import DeltaE2000Metric, compute_delta_e
from dpe_monai.metrics.feature_distance import (
    DEFAULT_FEATURE_LAYERS,
    FeatureDistanceMetric,
    compute_feature_distance,
)

__all__ = [
    "DEFAULT_FEATURE_LAYERS",
    "DeltaE2000Metric",
    "FeatureDistanceMetric",
    "PSNRMetric",
    "SSIMMetric",
    "compute_delta_e",
    "compute_feature_distance",
]
