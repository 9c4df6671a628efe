"""Scanning a user's folder of NIfTI, DICOM, PNG/JPEG/BMP and TIFF files into datalist items.

Every candidate is loaded once with :func:`dpe_monai.data.io.load_image`, so a file that is empty, truncated,
unreadable or of an unsupported dimensionality is found here, reported with a :class:`BadFileWarning` that names
the file and the problem, and skipped. DICOM files are grouped into series by ``SeriesInstanceUID``; a bad slice
is dropped from its series and named, the rest of the series still loads.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from dpe_monai.data.dicom import group_series, read_dicom_header
from dpe_monai.data.io import BadFileWarning, BadImageError, describe_error, detect_format, load_image

__all__ = ["list_image_files", "scan_folder"]

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
        fmt = detect_format(root)
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
            fmt = detect_format(path)
            if fmt is not None:
                found.append((path, fmt))
            else:
                logger.debug("ignoring %s: not an image file type", path)
    return sorted(found)


def _describe(item_image: str | list[str], fmt: str) -> dict:
    """Load an item (raises ``BadImageError``) and describe it as a datalist entry."""
    try:
        img = load_image(item_image)
    except BadImageError:
        raise
    except Exception as exc:  # a reader failing in an unforeseen way must not stop the scan
        first = item_image[0] if isinstance(item_image, list) else item_image
        raise BadImageError(first, f"cannot be loaded ({describe_error(exc)})") from exc
    spatial = [int(s) for s in img.shape[1:]]
    entry: dict = {
        "image": item_image,
        "format": "dicom-series" if isinstance(item_image, list) else fmt,
        "channels": int(img.shape[0]),
        "ndim": len(spatial),
        "shape": spatial,
        "bit_depth": int(img.meta.get("bit_depth", 8 * np.dtype(img.numpy().dtype).itemsize)),
    }
    for key in ("modality", "patient_id", "series_uid", "photometric"):
        if img.meta.get(key):
            entry[key] = str(img.meta[key])
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
        order (load it with :func:`dpe_monai.data.io.load_image`). ``bad`` lists ``(path, reason)`` for every skipped
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
            _report(bad, path, exc.reason)
    for series in group_series(dicom_headers):
        members = list(series)
        while members:
            image: str | list[str] = members if len(members) > 1 else members[0]
            try:
                items.append((members[0], _describe(image, "dicom")))
                break
            except BadImageError as exc:
                _report(bad, exc.path, exc.reason)
                if exc.path not in members:  # cannot pin the failure on one slice
                    for p in members:
                        if p != exc.path:
                            _report(bad, p, f"series could not be assembled ({exc.reason})")
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
    from dpe_monai.data.io import to_display
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
            arr = to_display(load_image(entry["image"]))
            kind = "volume" if entry["ndim"] == 3 else "image"
            return [SourceImage(name, arr, kind, meta={"file": rel}, min_foreground=0.1)]

        source = f"user_{tag}"
        modality = entry.get("modality") or entry["format"]
        subjects.append(Subject(source, f"{source}:{local}", modality_group, modality, load))
    return subjects, bad
