"""Realistic medical degradations for :class:`~dpe_monai.transforms.RandLowQuality`.

Three acquisition models beside the paper's Algorithm 1 (see ``docs/DEGRADATION.md``):

* ``"mri_bias_rician"``: a smooth multiplicative MRI bias field (MONAI ``RandBiasField``) then Rician noise
  (MONAI ``RandRicianNoise``).
* ``"lowdose_ct"``: image-domain Poisson-Gaussian noise at a fraction of the full dose.
* ``"xray_underexposed"``: exposure drop and gamma darkening, then quantum (Poisson) and read noise.

The functions take a float32 channel-first ``(C, H, W)`` or ``(C, H, W, D)`` image in [0, 1] and a
``np.random.RandomState`` (all randomness comes from it; MONAI sub-transforms are seeded from it) and return float32
arrays of the same shape, *not* clipped: the caller clips to [0, 1] and quantizes. A grey image stored as three
identical channels is degraded once and replicated, so it stays grey.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from monai.transforms import RandBiasField, RandRicianNoise
from monai.utils import convert_data_type

from dpe_monai.transforms.preprocess import is_grey

__all__ = [
    "BIAS_COEFF_RANGE",
    "BIAS_DEGREE",
    "CT_DOSE_RANGE",
    "CT_ELECTRONIC_SIGMA",
    "CT_FULL_DOSE_PHOTONS",
    "REALISTIC_MODES",
    "REALISTIC_PARAM_KEYS",
    "RICIAN_SIGMA_RANGE",
    "RealisticDegradation",
    "XRAY_EXPOSURE_RANGE",
    "XRAY_FULL_EXPOSURE_PHOTONS",
    "XRAY_GAMMA_RANGE",
    "XRAY_READ_SIGMA",
    "bias_gain",
    "check_range",
    "lowdose_ct",
    "mri_bias_rician",
    "xray_underexposed",
]

REALISTIC_MODES = ("mri_bias_rician", "lowdose_ct", "xray_underexposed")
#: Mode-specific ``last_params`` entries, present for every mode (NaN where a mode does not use them).
REALISTIC_PARAM_KEYS = ("bias_coeff_max", "bias_min", "dose", "exposure", "gamma")

#: Degree of the Legendre polynomial bias field (MONAI ``RandBiasField``).
BIAS_DEGREE = 3
#: Range of ``c``: the field's coefficients are ``~ U(-c, c)`` with ``c ~ U(*BIAS_COEFF_RANGE)`` per call.
BIAS_COEFF_RANGE = (0.15, 0.4)
#: Rician noise standard deviation, 8-bit units (``/ 255`` in [0, 1] units).
RICIAN_SIGMA_RANGE = (2.0, 10.0)
#: Low-dose CT dose, fraction of the full dose.
CT_DOSE_RANGE = (0.1, 0.5)
#: Effective full-dose photon count per pixel of a [0, 1] image: mid-grey (0.5) then has noise std
#: ``sqrt(0.5 / 1000) ~ 0.022`` (~9 HU in a 400 HU soft-tissue window), quarter dose twice that.
CT_FULL_DOSE_PHOTONS = 1000.0
#: Electronic (detector) noise standard deviation of the low-dose CT model, 8-bit units.
CT_ELECTRONIC_SIGMA = 1.0
#: Radiograph exposure, fraction of the full exposure.
XRAY_EXPOSURE_RANGE = (0.2, 0.6)
#: Radiograph gamma (> 1 darkens the mid-tones more than the highlights).
XRAY_GAMMA_RANGE = (1.2, 2.0)
#: Effective photon count per pixel at full exposure and intensity 1 (SNR ~ 32 at mid-grey, full exposure).
XRAY_FULL_EXPOSURE_PHOTONS = 2000.0
#: Detector read noise standard deviation of the radiograph model, 8-bit units.
XRAY_READ_SIGMA = 1.0

_NAN = float("nan")


def check_range(
    name: str, value: Sequence[float], low: float = 0.0, high: float = math.inf, low_open: bool = False
) -> tuple[float, float]:
    """Validate a ``(lo, hi)`` range: ``low <= lo <= hi <= high`` (``low < lo`` when ``low_open``), all finite.

    Raises:
        ValueError: with the range's name and the bounds it must satisfy.
    """
    rule = f"{low} {'<' if low_open else '<='} low <= high <= {high}"
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high) of numbers with {rule}, got {value!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and (lo > low if low_open else lo >= low) and lo <= hi <= high):
        raise ValueError(f"{name} must satisfy {rule}, got {value!r}.")
    return lo, hi


def _per_grey(fn: Callable[[np.ndarray], np.ndarray], img: np.ndarray) -> np.ndarray:
    """``fn(img)``, or ``fn`` on one channel replicated three times when ``img`` is grey stored as RGB."""
    if img.shape[0] == 3 and is_grey(img):
        return np.repeat(fn(img[:1]), 3, axis=0)
    return fn(img)


def _seed(R: np.random.RandomState) -> int:
    return int(R.randint(2**31))


def bias_gain(spatial_shape: Sequence[int], coeff_max: float, seed: int, degree: int = BIAS_DEGREE) -> np.ndarray:
    """A smooth multiplicative bias field from MONAI ``RandBiasField``, scaled to peak at 1.

    Args:
        spatial_shape: ``(H, W)`` or ``(H, W, D)``.
        coeff_max: the Legendre coefficients are drawn ``~ U(-coeff_max, coeff_max)``.
        seed: seed of the ``RandBiasField`` draw.
        degree: polynomial degree.

    Returns:
        float32 ``(1, *spatial_shape)`` gain ``exp(field) / max(exp(field))`` in (0, 1]: a receive-coil sensitivity,
        1 where the coil is most sensitive, so the field darkens but never saturates.
    """
    sub = RandBiasField(degree=degree, coeff_range=(-float(coeff_max), float(coeff_max)), prob=1.0)
    sub.set_random_state(seed=int(seed))
    field = convert_data_type(sub(np.ones((1, *spatial_shape), np.float32)), np.ndarray, dtype=np.float64)[0]
    return (field / field.max()).astype(np.float32)


def _rician(img: np.ndarray, sigma: float, R: np.random.RandomState) -> np.ndarray:
    if sigma <= 0:
        return img.copy()
    sub = RandRicianNoise(prob=1.0, mean=0.0, std=float(sigma) / 255.0, sample_std=False)
    sub.set_random_state(seed=_seed(R))
    return convert_data_type(sub(img), np.ndarray, dtype=np.float32)[0]


def mri_bias_rician(
    img: np.ndarray,
    R: np.random.RandomState,
    coeff_max: float,
    sigma: float,
    field_seed: int | None = None,
    degree: int = BIAS_DEGREE,
) -> tuple[np.ndarray, float]:
    """MRI bias field (the same gain for every channel, see :func:`bias_gain`) then Rician noise.

    Args:
        img: float32 ``(C, H, W[, D])`` in [0, 1].
        R: random state (the field seed, when not given, and the noise seed are drawn from it).
        coeff_max: bias coefficient bound (``BIAS_COEFF_RANGE`` by default in the simulator).
        sigma: standard deviation of the Gaussian noise on each of the real and imaginary parts, 8-bit units.
        field_seed: seed of the bias field (shares one field between images); drawn from ``R`` if None.
        degree: bias polynomial degree.

    Returns:
        ``(image, bias_min)``: float32 ``sqrt((g x + n1)^2 + n2^2)`` (non-negative, unclipped above) and the smallest
        gain of the field.
    """
    gain = bias_gain(img.shape[1:], coeff_max, _seed(R) if field_seed is None else field_seed, degree)
    out = _per_grey(lambda x: _rician(x * gain, sigma, R), img)
    return out, float(gain.min())


def lowdose_ct(
    img: np.ndarray,
    R: np.random.RandomState,
    dose: float,
    photons: float = CT_FULL_DOSE_PHOTONS,
    electronic_sigma: float = CT_ELECTRONIC_SIGMA,
) -> np.ndarray:
    """Low-dose CT, an image-domain Poisson-Gaussian approximation (not a projection-domain simulation).

    ``y = Poisson(x * N0 * dose) / (N0 * dose) + N(0, (electronic_sigma / 255)^2)``: the mean is kept, the noise
    variance is ``x / (N0 dose)``. Real low-dose CT noise is formed in the sinogram and shaped by reconstruction
    (streaks, correlated texture, more noise behind dense structures); this model has none of that.

    Args:
        img: float32 ``(C, H, W[, D])`` in [0, 1].
        R: random state.
        dose: fraction of the full dose, in (0, 1].
        photons: full-dose photon count per pixel ``N0``.
        electronic_sigma: electronic noise standard deviation, 8-bit units.

    Returns:
        float32 noisy image, same shape (may leave [0, 1]).
    """
    count = float(photons) * float(dose)

    def noisy(x: np.ndarray) -> np.ndarray:
        y = R.poisson(np.clip(x, 0.0, None).astype(np.float64) * count) / count
        return (y + R.standard_normal(x.shape) * (electronic_sigma / 255.0)).astype(np.float32)

    return _per_grey(noisy, img)


def xray_underexposed(
    img: np.ndarray,
    R: np.random.RandomState,
    exposure: float,
    gamma: float,
    photons: float = XRAY_FULL_EXPOSURE_PHOTONS,
    read_sigma: float = XRAY_READ_SIGMA,
) -> np.ndarray:
    """Under-exposed radiograph: ``x' = e * x^g``, then quantum noise ``Poisson(N x') / N`` and read noise.

    The expected photon count ``N e x^g`` scales with the exposure, so the relative noise ``1 / sqrt(N e x^g)``
    grows as the exposure drops. Intensity is treated as proportional to detected quanta (bright = more quanta).

    Args:
        img: float32 ``(C, H, W[, D])`` in [0, 1].
        R: random state.
        exposure: ``e``, fraction of the full exposure, in (0, 1].
        gamma: ``g`` > 0 (> 1 darkens the mid-tones).
        photons: photon count ``N`` per pixel at full exposure and intensity 1.
        read_sigma: read noise standard deviation, 8-bit units.

    Returns:
        float32 dark, noisy image, same shape (may leave [0, 1]).
    """

    def noisy(x: np.ndarray) -> np.ndarray:
        dark = float(exposure) * np.clip(x, 0.0, 1.0).astype(np.float64) ** float(gamma)
        y = R.poisson(dark * float(photons)) / float(photons)
        return (y + R.standard_normal(x.shape) * (read_sigma / 255.0)).astype(np.float32)

    return _per_grey(noisy, img)


class RealisticDegradation:
    """Draws and applies one of :data:`REALISTIC_MODES`; the realistic half of ``RandLowQuality``.

    Ranges are validated whatever the mode (``mode=None`` makes an inert instance that only validates and reports
    NaN parameters). Scalars are drawn by :meth:`randomize` (shared by all images of a call, as is the bias field's
    seed); the noise is drawn per image in :meth:`__call__`.

    Args:
        mode: one of :data:`REALISTIC_MODES`, or None.
        bias_coeff_range: range of the bias coefficient bound ``c`` (coefficients ``~ U(-c, c)``), within [0, 1].
        rician_sigma_range: Rician noise std range, 8-bit units, within [0, 255].
        dose_range: CT dose range, fraction of full dose, within (0, 1].
        exposure_range: radiograph exposure range, fraction of full exposure, within (0, 1].
        gamma_range: radiograph gamma range, within (0, 10].
    """

    def __init__(
        self,
        mode: str | None = None,
        bias_coeff_range: Sequence[float] = BIAS_COEFF_RANGE,
        rician_sigma_range: Sequence[float] = RICIAN_SIGMA_RANGE,
        dose_range: Sequence[float] = CT_DOSE_RANGE,
        exposure_range: Sequence[float] = XRAY_EXPOSURE_RANGE,
        gamma_range: Sequence[float] = XRAY_GAMMA_RANGE,
    ) -> None:
        if mode is not None and mode not in REALISTIC_MODES:
            raise ValueError(f"mode must be one of {REALISTIC_MODES} or None, got {mode!r}.")
        self.mode = mode
        self.bias_coeff_range = check_range("bias_coeff_range", bias_coeff_range, 0.0, 1.0)
        self.rician_sigma_range = check_range("rician_sigma_range", rician_sigma_range, 0.0, 255.0)
        self.dose_range = check_range("dose_range", dose_range, 0.0, 1.0, low_open=True)
        self.exposure_range = check_range("exposure_range", exposure_range, 0.0, 1.0, low_open=True)
        self.gamma_range = check_range("gamma_range", gamma_range, 0.0, 10.0, low_open=True)
        self.sigma = _NAN
        self.values: dict[str, float] = dict.fromkeys(REALISTIC_PARAM_KEYS, _NAN)
        self._field_seed = 0

    def randomize(self, R: np.random.RandomState) -> None:
        """Draw the scalar parameters of ``self.mode`` into ``self.values`` and ``self.sigma`` (8-bit units)."""
        v = dict.fromkeys(REALISTIC_PARAM_KEYS, _NAN)
        if self.mode == "mri_bias_rician":
            v["bias_coeff_max"] = float(R.uniform(*self.bias_coeff_range))
            self.sigma = float(R.uniform(*self.rician_sigma_range))
            self._field_seed = _seed(R)
        elif self.mode == "lowdose_ct":
            v["dose"] = float(R.uniform(*self.dose_range))
            self.sigma = float(CT_ELECTRONIC_SIGMA)
        elif self.mode == "xray_underexposed":
            v["exposure"] = float(R.uniform(*self.exposure_range))
            v["gamma"] = float(R.uniform(*self.gamma_range))
            self.sigma = float(XRAY_READ_SIGMA)
        else:
            self.sigma = _NAN
        self.values = v

    def params(self, applied: bool) -> dict[str, float]:
        """The mode-specific ``last_params`` entries (all :data:`REALISTIC_PARAM_KEYS`; NaN when not applied)."""
        return dict(self.values) if applied else dict.fromkeys(REALISTIC_PARAM_KEYS, _NAN)

    def __call__(self, img: np.ndarray, R: np.random.RandomState) -> tuple[np.ndarray, dict[str, float]]:
        """Degrade float32 ``(C, H, W[, D])`` ``img`` in [0, 1] with the drawn parameters, noise from ``R``.

        Returns:
            ``(image, extra)``: float32 unclipped image and per-image ``last_params`` updates (``bias_min``).
        """
        v = self.values
        if self.mode == "mri_bias_rician":
            out, bias_min = mri_bias_rician(img, R, v["bias_coeff_max"], self.sigma, field_seed=self._field_seed)
            return out, {"bias_min": bias_min}
        if self.mode == "lowdose_ct":
            return lowdose_ct(img, R, v["dose"]), {}
        if self.mode == "xray_underexposed":
            return xray_underexposed(img, R, v["exposure"], v["gamma"]), {}
        raise RuntimeError(f"RealisticDegradation(mode={self.mode!r}) cannot degrade an image.")
