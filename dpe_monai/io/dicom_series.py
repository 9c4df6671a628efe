"""DICOM in, DICOM out: single files, multi-frame files and multi-file series, written as a derived series."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dpe_monai.contract import dicom_window_tags
from dpe_monai.io.dicom import (
    modality_lut,
    modality_range,
    not_an_image,
    read_dicom_header,
    read_dicom_pixels,
    stored_from_lut,
    tag_number,
)
from dpe_monai.io.formats import UNWRITABLE_LAYOUTS
from dpe_monai.io.image import BadImageError, NativeImage, describe_error

__all__ = ["read_dicom", "write_dicom", "DERIVED_SUFFIX"]

DERIVED_SUFFIX = " DPE enhanced"


def read_dicom(paths: list[Path], strict: bool = True, partial: bool = False) -> NativeImage:
    """Read one DICOM file or an ordered series (same ``SeriesInstanceUID``) as ``(C, rows, cols[, slices])``.

    Values are modality values (rescale slope/intercept applied) with MONOCHROME1 inverted so brighter means
    higher; the writer undoes both. JPEG lossless / JPEG-LS / JPEG 2000 / RLE files are decoded (pylibjpeg).

    Args:
        paths: one file, or the files of one series in slice order.
        strict: refuse PALETTE COLOR (it cannot be written back as read); with False it is mapped to RGB.
        partial: a file of a series that cannot be read (truncated, empty, undecodable, not an image) is left out
            and recorded in ``info["dropped"]`` as ``(path, one-line message)``, so the rest of the series is still
            enhanced (each output keeps its own slice position); ``sources`` then lists the files read. Without
            it, such a file fails the whole series. A series whose files all fail raises the first file's error.

    Raises:
        BadImageError: unreadable/truncated files, files without pixel data, non-image objects (SEG, reports...),
            1-bit data, inconsistent series, PALETTE COLOR when ``strict``.
    """
    slices, headers, read, dropped, errors = [], [], [], [], []
    palette = False
    for path in paths:
        try:
            values, header, palette_file = _read_one(path, strict)
        except BadImageError as e:
            if not (partial and len(paths) > 1):
                raise
            dropped.append((str(path), str(e)))
            errors.append(e)
            continue
        palette = palette or palette_file
        slices.append(values)
        headers.append(header)
        read.append(path)
    if not slices:
        raise BadImageError(errors[0].path, f"{errors[0].problem}; no file of this series of {len(paths)} is readable")
    paths = read
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise BadImageError(paths[0], f"series slices differ in shape: {sorted(shapes)}")
    frames = int(headers[0].get("NumberOfFrames", 1) or 1)
    rgb = int(headers[0].get("SamplesPerPixel", 1) or 1) == 3 or palette
    first = slices[0]
    if len(paths) == 1:
        if frames > 1:  # (frames, rows, cols[, 3]) -> (C, rows, cols, frames)
            arr = np.moveaxis(first, 0, -1) if not rgb else np.moveaxis(np.moveaxis(first, -1, 0), 1, -1)
            arr = arr[None] if not rgb else arr
        else:
            arr = first[None] if not rgb else np.moveaxis(first, -1, 0)
    elif rgb and strict:
        raise BadImageError(paths[0], "multi-file RGB DICOM series are not supported for enhancement")
    else:
        arr = np.stack([s[None] if not rgb else np.moveaxis(s, -1, 0) for s in slices], axis=-1)
    ds0 = headers[0]
    bits, signed = int(ds0.get("BitsAllocated", 16)), int(ds0.get("PixelRepresentation", 0)) == 1
    dtype = np.dtype(f"{'i' if signed else 'u'}{max(bits, 8) // 8}")
    info = {"headers": headers, "frames": frames, "rgb": rgb, "dropped": dropped}
    if palette:
        dtype = np.dtype(np.uint8 if arr.max() <= 255 else np.uint16)  # the RGB table's sample type
        info["unwritable"] = UNWRITABLE_LAYOUTS["PALETTE COLOR"]
    elif rgb and len(paths) > 1:
        info["unwritable"] = "multi-file RGB DICOM series are not supported for enhancement"
    return NativeImage(array=arr, kind="dicom", sources=list(paths), dtype=dtype, info=info)


def _read_one(path: Path, strict: bool) -> tuple[np.ndarray, pydicom.Dataset, bool]:
    """One file's modality values, header and whether it is PALETTE COLOR (mapped to RGB when not ``strict``)."""
    if path.stat().st_size == 0:
        raise BadImageError(path, "file is empty (0 bytes)")
    try:
        header = read_dicom_header(path)
    except InvalidDicomError as e:
        raise BadImageError(path, _headerless(path)) from e
    except Exception as e:
        raise BadImageError(path, f"not a readable DICOM file ({type(e).__name__}: {e})") from e
    reason = not_an_image(header)
    if reason:
        raise BadImageError(path, reason)
    palette = str(header.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR"
    if palette and strict:
        raise BadImageError(path, UNWRITABLE_LAYOUTS["PALETTE COLOR"])
    try:
        values, _ = read_dicom_pixels(path)
    except Exception as e:
        raise _pixel_problem(path, e) from e
    return np.asarray(values, dtype=np.float64), header, palette


def _headerless(path: Path) -> str:
    """Why a file without the DICOM file header (128-byte preamble, ``DICM``, file meta) is refused: a bare DICOM
    data set (an old ACR-NEMA-style file) is named as such; anything else is not a DICOM file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        bare = "SOPClassUID" in ds or "Rows" in ds
    except Exception:  # noqa: BLE001 - not even a bare data set
        bare = False
    if bare:
        return (
            "a DICOM data set without the DICOM file header (preamble, 'DICM' prefix, file meta) is not supported; "
            "save it with a file header first (e.g. dcmtk's dcmconv, or pydicom's dcmwrite(..., "
            "enforce_file_format=True))"
        )
    return "not a DICOM file (no DICOM file meta header or 'DICM' prefix)"


def _pixel_problem(path: Path, error: Exception) -> BadImageError:
    """Explain why a readable DICOM header came without decodable pixels: missing, truncated, or undecodable."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = pydicom.dcmread(path, force=True)
    pixel_tags = [t for t in (0x7FE00010, 0x7FE00008, 0x7FE00009) if t in ds]
    if not pixel_tags:
        if any("End of file reached" in str(w.message) for w in caught):  # cut inside an element or a sequence
            return BadImageError(path, "DICOM file is truncated (it ends inside a data element, before its pixel data)")
        return BadImageError(path, "DICOM file has no pixel data")
    missing = [k for k in ("Rows", "Columns") if k not in ds]
    if missing:
        return BadImageError(
            path, f"DICOM file has pixel data but no {' or '.join(missing)}: its image size is unknown"
        )
    if not ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian).is_compressed:
        frames = int(tag_number(ds, "NumberOfFrames", 1) or 1)
        expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * frames
        expected = expected * int(ds.get("BitsAllocated", 16)) // 8
        got = len(ds[pixel_tags[0]].value or b"")
        if got < expected:
            return BadImageError(path, f"DICOM file is truncated (pixel data has {got} of {expected} bytes)")
    return BadImageError(path, f"cannot decode DICOM pixel data ({type(error).__name__}: {error})")


def _stored_values(values: np.ndarray, ds: pydicom.Dataset, dtype: np.dtype) -> np.ndarray:
    """Modality values -> stored pixel values of ``ds`` (undo MONOCHROME1 inversion and rescale or the Modality LUT
    Sequence, clip to BitsStored)."""
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        lo, hi = modality_range(ds)
        values = (lo + hi) - values
    lut = modality_lut(ds)
    if lut is not None:  # a Modality LUT Sequence: the stored value whose LUT entry is nearest
        stored = stored_from_lut(values, lut).astype(np.float64)
    else:
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        stored = np.rint((values - intercept) / slope)
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    lo_s, hi_s = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return np.clip(stored, lo_s, hi_s).astype(dtype)


def write_dicom(image: NativeImage, values: np.ndarray, out_paths: list[Path], series_uid: str | None = None) -> None:
    """Write ``values`` (``image.array`` layout, modality units) as a derived series, one file per source file.

    Each output keeps rows, columns, BitsAllocated/BitsStored/PixelRepresentation and rescale tags; its window
    tags become ``image.info["window"]`` (the intensity contract's window, set by the enhancer) when present; it
    gets a new SeriesInstanceUID (shared by the series) and SOPInstanceUID, ``ImageType`` DERIVED\\SECONDARY and
    a SeriesDescription suffix.

    Compressed sources (JPEG lossless, JPEG-LS, JPEG 2000, RLE, lossy JPEG) are decoded on reading and the derived
    output is written *uncompressed* with the Explicit VR Little Endian transfer syntax (no re-encoding, so nothing is
    lost a second time and no encoder is needed); so are big-endian sources (a retired syntax); YBR colour is
    written as RGB; ``LossyImageCompression`` is kept as the source had it.

    Raises:
        BadImageError: ``image`` was decoded from a layout that cannot be written back as read (PALETTE COLOR).
    """
    if "unwritable" in image.info:
        raise BadImageError(image.sources[0], image.info["unwritable"])
    series_uid = series_uid or generate_uid()
    rgb = image.info["rgb"]
    for idx, (src, out) in enumerate(zip(image.sources, out_paths)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(src)
        pix = _file_layout(values, image, idx)
        stored = _stored_values(pix, ds, image.dtype)
        padding = _padding(ds)
        if padding is not None:  # PixelPaddingValue (to PixelPaddingRangeLimit) marks no data: written back as it was
            source = _stored_values(_file_layout(image.array, image, idx), ds, image.dtype)
            pad = (source >= padding[0]) & (source <= padding[1])
            stored[pad] = source[pad]
        # a VOI window applies to grey (MONOCHROME) only; an enhanced multi-frame image keeps its per-frame VOI in
        # its functional groups, where its rescale lives too, so a top-level window in our units would mislead
        functional = "SharedFunctionalGroupsSequence" in ds or "PerFrameFunctionalGroupsSequence" in ds
        if image.info.get("window") is not None and not rgb and not functional:
            _set_window(ds, *image.info["window"])
        _derive(ds, series_uid)
        syntax = ds.file_meta.TransferSyntaxUID
        if syntax.is_compressed or not syntax.is_little_endian:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        if rgb:
            ds.PhotometricInterpretation = "RGB"
            ds.PlanarConfiguration = 0
        ds.PixelData = np.ascontiguousarray(stored, dtype=stored.dtype.newbyteorder("<")).tobytes()
        ds["PixelData"].VR = "OW" if int(ds.get("BitsAllocated", 16)) > 8 else "OB"  # native data (PS3.5 A.2)
        implicit = ds.file_meta.TransferSyntaxUID.is_implicit_VR
        try:
            pydicom.dcmwrite(out, ds, enforce_file_format=True, little_endian=True, implicit_vr=implicit)
        except Exception as e:  # e.g. a header stored implicit VR under an explicit-VR transfer syntax
            why = describe_error(e)
            raise BadImageError(
                src, f"cannot write the enhanced DICOM: pydicom cannot encode this file's header again ({why})"
            ) from e


def _padding(ds: pydicom.Dataset) -> tuple[int, int] | None:
    """The stored values that mean "no data" (``PixelPaddingValue`` up to ``PixelPaddingRangeLimit``), or None."""
    value = ds.get("PixelPaddingValue")
    if value is None or value == "":
        return None
    limit = ds.get("PixelPaddingRangeLimit")
    limit = int(value) if limit is None or limit == "" else int(limit)
    return min(int(value), limit), max(int(value), limit)


def _file_layout(arr: np.ndarray, image: NativeImage, idx: int) -> np.ndarray:
    """File ``idx``'s part of ``arr`` (``image.array``'s layout) as that file stores it: ``(rows, cols)``,
    ``(frames, rows, cols)`` or with a trailing RGB axis."""
    rgb, frames = image.info["rgb"], image.info["frames"]
    if len(image.sources) > 1:
        return arr[0, ..., idx]
    if frames > 1:
        return np.moveaxis(arr[0], -1, 0) if not rgb else np.moveaxis(np.moveaxis(arr, 0, -1), -2, 0)
    return arr[0] if not rgb else np.moveaxis(arr, 0, -1)


def _set_window(ds: pydicom.Dataset, lo: float, hi: float) -> None:
    """Add ``[lo, hi]`` (modality units, bright = dense), the window the enhancement used, as the last display preset.

    The source's own windows (and a VOI LUT sequence) stay first, so a viewer opens the enhanced scan in the window
    the scanner or the radiologist set (a head CT stays at its brain window); the enhancement window follows as a
    preset named "DPE enhancement window" that shows the network's output exactly. A source without a window gets
    the enhancement window alone. For MONOCHROME1 the window is mirrored back onto the stored scale's modality values.
    """
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        a, b = modality_range(ds)
        lo, hi = (a + b) - hi, (a + b) - lo
    center, width = dicom_window_tags(lo, hi)
    centers, widths = _values(ds, "WindowCenter"), _values(ds, "WindowWidth")
    if not centers or len(centers) != len(widths):
        centers, widths = [], []
    names = [str(v) for v in _values(ds, "WindowCenterWidthExplanation")]
    names = names if len(names) == len(centers) else ["source window"] * len(centers)
    ds.WindowCenter = [*map(str, centers), f"{center:.6g}"] if centers else f"{center:.6g}"
    ds.WindowWidth = [*map(str, widths), f"{width:.6g}"] if widths else f"{width:.6g}"
    ds.WindowCenterWidthExplanation = [*names, "DPE enhancement window"] if centers else "DPE enhancement window"


def _values(ds: pydicom.Dataset, keyword: str) -> list:
    """A tag's values as a list (empty when absent or empty)."""
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, pydicom.multival.MultiValue) else [value]


def _derive(ds: pydicom.Dataset, series_uid: str) -> None:
    sop = generate_uid()
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SeriesInstanceUID = series_uid
    image_type = list(ds.get("ImageType", ["ORIGINAL", "PRIMARY"]))
    ds.ImageType = ["DERIVED", "SECONDARY"] + [v for v in image_type[2:]]
    ds.SeriesDescription = (str(ds.get("SeriesDescription", "")) + DERIVED_SUFFIX).strip()[:64]
    ds.DerivationDescription = "Deep Perceptual Enhancement (dpe-monai)"
    if ds.get("SeriesNumber") not in (None, ""):  # Type 2: may be present and empty
        ds.SeriesNumber = int(ds.SeriesNumber) + 1000
