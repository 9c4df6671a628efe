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


@pytest.mark.parametrize(
    "name, colour, extrasamples",
    [("la.png", 1, None), ("rgba.png", 3, None), ("la16.tif", 1, "unassalpha"), ("rgba.tif", 3, "assocalpha")],
)
def test_an_alpha_channel_is_carried_through(tmp_path, name, colour, extrasamples):
    """Grey/RGB + alpha: the colour is enhanced, the alpha comes back bit for bit in the same mode and TIFF kind."""
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(0)
    dtype = np.uint16 if "16" in name else np.uint8
    top = np.iinfo(dtype).max
    pixels = rng.integers(0, top // 3, (20, 24, colour + 1)).astype(dtype)
    pixels[..., -1] = rng.choice([0, top // 2, top], (20, 24)).astype(dtype)
    (tmp_path / "in").mkdir()
    if name.endswith(".png"):
        Image.fromarray(pixels).save(tmp_path / "in" / name)
    else:
        kind = "rgb" if colour == 3 else "minisblack"
        tifffile.imwrite(tmp_path / "in" / name, pixels, photometric=kind, extrasamples=[extrasamples])
    summary = enhance_files([tmp_path / "in"], tmp_path / "out", lambda x: x * 2.0)
    assert summary.exit_code == 0 and len(summary.done) == 1
    out = tmp_path / "out" / name.replace(".", "_dpe.")
    if name.endswith(".png"):
        with Image.open(tmp_path / "in" / name) as a, Image.open(out) as b:
            assert a.mode == b.mode
        written = np.asarray(Image.open(out))
    else:
        with tifffile.TiffFile(tmp_path / "in" / name) as a, tifffile.TiffFile(out) as b:
            assert (
                a.pages[0].extrasamples == b.pages[0].extrasamples and b.pages[0].photometric == a.pages[0].photometric
            )
            written = b.asarray()
    assert written.dtype == dtype and written.shape == pixels.shape
    np.testing.assert_array_equal(written[..., -1], pixels[..., -1])
    assert not np.array_equal(written[..., :-1], pixels[..., :-1])  # the colour was enhanced
