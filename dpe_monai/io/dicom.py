"""DICOM header and pixel helpers of the image-file layer (used by the enhancement reader, the MONAI reader and the
collection builder alike).

Pixel decoding and rescale slope/intercept are left to pydicom (``pixel_array``, ``apply_modality_lut``; JPEG
lossless, JPEG-LS and JPEG 2000 through the pylibjpeg plugins); this module adds what pydicom does not do for
display-ready values:

* ``MONOCHROME1`` (low values are white) is inverted over the theoretical modality range, so bright means dense or
  high signal for every grayscale image, as in ``MONOCHROME2``;
* ``PALETTE COLOR`` images are mapped through their colour lookup table to RGB;
* objects whose pixel data are not an image that can be written back as read (segmentations, 1-bit data, reports,
  presentation states, ...) are named by :func:`not_an_image`;
* series are grouped by ``SeriesInstanceUID`` and ordered along the slice normal.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, iter_pixels

__all__ = [
    "NON_IMAGE_SOP_PREFIXES",
    "apply_photometric",
    "group_series",
    "dicom_bit_depth",
    "modality_lut",
    "modality_range",
    "not_an_image",
    "read_dicom_header",
    "read_dicom_pixels",
    "slice_sort_key",
    "stored_from_lut",
    "tag_int",
    "tag_number",
]


def tag_number(ds: Dataset, keyword: str, default: float) -> float:
    """A numeric header value, or ``default`` when it is missing, empty or malformed (e.g. ``IS`` value ``"1A"``)."""
    try:
        value = ds.get(keyword, None)
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def tag_int(ds: Dataset, keyword: str, default: int) -> int:
    """Integer version of :func:`tag_number`."""
    return int(tag_number(ds, keyword, default))


def read_dicom_header(path: str | Path, *, stop_before_pixels: bool = True) -> Dataset:
    """Read a DICOM file's header quietly (pydicom's validation warnings about odd VRs are silenced).

    Args:
        path: the file.
        stop_before_pixels: skip the pixel data (fast); lookup tables stored before it are still read.

    Returns:
        The pydicom dataset.

    Raises:
        pydicom.errors.InvalidDicomError: not a DICOM file. Other ``Exception`` subclasses for unreadable files.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels)


def dicom_bit_depth(ds: Dataset) -> int:
    """Container bit depth of the stored pixels (``BitsAllocated``: 8 or 16 for almost every image)."""
    return tag_int(ds, "BitsAllocated", 16) or 16


def modality_lut(ds: Dataset) -> tuple[int, np.ndarray] | None:
    """A Modality LUT Sequence as ``(first stored value, modality value of each stored value from it on)``; None
    when the file has none (rescale slope/intercept or nothing). The table is pydicom's ``apply_modality_lut`` of
    the stored values it covers, so it reads exactly as the pixels were read."""
    seq = ds.get("ModalityLUTSequence")
    if not seq:
        return None
    n, first = int(seq[0].LUTDescriptor[0]) or 65536, int(seq[0].LUTDescriptor[1])
    if tag_int(ds, "PixelRepresentation", 0) == 1 and first >= 2**15:  # a signed first value written as US
        first -= 2**16
    return first, np.asarray(apply_modality_lut(np.arange(first, first + n), ds), dtype=np.float64)


def stored_from_lut(values: np.ndarray, lut: tuple[int, np.ndarray]) -> np.ndarray:
    """Invert a monotonic :func:`modality_lut`: the stored value whose modality value is nearest to each of
    ``values`` (``ValueError`` for a table that goes up and down)."""
    first, table = lut
    steps = np.diff(table)
    if np.all(steps >= 0):
        order = np.arange(table.size)
    elif np.all(steps <= 0):
        order = np.arange(table.size)[::-1]
    else:
        raise ValueError("its Modality LUT is not monotonic, so the result cannot be stored back in the file's units")
    t = table[order]
    idx = np.clip(np.searchsorted(t, values), 1, t.size - 1)
    nearer = np.where(np.abs(values - t[idx - 1]) <= np.abs(t[idx] - values), idx - 1, idx)
    return first + order[nearer]


def modality_range(ds: Dataset) -> tuple[float, float]:
    """Theoretical ``[low, high]`` of the modality values: ``BitsStored`` range through slope/intercept, or the
    range of a Modality LUT Sequence's values."""
    lut = modality_lut(ds)
    if lut is not None:
        return float(lut[1].min()), float(lut[1].max())
    bits = tag_int(ds, "BitsStored", 0) or tag_int(ds, "BitsAllocated", 16) or 16
    if tag_int(ds, "PixelRepresentation", 0) == 1:
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    else:
        lo, hi = 0, 2**bits - 1
    slope = tag_number(ds, "RescaleSlope", 1.0) or 1.0
    intercept = tag_number(ds, "RescaleIntercept", 0.0)
    a, b = lo * slope + intercept, hi * slope + intercept
    return (min(a, b), max(a, b))


def apply_photometric(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Make modality values display-ready: invert ``MONOCHROME1``, map ``PALETTE COLOR`` to RGB (last axis).

    Args:
        values: pixel values after the modality LUT (rescale slope/intercept), any spatial layout.
        ds: the dataset (a header read with ``stop_before_pixels`` suffices; it holds the palette tables).

    Returns:
        An array of the same spatial layout; ``MONOCHROME1`` keeps its dtype where the inverted range fits it
        (else float32); ``PALETTE COLOR`` gains a trailing RGB axis (``uint8`` when the table holds 8-bit
        values scaled to 16 bits).
    """
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "MONOCHROME1":
        lo, hi = modality_range(ds)
        inverted = (lo + hi) - values.astype(np.float64)
        if np.issubdtype(values.dtype, np.integer):
            info = np.iinfo(values.dtype)
            if info.min <= inverted.min() and inverted.max() <= info.max:
                return inverted.astype(values.dtype)
        return inverted.astype(np.float32)
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(np.asarray(values).astype(np.int64, copy=False), ds)
        if rgb.dtype == np.uint16:  # 8-bit tables are often stored scaled to 16 bits (x257 or x256)
            if not np.any(rgb % 257):
                return (rgb // 257).astype(np.uint8)
            if not np.any(rgb % 256):
                return (rgb >> 8).astype(np.uint8)
        return rgb
    return values


#: SOP class UID prefixes of objects that are not images (or whose pixel data are labels, not intensities).
NON_IMAGE_SOP_PREFIXES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.66",  # segmentation, surface segmentation, registration, fiducials, raw data
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports, key object selection
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF / CDA / STL
    "1.2.840.10008.5.1.4.1.1.9.",  # waveforms
    "1.2.840.10008.5.1.4.1.1.481.2",  # RT dose: a dose grid (Gy), not intensities; smoothing it changes a plan's dose
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT structure set
    "1.2.840.10008.5.1.4.1.1.481.4",  # RT beams treatment record
    "1.2.840.10008.5.1.4.1.1.481.5",  # RT plan
    "1.2.840.10008.5.1.4.1.1.481.6",  # RT brachy treatment record
    "1.2.840.10008.5.1.4.1.1.481.7",  # RT treatment summary record
    "1.2.840.10008.5.1.4.1.1.481.8",  # RT ion plan
    "1.2.840.10008.5.1.4.1.1.481.9",  # RT ion beams treatment record
    "1.2.840.10008.1.3.10",  # media storage directory (DICOMDIR)
)


def not_an_image(ds: Dataset) -> str | None:
    """Why a DICOM object's pixel data cannot be enhanced and written back as read, or None for an image.

    Refused: non-image SOP classes (:data:`NON_IMAGE_SOP_PREFIXES`, e.g. DICOM SEG), and 1-bit pixel data
    (``BitsAllocated`` 1: packed bits that a derived image could not reproduce).

    Args:
        ds: the header (``stop_before_pixels`` suffices).

    Returns:
        A one-line reason, or ``None``.
    """
    meta = getattr(ds, "file_meta", None)
    uid = str(ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta is not None else ""))
    prefixes = NON_IMAGE_SOP_PREFIXES
    if any(uid.startswith(p) if p.endswith(".") else uid == p or uid.startswith(p + ".") for p in prefixes):
        name = getattr(ds.get("SOPClassUID", None), "name", "") or uid
        return f"{name} object (SOP class {uid}) is not an image: its pixel data cannot be enhanced and written back"
    if tag_int(ds, "BitsAllocated", 16) == 1:
        return "1-bit pixel data (BitsAllocated 1) cannot be enhanced and written back as read"
    lut = modality_lut(ds) if "ModalityLUTSequence" in ds else None
    if lut is not None:
        try:
            stored_from_lut(lut[1][:1], lut)
        except ValueError as e:
            return str(e)
    return None


#: transfer syntaxes decoded with Pillow when it can (the decoder the packaged collection was built with; lossy JPEG
#: decoders differ in the last bit). Everything else goes to pydicom's default plugin order (pylibjpeg, ...).
_PILLOW_FIRST = {
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.51",  # JPEG extended
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
}


def _decode(ds: Dataset, frames: int) -> np.ndarray:
    """Stored pixel values of every frame (``(rows, cols[, 3])`` or ``(frames, rows, cols[, 3])``)."""
    syntax = str(getattr(ds.get("file_meta", None), "TransferSyntaxUID", "") or "")
    options: list[dict] = [{"decoding_plugin": "pillow"}, {}] if syntax in _PILLOW_FIRST else [{}]
    for n, opts in enumerate(options):
        try:
            if frames > 1:  # frame by frame: bounded memory
                return np.stack(list(iter_pixels(ds, **opts)))
            return next(iter_pixels(ds, **opts)) if opts else ds.pixel_array
        except Exception:
            if n == len(options) - 1:
                raise
    raise AssertionError("unreachable")


def read_dicom_pixels(path: str | Path) -> tuple[np.ndarray, Dataset]:
    """Decode a DICOM file with pydicom into display-ready values.

    Rescale slope/intercept are applied (``apply_modality_lut``), then ``MONOCHROME1``/``PALETTE COLOR`` are
    handled by :func:`apply_photometric`. YBR colour is converted to RGB by pydicom.

    Args:
        path: a DICOM file.

    Returns:
        ``(array, dataset)``: array ``(rows, cols)``, ``(rows, cols, 3)``, ``(frames, rows, cols)`` or
        ``(frames, rows, cols, 3)``; the full dataset.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(str(path))
        frames = tag_int(ds, "NumberOfFrames", 1) or 1
        raw = _decode(ds, frames)
        photometric = str(ds.get("PhotometricInterpretation", "")).upper()
        values = raw if photometric == "PALETTE COLOR" else apply_modality_lut(raw, ds)
    return apply_photometric(values, ds), ds


def slice_sort_key(ds: Dataset, path: str | Path) -> tuple[float, int, str]:
    """Order of a slice inside its series: position along the slice normal, then ``InstanceNumber``, then path."""
    position = 0.0
    try:
        ipp, iop = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
        if ipp is not None and iop is not None and len(ipp) == 3 and len(iop) == 6:
            normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
            position = float(np.dot(normal, np.asarray(ipp, float)))
    except (TypeError, ValueError):
        position = 0.0
    return (position, tag_int(ds, "InstanceNumber", 0), str(path))


def _layout(ds: Dataset) -> tuple:
    """What the slices of one stack share: size, sample type and orientation."""
    keys = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated")
    try:
        iop = tuple(round(float(v), 3) for v in ds.get("ImageOrientationPatient") or ())
    except (TypeError, ValueError):
        iop = ()
    return (*(tag_int(ds, k, 0) for k in keys), iop)


def _is_series(members: Sequence[tuple[str, Dataset]]) -> bool:
    """A true multi-file series: same geometry and sample type, and no two files at the same slice position."""
    if len(members) < 2:
        return False
    layout = {_layout(ds) for _, ds in members}
    places = {slice_sort_key(ds, "")[:2] for _, ds in members}
    return len(layout) == 1 and len(places) == len(members)


def group_series(headers: Sequence[tuple[str, Dataset]]) -> list[list[str]]:
    """Group DICOM files by ``SeriesInstanceUID``; multi-frame files and files without a UID stand alone.

    Files sharing a UID are split by layout (size, sample type, orientation: a localizer saved with the series
    leaves the stack, which stays one series); a part that does not form a stack (the same slice position twice,
    e.g. the same image saved with several transfer syntaxes, or echoes at one position) is kept as single files.

    Args:
        headers: ``(path, header)`` pairs.

    Returns:
        Lists of paths, each ordered with :func:`slice_sort_key`; the groups are sorted by their first path.
    """
    groups: dict[str, list[tuple[str, Dataset]]] = {}
    for path, ds in headers:
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        frames = tag_int(ds, "NumberOfFrames", 1) or 1
        key = f"file:{path}" if not uid or frames > 1 else f"uid:{uid}"
        groups.setdefault(key, []).append((path, ds))
    ordered: list[list[str]] = []
    for members in groups.values():
        parts: dict[tuple, list[tuple[str, Dataset]]] = {}
        for member in members:
            parts.setdefault(_layout(member[1]), []).append(member)
        for part in parts.values():
            if _is_series(part):
                ordered.append([p for p, _ in sorted(part, key=lambda m: slice_sort_key(m[1], m[0]))])
            else:
                ordered += [[p] for p, _ in part]
    return sorted(ordered, key=lambda paths: paths[0])
