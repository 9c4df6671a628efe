"""Regenerate the committed bad-input corpus ``tests/bad_inputs/`` deterministically.

Usage: ``python tests/make_bad_inputs.py [OUT_DIR]`` (default: ``tests/bad_inputs`` next to this file).

The corpus holds good files of every supported format (``good/``) and one file for each kind of bad input the
``dpe-monai enhance`` command must reject with a one-line message naming the file (``bad/``). ``EXPECTED.json``
maps each bad file to a fragment its message must contain, and lists the outputs the good files must produce.
Every byte depends only on this script and the pydicom test files it copies (fixed seeds, fixed UIDs), so
running it twice gives identical files. The size-limit case assumes the test runs with ``--max-pixels`` =
``MAX_PIXELS``.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import tifffile
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

MAX_PIXELS = 20_000  # good images are <= 128 x 128 = 16,384 pixels; ``bad/too_big.png`` has 40,000
ROOT = Path(__file__).resolve().parent / "bad_inputs"


def _uid(name: str) -> str:
    """A fixed, valid UID derived from ``name`` (pydicom hashes the entropy sources)."""
    return generate_uid(entropy_srcs=["dpe-monai bad-input corpus", name])


def _pattern(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A smooth, non-constant pattern in [0, 1] with a little fixed noise."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 1, s) for s in shape], indexing="ij")
    out = 0.5 + 0.35 * np.sin(sum((i + 2) * g for i, g in enumerate(grids)) * 3) + rng.normal(0, 0.02, shape)
    return np.clip(out, 0, 1)


def _nifti(path: Path, data: np.ndarray) -> None:
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[:3, 3] = [-9.6, -9.6, 0.0]
    nib.save(nib.Nifti1Image(data, affine), path)


def _dicom(name: str) -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file(name))


def _with_uids(ds: pydicom.Dataset, name: str, series: str) -> pydicom.Dataset:
    ds.SeriesInstanceUID = _uid(series)
    ds.SOPInstanceUID = _uid(name)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def make_good(root: Path) -> list[str]:
    """Good files of every format; returns their relative paths."""
    good = root / "good"
    (good / "series").mkdir(parents=True)
    grey = (_pattern((48, 40), 1) * 255).astype(np.uint8)
    Image.fromarray(grey).save(good / "grey8.png")
    rgb = (np.stack([_pattern((40, 44), s) for s in (2, 3, 4)], -1) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(good / "rgb8.png")
    Image.fromarray((_pattern((36, 50), 5) * 65535).astype(np.uint16)).save(good / "grey16.png")
    tifffile.imwrite(good / "grey16.tif", (_pattern((64, 48), 6) * 4095).astype(np.uint16), photometric="minisblack")
    _nifti(good / "volume.nii.gz", (_pattern((24, 24, 6), 7) * 2000 - 1000).astype(np.int16))
    _with_uids(_dicom("CT_small.dcm"), "ct", "ct").save_as(good / "ct.dcm", enforce_file_format=True)
    _with_uids(_dicom("MR_small.dcm"), "mr", "mr").save_as(good / "mr.dcm", enforce_file_format=True)
    ct = _dicom("CT_small.dcm")
    for i in range(3):  # a three-file series of 32 x 32 crops, written in reverse slice order on purpose
        ds = _with_uids(copy.deepcopy(ct), f"series{i}", "series")
        pix = ct.pixel_array[40 + 8 * i : 72 + 8 * i, 40:72].astype(np.int16)
        ds.Rows, ds.Columns = pix.shape
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(5 * (2 - i))]
        ds.PixelData = pix.tobytes()
        ds.save_as(good / "series" / f"slice{i}.dcm", enforce_file_format=True)
    return sorted(str(p.relative_to(root)) for p in good.rglob("*") if p.is_file())


def make_bad(root: Path) -> dict[str, str]:
    """One file per bad-input kind; returns ``{relative path: fragment its message must contain}``."""
    bad = root / "bad"
    bad.mkdir(parents=True)
    expected: dict[str, str] = {}

    ct_bytes = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    ct = _with_uids(_dicom("CT_small.dcm"), "truncated", "truncated")
    ct.save_as(bad / "truncated.dcm", enforce_file_format=True)
    full = (bad / "truncated.dcm").read_bytes()
    (bad / "truncated.dcm").write_bytes(full[: len(full) - len(ct_bytes) // 3])  # cut inside the pixel data
    expected["bad/truncated.dcm"] = "truncated"

    for name in ("empty.dcm", "empty.png", "empty.nii.gz"):
        (bad / name).write_bytes(b"")
        expected[f"bad/{name}"] = "file is empty (0 bytes)"

    text = b"This is a text file, not an image.\nIt only has an image extension.\n"
    for name, fragment in (
        ("text.png", "not a readable PNG image"),
        ("text.tif", "not a readable TIFF"),
        ("text.dcm", "not a DICOM file"),
        ("text.nii", "not a readable NIfTI file"),
    ):
        (bad / name).write_bytes(text)
        expected[f"bad/{name}"] = fragment

    nan = _pattern((32, 32), 8).astype(np.float32)
    nan[5:7, 9] = np.nan
    tifffile.imwrite(bad / "nan.tif", nan, photometric="minisblack")
    expected["bad/nan.tif"] = "image contains 2 NaN/inf values"
    inf = _pattern((16, 16, 4), 9).astype(np.float32)
    inf[3, 4, 1] = np.inf
    _nifti(bad / "inf.nii.gz", inf)
    expected["bad/inf.nii.gz"] = "image contains 1 NaN/inf values"

    Image.fromarray(np.full((32, 32), 77, np.uint8)).save(bad / "constant.png")
    expected["bad/constant.png"] = "image is constant (every value is 77)"
    Image.fromarray(np.full((1, 1), 200, np.uint8)).save(bad / "one_pixel.png")
    expected["bad/one_pixel.png"] = "image is too small to enhance"

    _nifti(bad / "volume_4d.nii.gz", (_pattern((12, 12, 4, 3), 10) * 1000).astype(np.int16))
    expected["bad/volume_4d.nii.gz"] = "4-D data of shape (12, 12, 4, 3) is not supported"
    _nifti(bad / "volume_5d.nii.gz", (_pattern((8, 8, 3, 1, 2), 11) * 1000).astype(np.int16))
    expected["bad/volume_5d.nii.gz"] = "5-D data of shape (8, 8, 3, 1, 2) is not supported"
    tifffile.imwrite(bad / "stack_4d.tif", (_pattern((2, 3, 16, 16), 12) * 255).astype(np.uint8))
    expected["bad/stack_4d.tif"] = "unsupported array shape (2, 3, 16, 16)"

    cmyk = (np.stack([_pattern((24, 24), s) for s in (13, 14, 15)], -1) * 255).astype(np.uint8)
    Image.fromarray(cmyk).convert("CMYK").save(bad / "cmyk.jpg")
    expected["bad/cmyk.jpg"] = "CMYK images are not supported"
    palette = Image.fromarray((_pattern((24, 24), 17) * 15).astype(np.uint8), mode="L").convert("P")
    palette.save(bad / "palette.png")
    expected["bad/palette.png"] = "palette (indexed-colour) images are not supported"

    no_pixels = _with_uids(_dicom("CT_small.dcm"), "no_pixels", "no_pixels")
    del no_pixels.PixelData
    no_pixels.save_as(bad / "no_pixels.dcm", enforce_file_format=True)
    expected["bad/no_pixels.dcm"] = "DICOM file has no pixel data"

    Image.fromarray((_pattern((200, 200), 18) * 255).astype(np.uint8)).save(bad / "too_big.png")
    expected["bad/too_big.png"] = f"image has 40000 pixels, over the limit of {MAX_PIXELS}"
    return expected


def main(argv: list[str] | None = None) -> Path:
    """Write the corpus (replacing any previous one) and return its folder."""
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0]) if argv else ROOT
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    manifest = {"max_pixels": MAX_PIXELS, "good": make_good(root), "bad": make_bad(root)}
    (root / "EXPECTED.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return root


if __name__ == "__main__":
    print(main())
