"""User folders: every good file loads through the image-file layer, every bad one is named; DICOM value handling."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from dpe_monai.data.build import build_collection
from dpe_monai.data.folders import display_array, scan_folder
from dpe_monai.io import BadFileWarning, BadImageError, read_image
from dpe_monai.io.readers import DPEImageReader


def load(path) -> np.ndarray:
    """A file as the collection builder sees it (display layout, stored sample type)."""
    return display_array(read_image(path, strict=False))


def write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    slope: float | None = None,
    intercept: float | None = None,
    series_uid: str | None = None,
    instance: int = 1,
    z: float = 0.0,
    patient: str = "P1",
) -> Path:
    """A minimal 12-bit-in-16 CT DICOM file with the given stored values."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality = patient, "CT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), series_uid or generate_uid()
    ds.InstanceNumber = instance
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, z], [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing, ds.SliceThickness = [0.5, 0.5], 1.0
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = stored.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _stored(seed: int, shape: tuple[int, int] = (40, 48)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, shape).astype(np.uint16)


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """Every supported kind of good file, and one of each kind of bad file, in nested folders."""
    root = tmp_path / "mixed"
    (root / "nifti").mkdir(parents=True)
    (root / "dicom" / "series").mkdir(parents=True)
    (root / "photos" / "deeper").mkdir(parents=True)
    vol = np.random.default_rng(0).integers(0, 3000, (40, 36, 34)).astype(np.int16)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), root / "nifti" / "volume.nii.gz")
    nib.save(nib.Nifti1Image(vol[..., 0:1].astype(np.float32), np.eye(4)), root / "nifti" / "slice.nii")
    write_dicom(root / "dicom" / "single.dcm", _stored(1), slope=1.0, intercept=-1024.0, patient="P1")
    uid = generate_uid()
    write_dicom(root / "dicom" / "series" / "b.dcm", _stored(2), series_uid=uid, instance=2, z=1.0, patient="P2")
    write_dicom(root / "dicom" / "series" / "a.dcm", _stored(3), series_uid=uid, instance=1, z=0.0, patient="P2")
    rgb8 = np.random.default_rng(4).integers(0, 256, (30, 34, 3)).astype(np.uint8)
    Image.fromarray(rgb8).save(root / "photos" / "rgb8.png")
    Image.fromarray(rgb8).save(root / "photos" / "rgb8.jpg", quality=95)
    Image.fromarray((_stored(5).astype(np.uint32) * 16).astype(np.uint16)).save(root / "photos" / "gray16.png")
    tifffile.imwrite(root / "photos" / "deeper" / "gray16.tif", _stored(6) * 16)
    tifffile.imwrite(root / "photos" / "deeper" / "rgb16.tif", rgb8.astype(np.uint16) * 257, photometric="rgb")
    # bad files
    good = write_dicom(root / "dicom" / "corrupt.dcm", _stored(7), patient="P3").read_bytes()
    (root / "dicom" / "corrupt.dcm").write_bytes(good[: len(good) // 2])  # truncated pixel data
    (root / "nifti" / "empty.nii.gz").write_bytes(b"")
    (root / "photos" / "notes.png").write_text("this is not an image")
    fmri = np.zeros((8, 8, 8, 3), np.int16)
    nib.save(nib.Nifti1Image(fmri, np.eye(4)), root / "nifti" / "timeseries.nii.gz")
    (root / "photos" / "README.txt").write_text("ignored: not an image file type")
    return root


def test_mixed_folder_loads_good_files_and_names_bad_ones(mixed_folder: Path) -> None:
    with pytest.warns(BadFileWarning) as record:
        items, bad = scan_folder(mixed_folder)
    root = str(mixed_folder)
    rel = {(it["image"] if isinstance(it["image"], str) else it["image"][0]).replace(root + "/", "") for it in items}
    assert rel == {
        "dicom/series/a.dcm",
        "dicom/single.dcm",
        "nifti/slice.nii",
        "nifti/volume.nii.gz",
        "photos/deeper/gray16.tif",
        "photos/deeper/rgb16.tif",
        "photos/gray16.png",
        "photos/rgb8.jpg",
        "photos/rgb8.png",
    }
    reasons = {Path(p).name: reason for p, reason in bad}
    assert set(reasons) == {"corrupt.dcm", "empty.nii.gz", "notes.png", "timeseries.nii.gz"}
    assert "0 bytes" in reasons["empty.nii.gz"]
    assert "4-D data" in reasons["timeseries.nii.gz"]
    messages = [str(w.message) for w in record]
    for path, _ in bad:  # every warning names the file
        assert any(path in m for m in messages)
    by_name = {Path(it["image"] if isinstance(it["image"], str) else it["image"][0]).name: it for it in items}
    series = by_name["a.dcm"]
    assert [Path(p).name for p in series["image"]] == ["a.dcm", "b.dcm"] and series["ndim"] == 3
    assert by_name["gray16.png"]["bit_depth"] == 16 and by_name["gray16.png"]["channels"] == 1
    assert by_name["rgb16.tif"]["bit_depth"] == 16 and by_name["rgb16.tif"]["channels"] == 3
    assert by_name["rgb8.png"]["bit_depth"] == 8 and by_name["rgb8.png"]["channels"] == 3
    assert by_name["volume.nii.gz"]["shape"] == [40, 36, 34] and by_name["slice.nii"]["ndim"] == 2


def test_loaded_values_are_exact(mixed_folder: Path) -> None:
    gray16 = np.asarray(Image.open(mixed_folder / "photos" / "gray16.png"))
    np.testing.assert_array_equal(load(mixed_folder / "photos" / "gray16.png"), gray16)
    rgb16 = tifffile.imread(mixed_folder / "photos" / "deeper" / "rgb16.tif")
    np.testing.assert_array_equal(load(mixed_folder / "photos" / "deeper" / "rgb16.tif"), rgb16)
    series = sorted(str(p) for p in (mixed_folder / "dicom" / "series").glob("*.dcm"))
    stack = display_array(DPEImageReader().read(series[::-1]))  # the list's order does not matter: sorted by position
    np.testing.assert_array_equal(stack[0], _stored(3))
    np.testing.assert_array_equal(stack[1], _stored(2))
    with pytest.raises(BadImageError, match="0 bytes"):
        read_image(mixed_folder / "nifti" / "empty.nii.gz")


def test_rescale_slope_intercept_and_monochrome1(tmp_path: Path) -> None:
    stored = _stored(8)
    plain = write_dicom(tmp_path / "m2.dcm", stored, slope=2.0, intercept=-1000.0)
    np.testing.assert_allclose(load(plain), 2.0 * stored - 1000.0)
    inverted = write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1", slope=2.0, intercept=-1000.0)
    # modality range of 12 stored bits: [-1000, 2 * 4095 - 1000]; MONOCHROME1 -> low + high - value
    expected = (-1000.0 + 7190.0) - (2.0 * stored - 1000.0)
    np.testing.assert_allclose(load(inverted), expected)
    raw_m1 = write_dicom(tmp_path / "m1raw.dcm", stored, photometric="MONOCHROME1")
    np.testing.assert_array_equal(load(raw_m1), 4095 - stored.astype(np.int64))


def test_user_folder_goes_through_the_same_build(mixed_folder: Path, tmp_path: Path) -> None:
    with pytest.warns(BadFileWarning):
        result = build_collection(tmp_path / "out", sources=[], user_folders=[mixed_folder], verbose=False)
    assert result["num_skipped"] == 4
    items = [it for split in ("training", "validation", "test") for it in _load(result)[split]]
    assert len({it["file"] for it in items}) == 9  # every good file (the series counts once) gave items
    assert sum(it["file"] == "nifti/volume.nii.gz" for it in items) == 40 + 36 + 34  # planes along 3 axes
    assert {it["modality_group"] for it in items} == {"radiology"}
    # the two files of patient P2's series are one subject, so they sit in one split
    series_items = [it for it in items if it["subject"].endswith(":P2")]
    assert len(series_items) >= 1
    assert all(it["bit_depth"] in (8, 16) for it in items)


def _load(result: dict) -> dict:
    import json

    return json.loads(Path(result["datalist"]).read_text())


@pytest.mark.parametrize("name", ["emri_small.dcm", "OBXXXX1A.dcm", "US1_UNCR.dcm", "RG3_UNCR.dcm", "693_UNCR.dcm"])
def test_real_dicom_through_monai_matches_pydicom(name: str) -> None:
    """Multi-frame, palette, RGB, MONOCHROME1 and rescaled CT files from pydicom-data load with pydicom's values."""
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_modality_lut

    path = get_testdata_file(name, download=False)
    img = read_image(path, strict=False)
    arr = display_array(img)
    ds = pydicom.dcmread(path)
    if name == "RG3_UNCR.dcm":  # MONOCHROME1, 10 bits stored: displayed = 1023 - stored
        np.testing.assert_array_equal(arr, 1023 - ds.pixel_array.astype(np.int64))
    elif name == "OBXXXX1A.dcm":  # palette colour -> RGB
        assert arr.shape == (*ds.pixel_array.shape, 3) and img.dtype == np.uint8
    else:
        np.testing.assert_allclose(arr, apply_modality_lut(ds.pixel_array, ds))


def test_a_user_folders_collection_follows_the_folder(tmp_path: Path) -> None:
    """The collection built from a user's folder was reused forever: images added later were never trained on and
    a deleted one still was, with no message (a user audit). It is rebuilt when the folder's images change."""
    import json
    import os
    import warnings

    from dpe_monai.data.ensure import ensure_collection

    user = tmp_path / "mine"
    user.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(user / f"{name}.png")

    def sources(datalist: str) -> set[str]:
        data = json.loads(Path(datalist).read_text())
        return {Path(i["file"]).stem for split in data.values() if isinstance(split, list) for i in split}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = ensure_collection(user)
        assert sources(first) == {"a", "b", "c"}
        stamp = os.stat(first).st_mtime_ns
        assert ensure_collection(user) == first and os.stat(first).st_mtime_ns == stamp  # unchanged: reused
        (user / "c.png").unlink()
        Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(user / "d.png")
        assert sources(ensure_collection(user)) == {"a", "b", "d"}


def test_a_missing_dataset_dir_is_warned_about_unless_it_is_the_default(tmp_path, monkeypatch, caplog) -> None:
    """A mistyped ``dataset_dir`` silently built and trained on the packaged collection (a user audit); the default
    cache folder, missing on a fresh machine, is built without a warning (``make demo``'s first run)."""
    import logging

    from dpe_monai.data import ensure

    built = []
    monkeypatch.setattr("dpe_monai.data.build.build_collection", lambda target, seed=0: built.append(target))
    monkeypatch.setenv("DPE_MONAI_DATA", str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING):
        ensure.ensure_collection(tmp_path / "cache")
    assert "does not exist" not in caplog.text
    with caplog.at_level(logging.WARNING):
        ensure.ensure_collection(tmp_path / "imgz_typo")
    assert f"dataset_dir {tmp_path / 'imgz_typo'} does not exist" in caplog.text
    assert built == [tmp_path / "cache", tmp_path / "imgz_typo"]
