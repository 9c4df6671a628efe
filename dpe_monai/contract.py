"""The intensity contract: how a file's values map to the network's [0, 1] and back. Written down once, here.

Training, evaluation, the bundle, the CLI, MONAI Label and the demo all window images with :func:`window_bounds`
(through :class:`~dpe_monai.transforms.IntensityWindow` or :func:`~dpe_monai.inference.files.enhance_native`):

**Into [0, 1]** (``u = clip((x - lo) / (hi - lo), 0, 1)``), with ``(lo, hi)`` chosen by ``mode``:

- ``"auto"`` (the default everywhere):

  1. 8-bit integer data (photographs, dermoscopy, H&E, 8-bit PNG/JPEG/DICOM): the container range 0..255.
     Brightness is absolute there, so a dark photo looks dark to the network and can be brightened. Not for
     NIfTI (``fmt="nifti"``): a volume's values have no display range, whatever type stores them (an 8-bit brain
     volume ending at 109 was once read as a dark image and brightened 2.4 times).
  2. otherwise (12/16-bit, HU, any NIfTI, float, with or without a DICOM window): a robust percentile window, the
     0.5th..99.5th percentile over the body (values above the image minimum, i.e. padding and the darkest
     background excluded, when that leaves >= 1 % of the values). Never a container range the data does not fill.
     The stored DICOM window is *not* the default: it is often a generic value (1000/2000 on an MR whose values end
     at 600) or a narrow clinical window, and a model trained on percentile-windowed targets changes good images
     less under the percentile window (measured on pydicom-data's MR_small 28.1 vs 20.5 dB, MR-SIEMENS 38.9 vs
     31.2 dB of themselves). ``mode="dicom"`` uses it on request.
- ``"dicom"``, ``"percentile"`` (over the body), ``"minmax"`` (the image's own min..max), ``"container"`` (what
  the format can store: 0..255, 0..65535, DICOM ``BitsStored`` through rescale; passed in by the caller).

**Back to the file's units**: the network's change is applied in the file's units,
``y = x + (hi - lo) * (v - u)`` with ``v`` the network output. Inside the window this is exactly
``lo + v * (hi - lo)``; values outside the window (e.g. bone and air outside a brain window) keep their distance
from it, so nothing outside the window is erased. ``y`` is then clipped to :func:`output_range`: the container
range where the container window applies (8-bit data under ``"auto"``, any data under ``"container"``: brightness is
absolute there, so a dark image may be brightened beyond its own maximum; a 12-bit scan stored in 16 bits and
windowed ``"container"`` is read as very dark and stretched over the whole 16-bit range, which is why ``"auto"``
windows such data relative to itself), otherwise the input's own min..max, so an enhanced scan never holds values
the scan did not have. Integer outputs are rounded to the stored dtype. A DICOM output keeps the source's display
windows first (a viewer opens it as before: a head CT in its brain window) and gets the window used
(:func:`dicom_window_tags`) as the last preset, "DPE enhancement window", which shows exactly ``v``.

Training targets are windowed with the same ``"auto"`` rule, so the network learns the display convention it is
used with. This module depends on numpy only; every layer may import it.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "WINDOW_MODES",
    "body_percentiles",
    "dicom_edges",
    "dicom_window_tags",
    "from_unit",
    "is_relative",
    "is_scan",
    "output_range",
    "to_unit",
    "window_bounds",
]

WINDOW_MODES = ("auto", "dicom", "percentile", "minmax", "container")
LOWER, UPPER = 0.5, 99.5


def dicom_edges(center: float, width: float) -> tuple[float, float]:
    """DICOM linear window (PS3.3 C.11.2.1.2) edges ``(lo, hi)`` for ``center``/``width`` (width >= 1)."""
    if width < 1:
        raise ValueError(f"DICOM window width must be >= 1, got {width}.")
    return center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2


def dicom_window_tags(lo: float, hi: float) -> tuple[float, float]:
    """``(WindowCenter, WindowWidth)`` whose DICOM linear window has edges ``lo``, ``hi`` (inverts ``dicom_edges``)."""
    return (lo + hi) / 2 + 0.5, max(1.0, hi - lo + 1)


def body_percentiles(values: np.ndarray, lower: float = LOWER, upper: float = UPPER) -> tuple[float, float]:
    """The ``lower``/``upper`` percentiles over the body: values above the minimum when they are >= 1 %."""
    flat = np.asarray(values).ravel()
    if flat.size > 4_000_000:  # a strided sample keeps big volumes fast; percentiles barely move
        flat = flat[:: flat.size // 2_000_000]
    body = flat[flat > flat.min()]
    if body.size < 0.01 * flat.size:
        body = flat
    lo, hi = np.percentile(body, [lower, upper])
    if hi <= lo:
        lo, hi = float(flat.min()), float(flat.max())
    return float(lo), float(hi)


def window_bounds(
    values: np.ndarray,
    dtype: np.dtype | str,
    mode: str = "auto",
    dicom_window: tuple[float, float] | None = None,
    container: tuple[float, float] | None = None,
    fmt: str | None = None,
) -> tuple[float, float, str]:
    """``(lo, hi, rule)``: the window of ``values`` (in the file's units) under ``mode``; ``rule`` is the one applied.

    Args:
        values: the image in its own units (any shape).
        dtype: the stored sample dtype (decides the 8-bit rule).
        mode: one of :data:`WINDOW_MODES`.
        dicom_window: ``(center, width)`` from the file, if it has one.
        container: the format's storable range, for ``"container"`` (default: the integer dtype's range).
        fmt: the file format when known (``"nifti"``: ``"auto"`` never takes the 8-bit container rule).

    Raises:
        ValueError: unknown mode, or a mode whose information is missing (``"dicom"`` without a window).
    """
    dtype = np.dtype(dtype)
    if mode not in WINDOW_MODES:
        raise ValueError(f"window must be one of {WINDOW_MODES}, got {mode!r}.")
    if mode == "auto":
        if dtype.itemsize == 1 and (dtype.kind in "ui" or dtype == np.bool_) and fmt != "nifti":
            return 0.0, 255.0, "container"
        return (*body_percentiles(values), "percentile")
    if mode == "dicom":
        if dicom_window is None:
            raise ValueError("window 'dicom' needs a file with WindowCenter/WindowWidth.")
        return (*dicom_edges(*dicom_window), "dicom")
    if mode == "percentile":
        return (*body_percentiles(values), "percentile")
    if mode == "minmax":
        return float(np.min(values)), float(np.max(values)), "minmax"
    if container is None:
        if dtype.kind not in "ui":
            raise ValueError(f"window 'container' needs an integer dtype or a container range, got {dtype}.")
        info = np.iinfo(dtype)
        container = (float(info.min), float(info.max))
    return float(container[0]), float(container[1]), "container"


def is_relative(rule: str | None) -> bool:
    """Whether a window ``rule`` set ``[0, 1]`` relative to the image itself (``"percentile"``, ``"dicom"``,
    ``"minmax"``) rather than by the container (``"container"``: 8-bit data, where brightness is absolute).

    This is the flag the global branch reads (:class:`~dpe_monai.networks.GlobalIntensity`); ``None`` (no window
    recorded) counts as the container rule.
    """
    return (rule or "container") != "container"


def is_scan(rule: str | None, grey: bool) -> bool:
    """Whether the network should treat an image as a *scan*: windowed relative to itself (:func:`is_relative`), or
    grey whatever its bit depth (an 8-bit grey PNG/JPEG/DICOM is an export of a scan or a micrograph; photographs
    and dermoscopy are colour). This is the flag handed to the network as ``relative``: a
    :class:`~dpe_monai.networks.GlobalLocalNet` with ``prefilter_on="relative"`` sends such images down its scan path
    (non-local means and its learned refiner where the network has one, then the denoised image's own percentile
    window). Networks without that route (the paper's ``DPENet`` ignores it; a ``GlobalLocalNet`` without
    ``prefilter_on="relative"``, e.g. a task-driven fine-tune) read the same flag: the learned tone correction is
    off for scans, whose target is their own window.

    Args:
        rule: the window rule the contract applied (``None``: none recorded, the container rule).
        grey: the image has one channel, or three equal ones, or three within the chroma noise of lossy colour
            storage (:func:`dpe_monai.transforms.is_near_grey` on the *file's* values, before any simulator adds
            per-channel noise).
    """
    return bool(grey) or is_relative(rule)


def to_unit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``clip((values - lo) / (hi - lo), 0, 1)`` as float32 (``values > lo`` when the window is empty)."""
    x = np.asarray(values, dtype=np.float64)
    u = (x - lo) / (hi - lo) if hi > lo else (x > lo).astype(np.float64)
    return np.clip(u, 0.0, 1.0).astype(np.float32)


def output_range(values: np.ndarray, rule: str, container: tuple[float, float] | None = None) -> tuple[float, float]:
    """The range an enhanced image may occupy: the container for ``"container"`` windows, else the input's own."""
    if rule == "container" and container is not None:
        return float(container[0]), float(container[1])
    if rule == "container":
        return 0.0, 255.0
    return float(np.min(values)), float(np.max(values))


def from_unit(
    enhanced: np.ndarray,
    values: np.ndarray,
    lo: float,
    hi: float,
    rule: str,
    container: tuple[float, float] | None = None,
) -> np.ndarray:
    """Map the network output ``enhanced`` (in [0, 1], same shape as ``values``) back to the file's units.

    Returns:
        float64 ``values + (hi - lo) * (enhanced - to_unit(values))`` clipped to :func:`output_range`.
    """
    x = np.asarray(values, dtype=np.float64)
    u = to_unit(x, lo, hi).astype(np.float64)
    y = x + (hi - lo) * (np.asarray(enhanced, dtype=np.float64) - u)
    a, b = output_range(x, rule, container)
    return np.clip(y, a, b)
