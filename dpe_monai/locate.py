"""Where the DPE bundle lives: beside the package when installed from a wheel, in the repository when editable."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["BUNDLE_NAME", "bundle_candidates", "bundle_dir"]

BUNDLE_NAME = "dpe_enhancement"


def bundle_candidates(package_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for the bundle, in order.

    1. ``$DPE_MONAI_BUNDLE``;
    2. ``<package>/bundles/dpe_enhancement`` (shipped as package data by ``pip install .``);
    3. ``<package>/../bundles/dpe_enhancement`` (a source checkout or an editable install).

    Args:
        package_dir: the ``dpe_monai`` package folder (default: this package's).
    """
    package = Path(package_dir) if package_dir is not None else Path(__file__).resolve().parent
    found = [Path(os.environ["DPE_MONAI_BUNDLE"]).expanduser()] if os.environ.get("DPE_MONAI_BUNDLE") else []
    return found + [package / "bundles" / BUNDLE_NAME, package.parent / "bundles" / BUNDLE_NAME]


def bundle_dir(package_dir: str | os.PathLike | None = None) -> Path:
    """The first candidate of :func:`bundle_candidates` holding ``configs/inference.json``.

    An explicit ``$DPE_MONAI_BUNDLE`` is returned even when it is not a bundle (the caller reports it); without
    one, the repository location is returned when nothing is found, so error messages name a real place.
    """
    candidates = bundle_candidates(package_dir)
    if os.environ.get("DPE_MONAI_BUNDLE"):
        return candidates[0]
    for path in candidates:
        if (path / "configs" / "inference.json").is_file():
            return path
    return candidates[-1]
