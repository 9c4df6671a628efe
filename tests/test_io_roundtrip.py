"""Enhancement I/O: every format round-trips exactly through an identity enhancer, with headers kept/derived."""

from __future__ import annotations

import hashlib

import nibabel as nib
import numpy as np
import pydicom
import pytest

from dpe_monai.inference import enhance_files
from dpe_monai.io import discover, read_image
from tests.io_fixtures import write_formats


def _digest(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def roundtrip(tmp_path_factory):
    root = tmp_path_factory.mktemp("io")
    files = write_formats(root / "in")
    before = _digest(root / "in")
    summary = enhance_files([root / "in"], root / "out", lambda x: x)
    return root, files, summary, before


def test_identity_roundtrip_is_exact(roundtrip):
    root, _, summary, before = roundtrip
    assert summary.exit_code == 0 and not summary.failed and len(summary.done) == 7
    assert _digest(root / "in") == before  # inputs untouched
    jobs_in, _ = discover([root / "in"])
    jobs_out, _ = discover([root / "out"])
    assert len(jobs_in) == len(jobs_out)
    for a, b in zip(jobs_in, jobs_out):
        ia, ib = read_image(a.paths, a.kind), read_image(b.paths, b.kind)
        assert ia.kind == ib.kind and ia.dtype == ib.dtype and ia.array.shape == ib.array.shape
        assert np.allclose(ia.array, ib.array, atol=1e-6 * max(1.0, float(np.abs(ia.array).max()))), a.paths[0]
        assert b.paths[0].name.startswith(a.paths[0].name.split(".")[0])


def test_relative_paths_mirrored_and_no_temporaries(roundtrip):
    root, _, _, _ = roundtrip
    assert (root / "out" / "sub" / "grey16_dpe.tif").is_file()
    assert not [p for p in (root / "out").rglob(".*") if p.is_file()]


def test_nifti_header_affine_kept(roundtrip):
    root, files, _, _ = roundtrip
    a, b = nib.load(files["nifti_int16"]), nib.load(root / "out" / "vol_int16_dpe.nii.gz")
    assert a.header.binaryblock == b.header.binaryblock
    assert np.array_equal(a.affine, b.affine) and a.shape == b.shape and b.get_data_dtype() == np.int16
    assert (a.dataobj.slope, a.dataobj.inter) == (b.dataobj.slope, b.dataobj.inter) == (0.5, -20.0)


def test_dicom_derived_series(roundtrip):
    root, files, _, _ = roundtrip
    src = [pydicom.dcmread(p) for p in sorted(files["dicom_series"].glob("*.dcm"))]
    out = [pydicom.dcmread(p) for p in sorted((root / "out" / "series").glob("*.dcm"))]
    assert len(out) == 3
    assert len({d.SeriesInstanceUID for d in out}) == 1
    assert out[0].SeriesInstanceUID != src[0].SeriesInstanceUID
    assert {d.SOPInstanceUID for d in out}.isdisjoint({d.SOPInstanceUID for d in src})
    for s, o in zip(src, out):
        assert list(o.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert o.SeriesDescription.endswith("DPE enhanced")
        for tag in ("Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation", "RescaleSlope"):
            assert o.get(tag) == s.get(tag)
        assert o.file_meta.MediaStorageSOPInstanceUID == o.SOPInstanceUID
        assert np.array_equal(o.pixel_array, s.pixel_array)
