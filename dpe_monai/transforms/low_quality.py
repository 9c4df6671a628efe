"""Low-quality image simulation as MONAI transforms: Algorithm 1 of Sharif et al., "Deep Perceptual Enhancement for
Medical Image Analysis" (IEEE JBHI 2022), plus realistic medical modes (``realistic.py``); ``docs/DEGRADATION.md``
holds the algorithm as implemented and every deviation from the paper and its code."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_data_type, convert_to_dst_type
from skimage.color import rgb2lab

from dpe_monai.transforms.realistic import (
    BIAS_COEFF_RANGE,
    CT_DOSE_RANGE,
    REALISTIC_MODES,
    RICIAN_SIGMA_RANGE,
    XRAY_EXPOSURE_RANGE,
    XRAY_GAMMA_RANGE,
    RealisticDegradation,
)

__all__ = [
    "LUMA_WEIGHTS",
    "L8_SCALE",
    "RandLowQuality",
    "RandLowQualityd",
    "RandLowQualityD",
    "RandLowQualityDict",
    "mean_luminance_l8",
]

#: OpenCV stores 8-bit Lab lightness as ``L* * 255 / 100``; the paper's threshold ``B_T = 100`` is on that scale.
L8_SCALE = 255.0 / 100.0
#: ITU-R 601-2 luma weights, used by PIL / torchvision to find the grey level that contrast is scaled around.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

_MODES = ("paper", "reference_code", *REALISTIC_MODES)
_NOISE_ORDERS = ("before", "after", "mixed")
_NAN = float("nan")


def mean_luminance_l8(img: NdarrayOrTensor, chunk: int = 1 << 20) -> float:
    """Mean CIE Lab lightness of the non-black pixels, on OpenCV's 8-bit scale.

    Args:
        img: channel-first ``(C, H, W)`` or ``(C, H, W, D)`` image, C = 1 (grey, replicated to RGB) or 3 (sRGB),
            values in [0, 1] (clipped to that range for the conversion).
        chunk: pixels converted per ``skimage.color.rgb2lab`` call (bounds memory on large volumes).

    Returns:
        ``mean(L*) * 255 / 100`` over the pixels that are not exactly black (any channel > 0; these are exactly
        the pixels with L* > 0), in [0, 255]. 0.0 when every pixel is black.
    """
    arr = convert_data_type(img, np.ndarray)[0]
    _check_channels(arr)
    flat = arr.reshape(arr.shape[0], -1)  # (C, N)
    total, count = 0.0, 0
    for start in range(0, flat.shape[1], chunk):
        rgb = np.clip(flat[:, start : start + chunk].T.astype(np.float64), 0.0, 1.0)  # (n, C)
        rgb = rgb[rgb.max(axis=1) > 0]
        if rgb.shape[0] == 0:
            continue
        if rgb.shape[1] == 1:
            rgb = np.repeat(rgb, 3, axis=1)
        lightness = rgb2lab(rgb[None], channel_axis=-1)[0, :, 0]  # L* in [0, 100]
        total += float(lightness.sum())
        count += lightness.shape[0]
    return total / count * L8_SCALE if count else 0.0


def _check_channels(arr: np.ndarray) -> None:
    if arr.ndim < 3 or arr.shape[0] not in (1, 3):
        raise ValueError(
            f"expected a channel-first (C, H, W[, D]) image with C = 1 or 3, got shape {tuple(arr.shape)}."
        )


def _like(arr: np.ndarray, img: NdarrayOrTensor) -> NdarrayOrTensor:
    """``arr`` (float32 numpy) converted to the type, device and meta of ``img``, keeping float32."""
    return convert_to_dst_type(arr, dst=img, dtype=np.float32)[0]


def _grey_mean(img: np.ndarray) -> np.float32:
    """Mean grey level (ITU-R 601-2 luma for RGB), the pivot contrast is scaled around."""
    if img.shape[0] == 3:
        grey = sum(w * img[i] for i, w in enumerate(LUMA_WEIGHTS))
    else:
        grey = img[0]
    return np.float32(grey.mean(dtype=np.float64))


def _contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """PIL/torchvision-style contrast: blend with the mean grey level, ``mean + factor * (img - mean)``."""
    mean = _grey_mean(img)
    return mean + np.float32(factor) * (img - mean)


class RandLowQuality(RandomizableTransform):
    """Simulate a low-quality (dark, flat, noisy) version of a good image: Algorithm 1 of the DPE paper.

    ``mode="paper"`` (default), applied with probability ``prob``:

    1. Luminance gate: mean Lab lightness of the non-black pixels, expressed on OpenCV's 8-bit scale
       (``L8 = mean(L*) * 255 / 100``, see :func:`mean_luminance_l8`). If ``L8 <= brightness_threshold`` the image
       is taken to be low quality already and is returned unchanged (``last_params["applied"]`` is False).
    2. Additive Gaussian noise, ``sigma ~ U(0, max_sigma)`` on the 8-bit scale (``sigma / 255`` in [0, 1] units),
       then clip to [0, 1].
    3. Contrast ``c ~ U(min_factor, max_factor)`` around the mean grey level: ``m + c * (x - m)``.
    4. Brightness ``b ~ U(min_factor, max_factor)``: ``b * x``; clip to [0, 1].

    ``noise_order`` (paper mode): ``"before"`` is the paper's order above; ``"after"`` adds the noise after the
    contrast and brightness drop, as a real low-dose or low-light acquisition does (inverting the exposure then
    amplifies it); ``"mixed"`` draws one of the two per call (50/50). ``quantize=True`` rounds the result to 8-bit
    levels (``round(255 x) / 255``), as a degraded image saved to an 8-bit file is.

    ``mode="reference_code"`` reproduces the authors' public code instead: no luminance gate (always applies),
    brightness and contrast factors ``~ U(min_factor, max_factor)`` applied in random order (as torchvision's
    ``ColorJitter``), then additive non-negative uniform noise in ``[0, reference_noise_max / 255)``; clip.

    Realistic modes (:mod:`dpe_monai.transforms.realistic`; no gate, ``noise_order`` ignored, ``quantize`` applies,
    a grey image stored as 3 equal channels stays grey): ``"mri_bias_rician"``, a smooth degree-3 bias field
    (coefficients ``~ U(-c, c)``, ``c ~ U(bias_coeff_range)``, gain scaled to peak at 1, the same for every channel)
    then Rician noise, ``sigma ~ U(rician_sigma_range)`` (8-bit units); ``"lowdose_ct"``, image-domain
    Poisson-Gaussian noise at ``dose ~ U(dose_range)`` of the full dose; ``"xray_underexposed"``, ``e * x^g``
    with ``e ~ U(exposure_range)``, ``g ~ U(gamma_range)``, then Poisson quantum noise and read noise.

    All randomness comes from ``self.R`` (see ``set_random_state``); the work is done in numpy float32, so numpy
    and torch inputs give identical results for the same seed.

    After each call ``self.last_params`` holds plain Python values: ``applied`` (bool), ``luminance`` (L8 value,
    NaN if not computed), ``sigma`` (8-bit units), ``contrast``, ``brightness`` (NaN where not applied) and
    ``contrast_first`` (bool, the order of the two factors), ``noise_after`` (bool, the noise order) and ``pivot``
    (the grey mean contrast was scaled around, paper mode; NaN otherwise), ``mode`` (str) and the realistic modes'
    ``bias_coeff_max``, ``bias_min`` (smallest gain of the field), ``dose``, ``exposure``, ``gamma`` (NaN where
    unused). An oracle that knows these can invert the paper's intensity map exactly (``benchmarks``' unreachable
    ceiling); in the realistic modes ``contrast``, ``brightness`` and ``pivot`` are NaN and ``sigma`` is the
    Gaussian noise std (Rician, electronic or read noise, 8-bit units).

    Args:
        prob: probability of attempting the degradation (MONAI ``RandomizableTransform`` semantics).
        brightness_threshold: B_T on the 8-bit Lab lightness scale [0, 255]; ``None`` disables the gate.
        max_sigma: largest Gaussian noise standard deviation, 8-bit units.
        min_factor: lower bound of the contrast and brightness factors (the paper's 0 would make the image
            constant; 0.1 is what the authors' code uses).
        max_factor: upper bound of the contrast and brightness factors (paper: ``R_max = 0.8``).
        mode: ``"paper"``, ``"reference_code"``, ``"mri_bias_rician"``, ``"lowdose_ct"`` or ``"xray_underexposed"``.
        reference_noise_max: upper bound of the uniform noise in ``"reference_code"`` mode, 8-bit units.
        noise_order: ``"before"`` (paper), ``"after"`` (acquisition) or ``"mixed"``.
        quantize: round the degraded image to 8-bit levels.
        bias_coeff_range: ``(lo, hi)`` in [0, 1] of the bias coefficient bound ``c`` (default (0.15, 0.4)).
        rician_sigma_range: Rician noise std range in [0, 255], 8-bit units (default (2, 10); (0, 0): no noise).
        dose_range: low-dose CT dose range in (0, 1], fraction of full dose (default (0.1, 0.5)).
        exposure_range: radiograph exposure range in (0, 1] (default (0.2, 0.6)).
        gamma_range: radiograph gamma range in (0, 10] (default (1.2, 2.0)).

    Invalid modes, orders or ranges raise ``ValueError``.
    """

    def __init__(
        self,
        prob: float = 1.0,
        brightness_threshold: float | None = 100.0,
        max_sigma: float = 10.0,
        min_factor: float = 0.1,
        max_factor: float = 0.8,
        mode: str = "paper",
        reference_noise_max: float = 4.0,
        noise_order: str = "before",
        quantize: bool = False,
        bias_coeff_range: Sequence[float] = BIAS_COEFF_RANGE,
        rician_sigma_range: Sequence[float] = RICIAN_SIGMA_RANGE,
        dose_range: Sequence[float] = CT_DOSE_RANGE,
        exposure_range: Sequence[float] = XRAY_EXPOSURE_RANGE,
        gamma_range: Sequence[float] = XRAY_GAMMA_RANGE,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        if noise_order not in _NOISE_ORDERS:
            raise ValueError(f"noise_order must be one of {_NOISE_ORDERS}, got {noise_order!r}.")
        self.noise_order = noise_order
        self.quantize = bool(quantize)
        self._noise_after = noise_order == "after"
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}.")
        if not 0.0 <= min_factor <= max_factor:
            raise ValueError(f"need 0 <= min_factor <= max_factor, got {min_factor}, {max_factor}.")
        if max_sigma < 0 or reference_noise_max < 0:
            raise ValueError("max_sigma and reference_noise_max must be non-negative.")
        self.brightness_threshold = brightness_threshold
        self.max_sigma = float(max_sigma)
        self.min_factor = float(min_factor)
        self.max_factor = float(max_factor)
        self.mode = mode
        self.reference_noise_max = float(reference_noise_max)
        ranges = (bias_coeff_range, rician_sigma_range, dose_range, exposure_range, gamma_range)
        # the realistic ranges are validated whatever the mode
        self.realistic = RealisticDegradation(mode if mode in REALISTIC_MODES else None, *ranges)
        self._sigma = _NAN
        self._contrast = _NAN
        self._brightness = _NAN
        self._contrast_first = True
        self.last_params: dict[str, Any] = self._params(False, _NAN)

    def randomize(self, data: Any = None) -> None:
        """Draw whether to transform and, if so, the scalar parameters (the noise field is drawn in ``__call__``)."""
        super().randomize(None)
        if not self._do_transform:
            return
        if self.mode == "paper":
            self._sigma = float(self.R.uniform(0.0, self.max_sigma))
            self._contrast = float(self.R.uniform(self.min_factor, self.max_factor))
            self._brightness = float(self.R.uniform(self.min_factor, self.max_factor))
            self._contrast_first = True
            self._noise_after = self.noise_order == "after" or (self.noise_order == "mixed" and bool(self.R.randint(2)))
        elif self.mode in REALISTIC_MODES:
            self.realistic.randomize(self.R)
            self._sigma, self._contrast, self._brightness = self.realistic.sigma, _NAN, _NAN
            self._contrast_first, self._noise_after = True, True  # acquisition noise, after any intensity change
        else:
            self._sigma = _NAN
            self._brightness = float(self.R.uniform(self.min_factor, self.max_factor))
            self._contrast = float(self.R.uniform(self.min_factor, self.max_factor))
            self._contrast_first = bool(self.R.randint(2))

    def _params(self, applied: bool, luminance: float) -> dict[str, Any]:
        return {
            "applied": bool(applied),
            "luminance": float(luminance),
            "sigma": float(self._sigma) if applied else _NAN,
            "contrast": float(self._contrast) if applied else _NAN,
            "brightness": float(self._brightness) if applied else _NAN,
            "contrast_first": bool(self._contrast_first) if applied else True,
            "noise_after": bool(self._noise_after) if applied else False,
            "pivot": _NAN,
            "mode": self.mode,
            **self.realistic.params(applied),
        }

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Degrade ``img``.

        Args:
            img: channel-first ``(C, H, W)`` or ``(C, H, W, D)`` float image in [0, 1], C = 1 or 3; numpy array,
                torch tensor or MetaTensor.
            randomize: draw new parameters first (set False when the caller already called ``randomize``).

        Returns:
            float32 image in [0, 1], same shape and type as ``img`` (MetaTensor meta kept).
        """
        if randomize:
            self.randomize()
        arr = convert_data_type(img, np.ndarray, dtype=np.float32)[0]
        _check_channels(arr)

        applied, luminance = self._do_transform, _NAN
        if applied and self.mode == "paper" and self.brightness_threshold is not None:
            luminance = mean_luminance_l8(arr)
            applied = luminance > self.brightness_threshold
        self.last_params = self._params(applied, luminance)
        if not applied:
            return _like(arr.copy(), img)

        out = arr
        if self.mode in REALISTIC_MODES:
            out, extra = self.realistic(arr, self.R)
            self.last_params.update(extra)
        elif self.mode == "paper":
            noise = self.R.standard_normal(out.shape).astype(np.float32) * np.float32(self._sigma / 255.0)
            if self._noise_after:
                self.last_params["pivot"] = float(_grey_mean(out))
                out = np.clip(np.float32(self._brightness) * _contrast(out, self._contrast), 0.0, 1.0) + noise
            else:
                out = np.clip(out + noise, 0.0, 1.0)
                self.last_params["pivot"] = float(_grey_mean(out))
                out = np.float32(self._brightness) * _contrast(out, self._contrast)
        else:
            if self._contrast_first:
                out = np.float32(self._brightness) * np.clip(_contrast(out, self._contrast), 0.0, 1.0)
            else:
                out = _contrast(np.float32(self._brightness) * out, self._contrast)
            out = np.clip(out, 0.0, 1.0)
            noise = self.R.uniform(0.0, self.reference_noise_max / 255.0, size=out.shape).astype(np.float32)
            out = out + noise
        out = np.clip(out, 0.0, 1.0)
        if self.quantize:
            out = np.round(out * np.float32(255.0)) / np.float32(255.0)
        return _like(out.astype(np.float32, copy=False), img)


def _default_lq_keys(keys: Sequence[Hashable]) -> list[Hashable]:
    return ["lq"] if len(keys) == 1 else [f"{k}_lq" for k in keys]


class RandLowQualityd(RandomizableTransform, MapTransform):
    """Dictionary twin of :class:`RandLowQuality`: adds a degraded copy of each image, keeping the clean one.

    The decision to transform (``prob``) and the scalar factors (and the bias field) are drawn once per call and
    shared by all keys; the luminance gate and the noise field are per key.

    Args:
        keys: keys of the clean images (left untouched).
        lq_keys: where to write the degraded images; default ``"lq"`` for one key, else ``f"{key}_lq"``.
        params_key: where to write ``last_params`` (plain Python floats/bools, default-collate friendly). With
            several keys a string is used as a suffix, ``f"{key}_{params_key}"``; a sequence gives one name per
            key; ``None`` writes nothing.
        allow_missing_keys: don't raise if a key is missing.
        prob, brightness_threshold, max_sigma, min_factor, max_factor, mode, reference_noise_max, noise_order,
            quantize, bias_coeff_range, rician_sigma_range, dose_range, exposure_range, gamma_range: as in
            :class:`RandLowQuality`. ``prob < 1`` gives a share of clean -> clean pairs.
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(
        self,
        keys: KeysCollection,
        lq_keys: KeysCollection | None = None,
        params_key: str | Sequence[str] | None = "lq_params",
        allow_missing_keys: bool = False,
        prob: float = 1.0,
        brightness_threshold: float | None = 100.0,
        max_sigma: float = 10.0,
        min_factor: float = 0.1,
        max_factor: float = 0.8,
        mode: str = "paper",
        reference_noise_max: float = 4.0,
        noise_order: str = "before",
        quantize: bool = False,
        bias_coeff_range: Sequence[float] = BIAS_COEFF_RANGE,
        rician_sigma_range: Sequence[float] = RICIAN_SIGMA_RANGE,
        dose_range: Sequence[float] = CT_DOSE_RANGE,
        exposure_range: Sequence[float] = XRAY_EXPOSURE_RANGE,
        gamma_range: Sequence[float] = XRAY_GAMMA_RANGE,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.lq_keys = list(_default_lq_keys(self.keys) if lq_keys is None else _as_list(lq_keys))
        if len(self.lq_keys) != len(self.keys):
            raise ValueError(f"lq_keys must match keys in length, got {self.lq_keys} for {self.keys}.")
        if params_key is None:
            self.params_keys: list[Hashable | None] = [None] * len(self.keys)
        elif isinstance(params_key, str):
            multi = len(self.keys) > 1
            self.params_keys = [f"{k}_{params_key}" if multi else params_key for k in self.keys]
        else:
            self.params_keys = list(params_key)
            if len(self.params_keys) != len(self.keys):
                raise ValueError("params_key as a sequence must match keys in length.")
        self.degrader = RandLowQuality(
            prob=1.0,
            brightness_threshold=brightness_threshold,
            max_sigma=max_sigma,
            min_factor=min_factor,
            max_factor=max_factor,
            mode=mode,
            reference_noise_max=reference_noise_max,
            noise_order=noise_order,
            quantize=quantize,
            bias_coeff_range=bias_coeff_range,
            rician_sigma_range=rician_sigma_range,
            dose_range=dose_range,
            exposure_range=exposure_range,
            gamma_range=gamma_range,
        )

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandLowQualityd:
        super().set_random_state(seed, state)
        self.degrader.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, Any]:
        """Add ``lq_keys`` (float32 degraded images, the inputs' type) and ``params_key`` entries to a copy of ``data``.

        Args:
            data: holds ``keys``: clean ``(C, H, W)`` images (or volumes) in [0, 1]."""
        d = dict(data)
        self.randomize(None)
        if self._do_transform:
            self.degrader.randomize(None)
        for key, lq_key, p_key in self.key_iterator(d, self.lq_keys, self.params_keys):
            if self._do_transform:
                d[lq_key] = self.degrader(d[key], randomize=False)
                params = dict(self.degrader.last_params)
            else:
                d[lq_key] = _like(convert_data_type(d[key], np.ndarray, dtype=np.float32)[0].copy(), d[key])
                params = self.degrader._params(False, _NAN)
            if p_key is not None:
                d[p_key] = params
        return d


def _as_list(keys: KeysCollection) -> list[Hashable]:
    return [keys] if isinstance(keys, (str, int)) or not isinstance(keys, Sequence) else list(keys)


RandLowQualityD = RandLowQualityDict = RandLowQualityd
