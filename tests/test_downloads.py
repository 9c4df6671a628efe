"""Source archives fetched at run time (dpe_monai.data.downloads) and the fundus samples read from one."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpe_monai.data import downloads
from dpe_monai.data.fundusprep_data import MEMBERS, SOURCE, fundus_files


def test_missing_archive_with_downloads_off_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPE_MONAI_CACHE", str(tmp_path))
    monkeypatch.setenv(downloads.NO_DOWNLOAD_ENV, "1")
    with pytest.raises(FileNotFoundError, match="retinalysis_fundusprep-1.1.0.tar.gz is not cached"):
        fundus_files()
    assert not (tmp_path / "downloads" / "retinalysis_fundusprep-1.1.0").exists()


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def test_fundus_samples_are_extracted_once_and_only_the_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPE_MONAI_CACHE", str(tmp_path))
    monkeypatch.setenv(downloads.NO_DOWNLOAD_ENV, "1")
    png = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(png, format="PNG")
    SOURCE.path.parent.mkdir(parents=True)
    with tarfile.open(SOURCE.path, "w:gz") as tar:
        _add(tar, MEMBERS + "b_eye.png", png.getvalue())
        _add(tar, MEMBERS + "a_eye.jpg", b"not decoded here")
        _add(tar, MEMBERS + "notes.txt", b"left out")
        _add(tar, "retinalysis_fundusprep-1.1.0/tests/reference/other.png", png.getvalue())
    files = fundus_files()
    assert [f.name for f in files] == ["a_eye.jpg", "b_eye.png"]
    assert files[1].read_bytes() == png.getvalue()
    SOURCE.path.unlink()  # extracted once: the folder is read without the archive from now on
    assert [f.name for f in fundus_files()] == ["a_eye.jpg", "b_eye.png"]
