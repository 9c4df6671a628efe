"""The one format table, DICOM detector and colour-layout policy of the package.

Every reader of image files (the ``dpe-monai enhance`` command, the MONAI :class:`~dpe_monai.io.readers.DPEImageReader`,
the user-folder scanner and ``data/ensure.py``) asks :func:`detect_kind` what a file is, so a file is the same kind
to all of them.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "DICOM_SUFFIXES",
    "FORMATS",
    "NIFTI_SUFFIXES",
    "RASTER_SUFFIXES",
    "UNWRITABLE_LAYOUTS",
    "detect_kind",
    "has_dicom_preamble",
]

#: file suffix (lower case) -> kind. Files with any other name are DICOM if they carry the ``DICM`` preamble.
FORMATS: dict[str, str] = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".ima": "dicom",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".bmp": "bmp",
    ".tif": "tiff",
    ".tiff": "tiff",
}
NIFTI_SUFFIXES = tuple(s for s, k in FORMATS.items() if k == "nifti")
DICOM_SUFFIXES = tuple(s for s, k in FORMATS.items() if k == "dicom")
RASTER_SUFFIXES = {s: k for s, k in FORMATS.items() if k not in ("nifti", "dicom")}

#: The one palette / alpha / PALETTE COLOR policy. An alpha channel (grey + alpha, RGB + alpha) is carried through
#: unchanged: the colour is enhanced, the alpha written back as read. The layouts below are *decoded* for reading
#: (palette -> RGB, or grey when every palette entry is grey; CMYK -> RGB; 1-bit -> 0/255 grey; DICOM PALETTE
#: COLOR -> RGB through its lookup table), which is what the collection builder and the MONAI reader get. A result
#: cannot be written back in such a layout as read, so ``read_image(..., strict=True)`` (the enhancement path)
#: refuses them with the reason below.
UNWRITABLE_LAYOUTS: dict[str, str] = {
    "P": "palette (indexed-colour) images are not supported for enhancement; convert to RGB or grayscale first",
    "PA": "palette images with alpha are not supported for enhancement; convert to RGB or grayscale first",
    "CMYK": "CMYK images are not supported for enhancement; convert to RGB first",
    "YCbCr": "YCbCr images are not supported for enhancement; convert to RGB first",
    "1": "1-bit images are not supported for enhancement (the result cannot be written back as 1-bit)",
    "PALETTE COLOR": "PALETTE COLOR DICOM is not supported for enhancement (cannot be written back as read)",
}


def has_dicom_preamble(path: str | Path) -> bool:
    """Whether ``path`` carries the DICOM Part 10 signature (``DICM`` after the 128-byte preamble)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def detect_kind(path: str | Path) -> str | None:
    """What an image file is, from its suffix, else from the DICOM signature.

    ``.nii``/``.nii.gz``, ``.dcm``/``.dicom``/``.ima`` (any case), ``.png``, ``.jpg``/``.jpeg``, ``.bmp``,
    ``.tif``/``.tiff`` decide by name. Any other file (no suffix, a numbered suffix like ``IM0001.1``, ...) is
    ``"dicom"`` when it carries the ``DICM`` signature. ``DICOMDIR`` (a media index, not an image) is ``None``.

    Args:
        path: the file.

    Returns:
        ``"nifti"``, ``"dicom"``, ``"png"``, ``"jpeg"``, ``"bmp"``, ``"tiff"`` or ``None`` (not an image file).
    """
    name = Path(path).name.lower()
    if name == "dicomdir":
        return None
    for suffix, kind in FORMATS.items():
        if name.endswith(suffix):
            return kind
    return "dicom" if has_dicom_preamble(path) else None
