"""Scanning a user's folder of NIfTI, DICOM, PNG/JPEG/BMP and TIFF files into datalist items.

This module is a client of the image-file layer :mod:`dpe_monai.io`: files are found with its format table and DICOM
detector (so ``.IMA``, ``IM0001.1`` and suffix-less DICOMs count), and every candidate is read once with
:func:`dpe_monai.io.read_image` (``strict=False``: palette and alpha layouts are decoded to grey/RGB), so a file that
is empty, truncated, unreadable, not an image (DICOM SEG, 1-bit data) or of an unsupported dimensionality is found
here, reported with a :class:`~dpe_monai.io.BadFileWarning` that names the file and the problem, and skipped. DICOM
files are grouped into series by ``SeriesInstanceUID``; a bad slice is dropped from its series and named, the rest of
the series still loads.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from dpe_monai.io import BadFileWarning, BadImageError, NativeImage, describe_error, detect_kind, read_image
from dpe_monai.io.dicom import group_series, read_dicom_header
from dpe_monai.io.image import monai_layout, native_values

__all__ = ["display_array", "list_image_files", "scan_folder"]

logger = logging.getLogger(__name__)


def list_image_files(root: str | Path, recursive: bool = True) -> list[tuple[str, str]]:
    """Candidate image files under ``root`` (hidden files and folders are ignored), sorted by path.

    Args:
        root: a folder (or a single file).
        recursive: descend into sub-folders.

    Returns:
        ``(path, format)`` pairs; files whose suffix is not an image format (and which do not carry the DICOM
        preamble) are left out.
    """
    root = Path(root)
    if root.is_file():
        fmt = detect_kind(root)
        return [(str(root), fmt)] if fmt else []
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a file or folder")
    found: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            fmt = detect_kind(path)
            if fmt is not None:
                found.append((path, fmt))
            else:
                logger.debug("ignoring %s: not an image file type", path)
    return sorted(found)


def _read(item_image: str | list[str]) -> NativeImage:
    """Read an item with the image-file layer; only 2-D images and 3-D volumes with 1 or 3 channels pass."""
    first = item_image[0] if isinstance(item_image, list) else item_image
    try:
        image = read_image(item_image, strict=False)
    except BadImageError:
        raise
    except Exception as exc:  # a reader failing in an unforeseen way must not stop the scan
        raise BadImageError(first, f"cannot be loaded ({describe_error(exc)})") from exc
    spatial = [s for s in image.array.shape[1:] if s != 1]
    if image.array.shape[0] not in (1, 3) or len(spatial) not in (2, 3):
        raise BadImageError(first, f"unsupported dimensionality {image.array.shape} (channels first): need a 2-D "
                                   "image or 3-D volume")  # fmt: skip
    return image


def display_array(image: NativeImage) -> np.ndarray:
    """An image as the collection builder slices it, singleton spatial axes dropped, stored sample type kept.

    2-D: ``(rows, cols)`` or ``(rows, cols, 3)``. Volumes: MONAI's ``(C, x, y, z)`` (NIfTI ``(C, i, j, k)``) brought
    to ``(z, rows, cols[, 3])``, a stack of 2-D frames in display orientation (NIfTI: ``(k, j, i)``).
    """
    arr = monai_layout(image, native_values(image))
    arr = arr.reshape(arr.shape[0], *[s for s in arr.shape[1:] if s != 1])
    arr = np.swapaxes(arr, 1, 2)  # (C, y, x[, z])
    if arr.ndim == 4:
        arr = np.moveaxis(arr, 3, 1)  # (C, z, y, x)
    arr = np.moveaxis(arr, 0, -1)
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def _describe(item_image: str | list[str], fmt: str) -> dict:
    """Read an item (raises ``BadImageError``) and describe it as a datalist entry (``shape`` in MONAI's layout)."""
    image = _read(item_image)
    spatial = [int(s) for s in monai_layout(image).shape[1:] if s != 1]
    entry: dict = {
        "image": item_image,
        "format": "dicom-series" if isinstance(item_image, list) else fmt,
        "channels": int(image.array.shape[0]),
        "ndim": len(spatial),
        "shape": spatial,
        "bit_depth": 8 * np.dtype(image.dtype).itemsize,
    }
    if image.kind == "dicom":
        ds = image.info["headers"][0]
        tags = {"modality": "Modality", "patient_id": "PatientID", "series_uid": "SeriesInstanceUID",
                "photometric": "PhotometricInterpretation"}  # fmt: skip
        for key, tag in tags.items():
            if str(ds.get(tag, "") or ""):
                entry[key] = str(ds.get(tag))
    return entry


def _report(bad: list[tuple[str, str]], path: str, reason: str) -> None:
    """Record a skipped file and warn with its name and the problem."""
    bad.append((str(path), reason))
    warnings.warn(f"skipping {path}: {reason}", BadFileWarning, stacklevel=3)


def scan_folder(root: str | Path, recursive: bool = True) -> tuple[list[dict], list[tuple[str, str]]]:
    """Find, group and validate every image under ``root``.

    Args:
        root: the user's folder (or a single file).
        recursive: descend into sub-folders.

    Returns:
        ``(items, bad)``. ``items`` are datalist entries ``{"image": path, "format", "channels", "ndim", "shape",
        "bit_depth", ...}`` in path order; a multi-file DICOM series has ``"image"`` = its slice paths in slice
        order (read it with :func:`dpe_monai.io.read_image`). ``bad`` lists ``(path, reason)`` for every skipped
        file; each one was also announced with a :class:`BadFileWarning`.
    """
    items: list[tuple[str, dict]] = []
    bad: list[tuple[str, str]] = []
    dicom_headers = []
    for path, fmt in list_image_files(root, recursive):
        if os.path.getsize(path) == 0:
            _report(bad, path, "empty file (0 bytes)")
            continue
        if fmt == "dicom":
            try:
                dicom_headers.append((path, read_dicom_header(path)))
            except Exception as exc:
                _report(bad, path, f"unreadable DICOM ({describe_error(exc)})")
            continue
        try:
            items.append((path, _describe(path, fmt)))
        except BadImageError as exc:
            _report(bad, path, exc.problem)
    for series in group_series(dicom_headers):
        members = list(series)
        while members:
            image: str | list[str] = members if len(members) > 1 else members[0]
            try:
                items.append((members[0], _describe(image, "dicom")))
                break
            except BadImageError as exc:
                _report(bad, exc.path, exc.problem)
                if exc.path not in members:  # cannot pin the failure on one slice
                    for p in members:
                        if p != exc.path:
                            _report(bad, p, f"series could not be assembled ({exc.problem})")
                    break
                members = [p for p in members if p != exc.path]
    items.sort(key=lambda kv: kv[0])
    logger.info("%s: %d images, %d skipped", root, len(items), len(bad))
    return [entry for _, entry in items], sorted(bad)


def user_folder_subjects(
    root: str | Path, modality_group: str = "radiology", recursive: bool = True
) -> tuple[list, list]:
    """A user's folder as collection subjects, for :func:`dpe_monai.data.build.build_collection`.

    The subject of a DICOM item is its ``PatientID`` (so every series of a patient lands in one split), otherwise
    the file path relative to ``root``. Splits are by seeded hash of the subject.

    Args:
        root: the folder.
        modality_group: group given to every item (``radiology``, ``dermatology`` or ``microscopy``).
        recursive: descend into sub-folders.

    Returns:
        ``(subjects, bad)``: :class:`~dpe_monai.data.sources.Subject` records and the skipped ``(path, reason)``.
    """
    from dpe_monai.data.sources import GROUPS, SourceImage, Subject

    if modality_group not in GROUPS:
        raise ValueError(f"modality_group must be one of {GROUPS}, got {modality_group!r}")
    root = Path(root)
    entries, bad = scan_folder(root, recursive)
    tag = "".join(c if c.isalnum() else "_" for c in root.resolve().name) or "folder"
    subjects = []
    for n, entry in enumerate(entries):
        first = Path(entry["image"][0] if isinstance(entry["image"], list) else entry["image"])
        rel = first.relative_to(root).as_posix() if root.is_dir() else first.name
        local = entry.get("patient_id") or rel
        name = f"{n:05d}_" + "".join(c if c.isalnum() else "_" for c in Path(rel).name)[:60]

        def load(entry: dict = entry, name: str = name, rel: str = rel) -> list:
            arr = display_array(_read(entry["image"]))
            kind = "volume" if entry["ndim"] == 3 else "image"
            return [SourceImage(name, arr, kind, meta={"file": rel}, min_foreground=0.1)]

        source = f"user_{tag}"
        modality = entry.get("modality") or entry["format"]
        subjects.append(Subject(source, f"{source}:{local}", modality_group, modality, load))
    return subjects, bad
