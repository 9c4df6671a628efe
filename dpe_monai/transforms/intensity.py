"""Intensity windowing into [0, 1] and back, for 16-bit, HU or any-range images, as invertible MONAI transforms.

The enhancement network works on [0, 1] images. :class:`IntensityWindow` maps an image from its own units (raw
16-bit counts, Hounsfield units, ...) linearly into [0, 1] and records ``(lo, hi, original dtype)``;
:class:`InverseIntensityWindow` (or ``IntensityWindow.inverse`` on a MetaTensor) maps [0, 1] back with
``lo + y * (hi - lo)``, rounded and cast to the original integer dtype.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import DtypeLike, KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, Transform
from monai.utils import TraceKeys, convert_data_type, convert_to_dst_type

from dpe_monai.contract import window_bounds

__all__ = [
    "IntensityWindow",
    "IntensityWindowd",
    "IntensityWindowD",
    "IntensityWindowDict",
    "InverseIntensityWindow",
    "dicom_window_from_meta",
]

_MODES = ("percentile", "dicom", "fixed", "dtype", "auto", "minmax")
_CENTER_KEYS = ("WindowCenter", "window_center", "00281050", "0028|1050", "(0028,1050)", "(0028, 1050)", "0028,1050")
_WIDTH_KEYS = ("WindowWidth", "window_width", "00281051", "0028|1051", "(0028,1051)", "(0028, 1051)", "0028,1051")


def _numpy_dtype(img: NdarrayOrTensor) -> np.dtype:
    """The numpy dtype equivalent to ``img.dtype`` (float32 for torch dtypes numpy lacks, e.g. bfloat16)."""
    if isinstance(img, torch.Tensor):
        try:
            return np.dtype(str(img.dtype).replace("torch.", ""))
        except TypeError:
            return np.dtype(np.float32)
    return np.dtype(img.dtype)


def _first_value(value: Any, index: int) -> float | None:
    """One number from a DICOM-ish meta value: a number, ``"40\\400"``, a list/array/tensor or ``{"Value": [...]}``."""
    if isinstance(value, Mapping):
        value = value.get("Value", value.get("value"))
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode(errors="ignore")
    if isinstance(value, str):
        parts = [p for p in value.replace(",", "\\").split("\\") if p.strip()]
        values = [float(p) for p in parts]
    else:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        values = [float(v) for v in np.asarray(value, dtype=np.float64).ravel()]
    if not values:
        return None
    return values[min(index, len(values) - 1)]


def dicom_window_from_meta(meta: Mapping | None, index: int = 0) -> tuple[float, float] | None:
    """Read (window center, window width) from image metadata, or None when absent.

    Accepts the keyword (``WindowCenter``), pydicom JSON (``00281050`` with ``{"Value": [...]}``), ITK
    (``0028|1050`` with ``"40\\400"``) and ``(0028,1050)`` spellings. Multi-valued windows pick entry ``index``
    (clamped to the last one).
    """
    if not meta:
        return None
    center = width = None
    for key in _CENTER_KEYS:
        if key in meta:
            center = _first_value(meta[key], index)
            break
    for key in _WIDTH_KEYS:
        if key in meta:
            width = _first_value(meta[key], index)
            break
    if center is None or width is None:
        return None
    return center, width


class InverseIntensityWindow(Transform):
    """Map a [0, 1] image back to the units it was windowed from: ``lo + y * (hi - lo)``.

    For an integer ``dtype`` the result is rounded to nearest and clipped to the dtype's range before the cast.

    Args:
        lo: value that 0 maps to (the window's lower edge, in the original units).
        hi: value that 1 maps to.
        dtype: output dtype (numpy dtype or its name, e.g. ``"uint16"``); ``None`` gives float32.
        clip: clip ``y`` to [0, 1] first (the forward window clipped, so nothing outside it is recoverable).
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, lo: float, hi: float, dtype: DtypeLike | str | None = None, clip: bool = True) -> None:
        self.lo = float(lo)
        self.hi = float(hi)
        self.dtype = np.dtype(np.float32 if dtype is None else dtype)
        self.clip = clip

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Args:
            img: windowed image, any shape, values nominally in [0, 1].

        Returns:
            the image in original units, cast to ``dtype``, same type as ``img`` (MetaTensor meta kept).
        """
        y = convert_data_type(img, np.ndarray, dtype=np.float64)[0]
        if self.clip:
            y = np.clip(y, 0.0, 1.0)
        x = self.lo + y * (self.hi - self.lo)
        if np.issubdtype(self.dtype, np.integer):
            info = np.iinfo(self.dtype)
            x = np.clip(np.rint(x), info.min, info.max)
        return convert_to_dst_type(x.astype(self.dtype), dst=img, dtype=self.dtype)[0]


class IntensityWindow(InvertibleTransform):
    """Window an image linearly into [0, 1] (float32), remembering how to undo it.

    Modes (``lo``/``hi`` are the values mapped to 0 and 1):

    - ``"percentile"``: the ``lower`` / ``upper`` percentiles of the image (default 0.5 / 99.5).
    - ``"dicom"``: ``window_center`` / ``window_width``, or when not given, the image's DICOM meta
      (``WindowCenter``/``WindowWidth`` or tags (0028,1050)/(0028,1051); entry ``window_index`` when multi-valued),
      with the DICOM linear-window edges ``lo = c - 0.5 - (w - 1) / 2``, ``hi = c - 0.5 + (w - 1) / 2``.
    - ``"fixed"``: ``lower`` / ``upper`` in the image's units (e.g. -1000 / 1000 HU).
    - ``"dtype"``: the full range of the integer dtype (``source_dtype`` or the image's own), e.g. 0..65535.
    - ``"minmax"``: the image's own min / max.
    - ``"auto"``: the project's intensity contract (:mod:`dpe_monai.contract`): 0..255 for 8-bit data (not
      NIfTI, read from meta's file name), else the DICOM window from meta when present, else the 0.5-99.5 %
      percentiles over the body. Training, evaluation and inference all use it, so the network sees files the same
      way everywhere.

    On a MetaTensor the ``(lo, hi, dtype)`` record is pushed on ``applied_operations`` so ``inverse`` works
    (also through ``monai.transforms.Invertd``); for any input it is kept on ``self.last_params`` as
    ``{"lo": float, "hi": float, "dtype": str, "mode": str, "rule": str}`` (``rule``: the contract rule that
    ``"auto"`` applied, ``"container"``, ``"dicom"`` or ``"percentile"``; else the mode).

    Args:
        mode: one of ``"percentile"``, ``"dicom"``, ``"fixed"``, ``"dtype"``, ``"auto"``, ``"minmax"``.
        lower: lower percentile (``"percentile"``) or lower value (``"fixed"``).
        upper: upper percentile (``"percentile"``) or upper value (``"fixed"``).
        window_center: DICOM window center (``"dicom"``); read from meta when None.
        window_width: DICOM window width (``"dicom"``); read from meta when None.
        clip: clip the output to [0, 1].
        source_dtype: dtype the data really has when it arrives already cast to float (e.g. ``LoadImage``'s
            float32 of a uint16 file); used for ``"dtype"`` mode and as the dtype ``inverse`` restores.
        window_index: which entry of a multi-valued DICOM window to use.
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(
        self,
        mode: str = "percentile",
        lower: float | None = None,
        upper: float | None = None,
        window_center: float | None = None,
        window_width: float | None = None,
        clip: bool = True,
        source_dtype: DtypeLike | str | None = None,
        window_index: int = 0,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}.")
        if mode == "percentile":
            lower = 0.5 if lower is None else lower
            upper = 99.5 if upper is None else upper
            if not 0.0 <= lower <= upper <= 100.0:
                raise ValueError(f"percentiles need 0 <= lower <= upper <= 100, got {lower}, {upper}.")
        if mode == "fixed" and (lower is None or upper is None or upper < lower):
            raise ValueError(f"mode='fixed' needs lower <= upper, got {lower}, {upper}.")
        if (window_center is None) != (window_width is None):
            raise ValueError("give both window_center and window_width, or neither.")
        self.mode = mode
        self.lower = lower
        self.upper = upper
        self.window_center = window_center
        self.window_width = window_width
        self.clip = clip
        self.source_dtype = None if source_dtype is None else np.dtype(source_dtype)
        self.window_index = window_index
        self.last_params: dict[str, Any] = {}

    def window_bounds(self, arr: np.ndarray, dtype: np.dtype, meta: Mapping | None = None) -> tuple[float, float]:
        """``(lo, hi)`` for ``arr`` (numpy, original units) under the configured mode."""
        if self.mode == "auto":
            name = str((meta or {}).get("filename_or_obj", "")).lower()
            lo, hi, self._rule = window_bounds(
                arr,
                dtype,
                "auto",
                dicom_window=dicom_window_from_meta(meta, self.window_index),
                fmt="nifti" if name.endswith((".nii", ".nii.gz")) else None,
            )
            return lo, hi
        if self.mode == "minmax":
            return float(np.min(arr)), float(np.max(arr))
        if self.mode == "percentile":
            lo, hi = np.percentile(arr, [self.lower, self.upper])
            return float(lo), float(hi)
        if self.mode == "fixed":
            return float(self.lower), float(self.upper)
        if self.mode == "dtype":
            if not np.issubdtype(dtype, np.integer):
                raise ValueError(f"mode='dtype' needs an integer dtype (or source_dtype), got {dtype}.")
            info = np.iinfo(dtype)
            return float(info.min), float(info.max)
        if self.window_center is not None:
            center, width = float(self.window_center), float(self.window_width)
        else:
            found = dicom_window_from_meta(meta, self.window_index)
            if found is None:
                raise ValueError("mode='dicom' needs window_center/window_width or WindowCenter/WindowWidth in meta.")
            center, width = found
        if width < 1:
            raise ValueError(f"DICOM window width must be >= 1, got {width}.")
        return center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2

    def __call__(self, img: NdarrayOrTensor, meta: Mapping | None = None) -> NdarrayOrTensor:
        """Window ``img``.

        Args:
            img: image of any shape and dtype, in its own units; numpy array, tensor or MetaTensor.
            meta: metadata to read a DICOM window from; defaults to ``img.meta`` for a MetaTensor.

        Returns:
            float32 image, same shape and type (meta kept), in [0, 1] when ``clip``; ``(x > lo)`` when the window
            is empty (``hi == lo``).
        """
        dtype = self.source_dtype if self.source_dtype is not None else _numpy_dtype(img)
        if meta is None and isinstance(img, MetaTensor):
            meta = img.meta
        arr = convert_data_type(img, np.ndarray)[0]
        self._rule = self.mode
        lo, hi = self.window_bounds(arr, dtype, meta)
        x = arr.astype(np.float64, copy=False)
        y = (x - lo) / (hi - lo) if hi > lo else (x > lo).astype(np.float64)
        if self.clip:
            y = np.clip(y, 0.0, 1.0)
        self.last_params = {"lo": lo, "hi": hi, "dtype": dtype.name, "mode": self.mode, "rule": self._rule}
        out = convert_to_dst_type(y.astype(np.float32), dst=img, dtype=np.float32)[0]
        if isinstance(out, MetaTensor):
            self.push_transform(out, extra_info={"lo": lo, "hi": hi, "dtype": dtype.name})
        return out

    def inverse(self, data: NdarrayOrTensor) -> NdarrayOrTensor:
        """Undo the window: pops the record from a MetaTensor, else uses ``self.last_params``.

        Returns:
            ``lo + y * (hi - lo)`` in the original dtype (rounded and range-clipped for integer dtypes).
        """
        if isinstance(data, MetaTensor) and data.applied_operations:
            info = self.pop_transform(data)[TraceKeys.EXTRA_INFO]
        elif self.last_params:
            info = self.last_params
        else:
            raise RuntimeError("nothing to invert: call on a MetaTensor (tracing on) or call the transform first.")
        return InverseIntensityWindow(info["lo"], info["hi"], info["dtype"], clip=self.clip)(data)


class IntensityWindowd(MapTransform, InvertibleTransform):
    """Dictionary twin of :class:`IntensityWindow` (invertible through MetaTensor ``applied_operations``).

    Args:
        keys: keys of the images to window.
        params_postfix: if given, also write the plain ``{"lo", "hi", "dtype", "mode"}`` record under
            ``f"{key}_{params_postfix}"`` (collates with the default collate; ``inverse`` of non-MetaTensor data
            reads it back).
        allow_missing_keys: don't raise if a key is missing.
        mode, lower, upper, window_center, window_width, clip, source_dtype, window_index: as in
            :class:`IntensityWindow`. In ``"dicom"`` mode without explicit values the window is read from the
            MetaTensor meta, else from ``d[f"{key}_meta_dict"]`` when present.
    """

    backend = IntensityWindow.backend

    def __init__(
        self,
        keys: KeysCollection,
        mode: str = "percentile",
        lower: float | None = None,
        upper: float | None = None,
        window_center: float | None = None,
        window_width: float | None = None,
        clip: bool = True,
        source_dtype: DtypeLike | str | None = None,
        window_index: int = 0,
        params_postfix: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.windower = IntensityWindow(
            mode=mode,
            lower=lower,
            upper=upper,
            window_center=window_center,
            window_width=window_width,
            clip=clip,
            source_dtype=source_dtype,
            window_index=window_index,
        )
        self.params_postfix = params_postfix

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            meta = None if isinstance(d[key], MetaTensor) else d.get(f"{key}_meta_dict")
            d[key] = self.windower(d[key], meta=meta)
            if self.params_postfix is not None:
                d[f"{key}_{self.params_postfix}"] = dict(self.windower.last_params)
        return d

    def inverse(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            if isinstance(value, MetaTensor) and value.applied_operations:
                d[key] = self.windower.inverse(value)
            elif self.params_postfix is not None and f"{key}_{self.params_postfix}" in d:
                info = d[f"{key}_{self.params_postfix}"]
                d[key] = InverseIntensityWindow(info["lo"], info["hi"], info["dtype"], clip=self.windower.clip)(value)
            else:
                raise RuntimeError(f"no window record for key {key!r}: use MetaTensors or set params_postfix.")
        return d


IntensityWindowD = IntensityWindowDict = IntensityWindowd
