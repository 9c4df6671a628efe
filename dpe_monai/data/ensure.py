"""Resolve a bundle's ``dataset_dir`` to a datalist: the packaged collection, or a user's folder of images."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["default_dataset_dir", "ensure_collection", "folder_fingerprint"]

logger = logging.getLogger(__name__)


def default_dataset_dir() -> Path:
    """Where the packaged collection lives by default: ``$DPE_MONAI_DATA``, else ``~/.cache/dpe-monai/collection``."""
    return Path(os.environ.get("DPE_MONAI_DATA", Path.home() / ".cache" / "dpe-monai" / "collection")).expanduser()


#: beside a user folder's collection: the fingerprint of the folder it was built from
FINGERPRINT = "source_fingerprint.txt"


def _image_files(folder: Path) -> Iterator[Path]:
    """The image files under ``folder`` by the image-file layer's detector (``.IMA``, ``IM0001.1`` and suffix-less
    DICOMs with the ``DICM`` signature count), hidden files and folders left out."""
    from dpe_monai.io import detect_kind

    for path in folder.rglob("*"):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if not hidden and path.is_file() and detect_kind(path) is not None:
            yield path


def _has_images(folder: Path) -> bool:
    """Whether ``folder`` holds any image file (see :func:`_image_files`)."""
    return next(_image_files(folder), None) is not None


def folder_fingerprint(folder: str | os.PathLike) -> str:
    """sha256 of the image files under ``folder``: relative paths, sizes and modification times, so an added,
    removed, renamed or rewritten image changes it."""
    root = Path(folder)
    h = hashlib.sha256()
    for path in sorted(_image_files(root)):
        st = path.stat()
        h.update(f"{path.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def ensure_collection(dataset_dir: str | os.PathLike, seed: int = 0, user_group: str = "radiology") -> str:
    """Return a MONAI datalist path for ``dataset_dir``, building it on first use.

    - ``dataset_dir/datalist.json`` exists: use it (a collection built before, or the user's own datalist).
    - ``dataset_dir`` is missing or empty: build the packaged collection there.
    - ``dataset_dir`` holds the user's images (NIfTI, DICOM, PNG/JPEG/TIFF, any depth of folders; DICOM by suffix
      ``.dcm``/``.dicom``/``.IMA`` or by the ``DICM`` signature, e.g. ``IM0001.1``) but no datalist:
      build a collection of *those* images (subject-wise splits, 2-D items from volumes) into the sibling folder
      ``<dataset_dir>_dpe_collection``; the user's folder is never written to. That collection is rebuilt when the
      folder's images change (added, removed, renamed or rewritten files: :func:`folder_fingerprint`).

    A file lock makes concurrent callers (e.g. the ranks of a distributed run) build once.

    Args:
        dataset_dir: see above.
        seed: split seed for :func:`~dpe_monai.data.build.build_collection`.
        user_group: modality group recorded for a user's images.
    """
    from dpe_monai.data.build import DATALIST, build_collection

    root = Path(dataset_dir).expanduser()
    if (root / DATALIST).is_file():
        return str(root / DATALIST)
    user = root.is_dir() and _has_images(root)
    target = root.with_name(root.name + "_dpe_collection") if user else root
    datalist = target / DATALIST

    def current() -> bool:
        if not datalist.is_file():
            return False
        if not user:
            return True
        stamp = target / FINGERPRINT
        return stamp.is_file() and stamp.read_text().strip() == folder_fingerprint(root)

    if current():
        return str(datalist)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not current():
            if user:
                if datalist.is_file():
                    logger.warning("%s: its images changed since %s was built (or it has no record): rebuilding", root,
                                   target)  # fmt: skip
                fingerprint = folder_fingerprint(root)
                build_collection(target, seed=seed, sources=[], user_folders=[root], user_group=user_group)
                (target / FINGERPRINT).write_text(fingerprint + "\n")
            else:
                if not root.exists() and root.resolve() != default_dataset_dir().resolve():  # a typo, not the cache
                    logger.warning(
                        "dataset_dir %s does not exist: building the packaged collection there (point dataset_dir at "
                        "a folder of your images to train on them)",
                        root,
                    )
                build_collection(target, seed=seed)
    return str(datalist)
