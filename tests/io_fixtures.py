"""Small real-format files for I/O tests, written by the tests themselves (pydicom ships the DICOM samples)."""

from __future__ import annotations

import copy
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import tifffile
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid


def smooth(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A smooth, non-constant pattern in [0, 1]."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 1, s) for s in shape], indexing="ij")
    out = 0.5 + 0.3 * np.sin(sum((i + 2) * g for i, g in enumerate(grids)) * 3) + rng.normal(0, 0.02, shape)
    return np.clip(out, 0, 1)


def write_formats(root: Path) -> dict[str, Path]:
    """PNG 8-bit RGB, PNG 16-bit grey, TIFF 16-bit, NIfTI int16 (scaled) and float32, DICOM file and series."""
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    rgb = (np.stack([smooth((37, 45), s) for s in range(3)], -1) * 255).astype(np.uint8)
    files["png_rgb8"] = root / "rgb8.png"
    Image.fromarray(rgb).save(files["png_rgb8"])
    files["png_grey16"] = root / "grey16.png"
    Image.fromarray((smooth((40, 33)) * 60000).astype(np.uint16)).save(files["png_grey16"])
    files["tiff16"] = root / "sub" / "grey16.tif"
    files["tiff16"].parent.mkdir()
    tifffile.imwrite(files["tiff16"], (smooth((30, 41), 2) * 4095).astype(np.uint16))
    affine = np.diag([0.9, 1.1, 2.0, 1.0])
    affine[:3, 3] = [-10, 5, 3]
    vol = nib.Nifti1Image((smooth((20, 18, 6)) * 3000 - 1000).astype(np.int16), affine)
    vol.header.set_slope_inter(0.5, -20.0)
    files["nifti_int16"] = root / "vol_int16.nii.gz"
    nib.save(vol, files["nifti_int16"])
    files["nifti_float"] = root / "vol_float.nii"
    nib.save(nib.Nifti1Image(smooth((16, 17, 5)).astype(np.float32), affine), files["nifti_float"])
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    files["dicom_ct"] = root / "ct.dcm"
    ct.save_as(files["dicom_ct"])
    series = root / "series"
    series.mkdir()
    uid = generate_uid()
    for i in range(3):
        ds = copy.deepcopy(ct)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(5 * (2 - i))]  # reverse order on purpose
        arr = ds.pixel_array.astype(np.int16) + i * 40
        ds.PixelData = arr.tobytes()
        ds.save_as(series / f"slice{i}.dcm")
    files["dicom_series"] = series
    return files
