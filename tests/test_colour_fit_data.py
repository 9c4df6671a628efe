"""dpe_monai.data.colour_fit_data: tiles of permissively licensed colour images, read from wheels and sdists."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpe_monai.data import colour_fit_data as cf
from dpe_monai.data import downloads


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _textured(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_tiles_leave_out_bare_glass_and_keep_at_most_the_asked_number():
    img = _textured(1100, 1600, 0)
    img[:512, :512] = 245  # one empty grid cell (bare slide glass)
    tiles = cf._tiles(img, 4)
    assert 1 <= len(tiles) <= 4 and all(t.shape == (512, 512, 3) for t in tiles)
    assert all(t.mean(axis=-1).std() >= cf.MIN_STD for t in tiles)
    assert len(cf._tiles(img, 100)) == 6 - 1  # a 2 x 3 grid less the empty cell
    small = _textured(300, 200, 1)
    assert [t.shape for t in cf._tiles(small, 8)] == [(300, 200, 3)]


def test_items_are_read_from_wheels_and_sdists_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPE_MONAI_CACHE", str(tmp_path))
    monkeypatch.setenv(downloads.NO_DOWNLOAD_ENV, "1")
    wheel = downloads.SourceArchive("fakehisto", "1.0", "fakehisto-1.0-py3-none-any.whl", "x", wheel=True)
    sdist = downloads.SourceArchive("fakeskin", "2.0", "fakeskin-2.0.tar.gz", "y")
    wheel.path.parent.mkdir(parents=True)
    with zipfile.ZipFile(wheel.path, "w") as z:
        z.writestr("fakehisto/data/he.png", _png(_textured(600, 1100, 2)))
    with tarfile.open(sdist.path, "w:gz") as tar:
        payload = _png(_textured(200, 300, 3))
        info = tarfile.TarInfo("fakeskin-2.0/tests/data/skin.png")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    monkeypatch.setattr(
        cf,
        "ARCHIVES",
        {wheel: ("fakehisto", ("fakehisto/data/he.png",)), sdist: ("dermapred", ("fakeskin-2.0/tests/data/skin.png",))},
    )
    monkeypatch.setattr(cf, "INSTALLED", ())
    items = cf.colour_fit_items(max_tiles=8)
    assert [i["source"] for i in items] == ["dermapred", "fakehisto", "fakehisto"]
    assert all(Path(i["image"]).is_file() for i in items)
    wheel.path.unlink()
    sdist.path.unlink()  # written once: read without the archives from now on
    assert cf.colour_fit_items(max_tiles=8) == items

    datalist = tmp_path / "collection" / "datalist.json"
    datalist.parent.mkdir()
    datalist.write_text(
        json.dumps(
            {
                "training": [
                    {"image": "a.png", "channels": 3, "modality_group": "dermatology"},
                    {"image": "b.png", "channels": 1, "modality_group": "radiology"},
                ],
                "validation": [{"image": "c.png", "channels": 3, "modality_group": "dermatology"}],
            }
        )
    )
    out = json.loads(cf.write_colour_datalist(datalist, tmp_path / "colour.json", max_tiles=8).read_text())
    assert [Path(i["image"]).name for i in out["training"][:1]] == ["a.png"]
    assert Path(out["training"][0]["image"]).is_absolute() and len(out["validation"]) == 1
    assert [i["modality_group"] for i in out["training"][1:]] == ["dermatology", "microscopy", "microscopy"]


def test_every_archive_names_a_permissive_source():
    """The docstring's licence table names every archive and installed image (none of them GPL or non-commercial)."""
    doc = cf.__doc__ or ""
    for archive in cf.ARCHIVES:
        assert f"{archive.package}=={archive.version}" in doc
    for _, _, name in cf.INSTALLED:
        assert Path(name).name in doc
    assert "GPL" not in doc and "NC" not in doc
