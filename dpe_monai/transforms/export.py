"""An 8-bit export of a windowed scan: the same image as a grey PNG/JPEG from a viewer would give it.

Under the intensity contract (:mod:`dpe_monai.contract`) a 12/16-bit or HU scan is windowed *relative to itself*
(percentile or DICOM window), while 8-bit data keeps its absolute 0..255 range. Users
also bring 8-bit grey exports of scans (chest X-ray PNGs, CT/MR screenshots): absolute data whose display window
was chosen by the exporting viewer. If the only 8-bit grey images in training come from one source, the network
learns that source's brightness as *the* convention of every 8-bit grey image (measured: the first shipped
checkpoint came back at 32 dB of clean 8-bit tumour slices, and made degraded ones 3 dB worse than its own tone
map). This transform turns a relative-windowed grey training image into such an export: the windowed values
``u`` in [0, 1] are rounded to 8 bits and the window record's ``rule`` becomes ``"container"``; the target is
the exported image itself. Since bundle 0.6.0 :class:`~dpe_monai.transforms.RelativeFlagd` flags every grey image
as a scan (:func:`~dpe_monai.contract.is_scan`), the export included, as the CLI does: a network with the scan route
(``GlobalLocalNet(prefilter_on="relative")``) learns nothing from such a sample; the export still teaches the
networks without the route (the paper's ``DPENet``, ``prefilter_on="all"``) the 8-bit rounding.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform, Transform

from dpe_monai.contract import is_relative
from dpe_monai.transforms.preprocess import is_grey

__all__ = ["EightBitExport", "RandEightBitExportD", "RandEightBitExportDict", "RandEightBitExportd"]


class EightBitExport(Transform):
    """Round a windowed image ``(C, *spatial)`` in [0, 1] to 8 bits: ``round(255 u) / 255``, same type and shape."""

    backend = [torch.Tensor, np.ndarray]

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        if isinstance(img, torch.Tensor):
            return torch.round(img.clamp(0.0, 1.0) * 255.0) / 255.0
        return (np.round(np.clip(img, 0.0, 1.0) * 255.0) / 255.0).astype(img.dtype, copy=False)


class RandEightBitExportd(RandomizableTransform, MapTransform):
    """With probability ``prob``, turn a relative-windowed *grey* image into its 8-bit export (see module doc).

    Place it after ``IntensityWindowd(..., params_postfix=...)`` and before the simulator and ``RelativeFlagd``.
    Colour images and images the contract already windowed absolutely (rule ``"container"``) are left alone.

    Args:
        keys: the windowed images, ``(C, *spatial)`` in [0, 1].
        window_postfix: the ``IntensityWindowd`` record postfix (the record key is ``f"{key}_{window_postfix}"``).
        prob: probability of exporting an eligible image.
        allow_missing_keys: don't raise if a key is missing.
    """

    backend = EightBitExport.backend

    def __init__(
        self,
        keys: KeysCollection = "image",
        window_postfix: str = "window",
        prob: float = 0.5,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.window_postfix = window_postfix
        self.exporter = EightBitExport()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            record_key = f"{key}_{self.window_postfix}"
            record = d.get(record_key)
            if record is None or not is_relative(record.get("rule")) or not is_grey(d[key]):
                continue
            d[key] = self.exporter(d[key])
            d[record_key] = {**record, "rule": "container", "exported_from": record.get("rule")}
        return d


RandEightBitExportD = RandEightBitExportDict = RandEightBitExportd
