"""Build the packaged collection on first use (bundle configs call this for their default ``dataset_dir``)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["ensure_collection"]


def ensure_collection(dataset_dir: str | os.PathLike, seed: int = 0) -> str:
    """Return ``<dataset_dir>/datalist.json``, building the packaged collection there first if it is missing.

    A file lock makes concurrent callers (e.g. the ranks of a distributed run) build it once.

    Args:
        dataset_dir: folder of the collection (created if needed).
        seed: split seed passed to :func:`~dpe_monai.data.build.build_collection`.
    """
    from dpe_monai.data.build import DATALIST, build_collection

    root = Path(dataset_dir)
    datalist = root / DATALIST
    if datalist.is_file():
        return str(datalist)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not datalist.is_file():
            build_collection(root, seed=seed)
    return str(datalist)
