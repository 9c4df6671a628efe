"""Enhancement I/O: read an image in its own format and write a result back in the same format and bit depth.

NIfTI (nibabel), DICOM (pydicom; single files, multi-frame and multi-file series) and PNG/JPEG/BMP/TIFF
(Pillow/tifffile), 8- or 16-bit, grey or RGB. Writes are atomic and never replace an input file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dpe_monai.io.atomic import OutputCollisionError, atomic_write, check_not_input
from dpe_monai.io.dicom_series import read_dicom, write_dicom
from dpe_monai.io.discover import InputJob, detect_kind, discover
from dpe_monai.io.image import BadImageError, NativeImage, check_values
from dpe_monai.io.nifti import read_nifti, write_nifti
from dpe_monai.io.raster import read_raster, write_raster

__all__ = [
    "BadImageError",
    "InputJob",
    "NativeImage",
    "OutputCollisionError",
    "atomic_write",
    "check_not_input",
    "check_values",
    "detect_kind",
    "discover",
    "output_paths",
    "read_image",
    "write_image",
]


def read_image(paths: str | Path | list[Path], kind: str | None = None) -> NativeImage:
    """Read a file (or a DICOM series given as its ordered files) as a :class:`NativeImage`."""
    paths = [Path(p) for p in (paths if isinstance(paths, list) else [paths])]
    kind = kind or detect_kind(paths[0])
    if kind == "nifti":
        return read_nifti(paths[0])
    if kind == "dicom":
        return read_dicom(paths)
    if kind is None:
        raise BadImageError(paths[0], f"unsupported file type {paths[0].suffix!r}")
    return read_raster(paths[0])


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
