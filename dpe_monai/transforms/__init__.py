"""Transforms: the DPE low-quality simulator (Algorithm 1), invertible intensity windowing, input preparation."""

from dpe_monai.transforms.context import (
    GlobalContext,
    GlobalContextD,
    GlobalContextd,
    GlobalContextDict,
    RelativeFlagd,
)
from dpe_monai.transforms.export import (
    EightBitExport,
    RandEightBitExportD,
    RandEightBitExportd,
    RandEightBitExportDict,
)
from dpe_monai.transforms.intensity import (
    IntensityWindow,
    IntensityWindowD,
    IntensityWindowd,
    IntensityWindowDict,
    InverseIntensityWindow,
    dicom_window_from_meta,
)
from dpe_monai.transforms.low_quality import (
    L8_SCALE,
    LUMA_WEIGHTS,
    RandLowQuality,
    RandLowQualityD,
    RandLowQualityd,
    RandLowQualityDict,
    mean_luminance_l8,
)
from dpe_monai.transforms.preprocess import (
    EnsureMinSize,
    EnsureMinSizeD,
    EnsureMinSized,
    EnsureMinSizeDict,
    ToRGB,
    ToRGBD,
    ToRGBd,
    ToRGBDict,
    grey_mask,
    is_grey,
)
from dpe_monai.transforms.seeded import SeededLowQualityD, SeededLowQualityd, SeededLowQualityDict

__all__ = [
    "EightBitExport",
    "RandEightBitExportD",
    "RandEightBitExportDict",
    "RandEightBitExportd",
    "grey_mask",
    "is_grey",
    "GlobalContext",
    "GlobalContextD",
    "GlobalContextDict",
    "GlobalContextd",
    "RelativeFlagd",
    "EnsureMinSize",
    "EnsureMinSizeD",
    "EnsureMinSizeDict",
    "EnsureMinSized",
    "SeededLowQualityD",
    "SeededLowQualityDict",
    "SeededLowQualityd",
    "ToRGB",
    "ToRGBD",
    "ToRGBDict",
    "ToRGBd",
    "IntensityWindow",
    "IntensityWindowD",
    "IntensityWindowDict",
    "IntensityWindowd",
    "InverseIntensityWindow",
    "L8_SCALE",
    "LUMA_WEIGHTS",
    "RandLowQuality",
    "RandLowQualityD",
    "RandLowQualityDict",
    "RandLowQualityd",
    "dicom_window_from_meta",
    "mean_luminance_l8",
]
