"""The package's one image-file layer: read an image in its own format, write a result back in the same format.

NIfTI (nibabel), DICOM (pydicom; single files, multi-frame files and multi-file series; JPEG lossless, JPEG-LS and
JPEG 2000 through pylibjpeg) and PNG/JPEG/BMP/TIFF (Pillow/tifffile; multi-page TIFF stacks as volumes), 8- or 16-bit,
grey or RGB. One format table and DICOM detector (:mod:`dpe_monai.io.formats`), one :class:`BadImageError`, one
decoder per format, one palette/alpha/PALETTE COLOR policy. The same decoders are offered to MONAI as
:class:`dpe_monai.io.readers.DPEImageReader` (``LoadImaged(reader=DPEImageReader)``). Writes are atomic, follow the
umask and never replace an input file. This layer imports nothing else from ``dpe_monai``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dpe_monai.io.atomic import OutputCollisionError, atomic_write, check_not_input
from dpe_monai.io.dicom_series import read_dicom, write_dicom
from dpe_monai.io.discover import InputJob, discover
from dpe_monai.io.formats import detect_kind
from dpe_monai.io.image import BadFileWarning, BadImageError, NativeImage, check_values, describe_error
from dpe_monai.io.nifti import read_nifti, write_nifti
from dpe_monai.io.raster import read_raster, write_raster

__all__ = [
    "BadFileWarning",
    "BadImageError",
    "DPEImageReader",
    "InputJob",
    "NativeImage",
    "OutputCollisionError",
    "atomic_write",
    "check_not_input",
    "check_values",
    "describe_error",
    "detect_kind",
    "discover",
    "output_paths",
    "read_image",
    "write_image",
]


def __getattr__(name: str):
    if name == "DPEImageReader":  # imports MONAI: only on demand
        from dpe_monai.io.readers import DPEImageReader

        return DPEImageReader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def read_image(
    paths: str | Path | list[Path], kind: str | None = None, strict: bool = True, partial: bool = False
) -> NativeImage:
    """Read a file (or a DICOM series given as its ordered files) as a :class:`NativeImage`.

    Args:
        paths: a file, or the files of one DICOM series in slice order.
        kind: the format (:func:`detect_kind` when None).
        strict: refuse what cannot be written back as read (palette, CMYK, 1-bit raster, PALETTE COLOR,
            multi-file RGB DICOM), as the enhancement path needs; with False those are decoded to grey/RGB
            (:data:`~dpe_monai.io.formats.UNWRITABLE_LAYOUTS`). Non-image objects (DICOM SEG, 1-bit DICOM, reports)
            are refused either way.
        partial: a DICOM series is read without the files of it that cannot be read, which are listed in
            ``info["dropped"]`` (:func:`~dpe_monai.io.dicom_series.read_dicom`); other formats ignore it.

    Raises:
        BadImageError: one line naming the file and the problem.
    """
    paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    kind = kind or detect_kind(paths[0])
    if not paths[0].is_file():
        raise BadImageError(paths[0], "no such file")
    if kind == "nifti":
        return read_nifti(paths[0])
    if kind == "dicom":
        return read_dicom(paths, strict=strict, partial=partial)
    if kind is None:
        raise BadImageError(paths[0], f"unsupported file type {paths[0].suffix or '(no extension)'!r}")
    return read_raster(paths[0], strict=strict)


def output_paths(job: InputJob, output_dir: str | Path, postfix: str = "_dpe") -> list[Path]:
    """Mirror each input's path relative to its root under ``output_dir``; the name starts with the input stem."""
    out = []
    for path in job.paths:
        rel = path.relative_to(job.root) if path.is_relative_to(job.root) else Path(path.name)
        name = rel.name
        for suffix in (".nii.gz", ".nii"):
            if name.lower().endswith(suffix):
                stem, ext = name[: -len(suffix)], name[-len(suffix) :]
                break
        else:
            stem, ext = Path(name).stem, Path(name).suffix
        out.append(Path(output_dir) / rel.parent / f"{stem}{postfix}{ext}")
    return out


def write_image(image: NativeImage, values: np.ndarray, out_paths: list[Path]) -> list[Path]:
    """Write ``values`` in ``image``'s format to ``out_paths`` atomically, refusing to replace any input file."""
    for out in out_paths:
        check_not_input(out, image.sources)
    if image.kind == "dicom":
        tmp_paths = []
        try:
            with _many_atomic(out_paths) as tmp_paths:
                write_dicom(image, values, tmp_paths)
        finally:
            for tmp in tmp_paths:
                Path(tmp).unlink(missing_ok=True)
        return out_paths
    with atomic_write(out_paths[0]) as tmp:
        (write_nifti if image.kind == "nifti" else write_raster)(image, values, tmp)
    return out_paths


class _many_atomic:
    """Atomic write of several files: all temporaries are renamed only if every write succeeded."""

    def __init__(self, outs: list[Path]) -> None:
        self.outs = outs
        self.ctxs = [atomic_write(o) for o in outs]
        self.tmps: list[Path] = []

    def __enter__(self) -> list[Path]:
        self.tmps = [c.__enter__() for c in self.ctxs]
        return self.tmps

    def __exit__(self, exc_type, exc, tb) -> bool:
        for c in self.ctxs:
            c.__exit__(exc_type, exc, tb)
        return False
