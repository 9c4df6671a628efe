"""Nothing written wrong, at the file level: refusals with a one-line reason, umask modes, 3-D TIFF stacks written
back page for page, compressed DICOMs decoded and written uncompressed, one palette/alpha policy."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from dpe_monai.data.folders import scan_folder
from dpe_monai.io import BadImageError, atomic_write, read_image, write_image
from dpe_monai.io.formats import UNWRITABLE_LAYOUTS
from dpe_monai.io.readers import DPEImageReader
from tests.test_io_layer import stardist_image

COMPRESSED = [
    "JPGLosslessP14SV1_1s_1f_8b.dcm",  # JPEG lossless, 8-bit ultrasound
    "JPEG-LL.dcm",  # JPEG lossless, 16-bit
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS
    "JPEG2000.dcm",  # JPEG 2000
]


def _testdata(name: str) -> Path:
    try:
        path = get_testdata_file(name, download=False)
    except Exception:  # some releases raise for unknown names
        path = None
    if path is None:
        pytest.skip(f"{name} is not in this pydicom-data release")
    return Path(path)


@pytest.fixture
def umask():
    """Set a umask for one test and restore the previous one."""
    old = os.umask(0o022)
    os.umask(old)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(old)


def test_segmentation_is_refused_by_name_everywhere(tmp_path: Path) -> None:
    liver = tmp_path / "liver.dcm"
    shutil.copy(_testdata("liver.dcm"), liver)
    with pytest.raises(BadImageError) as err:
        read_image(liver)
    message = str(err.value)
    assert message.startswith(f"{liver}: ") and "\n" not in message
    assert "Segmentation Storage" in message and "not an image" in message
    with pytest.raises(BadImageError, match="Segmentation Storage"):
        read_image(liver, strict=False)
    with pytest.raises(BadImageError, match="Segmentation Storage"):
        DPEImageReader().read(liver)
    with pytest.warns(UserWarning):
        items, bad = scan_folder(tmp_path)
    assert not items and bad[0][0] == str(liver) and "Segmentation Storage" in bad[0][1]


def test_one_bit_pixel_data_is_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_testdata("liver.dcm"))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage  # 1-bit, image class
    path = tmp_path / "bits1.dcm"
    ds.save_as(path)
    with pytest.raises(BadImageError, match=r"1-bit pixel data \(BitsAllocated 1\)"):
        read_image(path)


def test_batch_refuses_liver_by_name_and_continues(tmp_path: Path) -> None:
    from dpe_monai.inference import enhance_files

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(_testdata("liver.dcm"), src / "liver.dcm")
    shutil.copy(_testdata("CT_small.dcm"), src / "ct.dcm")
    summary = enhance_files([src], tmp_path / "out", lambda x: x)
    assert summary.exit_code == 2
    assert [Path(name).name for name, _ in summary.done] == ["ct.dcm"]
    (name, message), *rest = summary.failed
    assert not rest and Path(name).name == "liver.dcm" and "Segmentation Storage" in message
    assert not (tmp_path / "out" / "liver_dpe.dcm").exists()


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_outputs_follow_the_umask(tmp_path: Path, umask, mask: int, mode: int) -> None:
    umask(mask)
    with atomic_write(tmp_path / "plain.bin") as tmp:
        tmp.write_bytes(b"x")
    assert (tmp_path / "plain.bin").stat().st_mode & 0o777 == mode
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(tmp_path / "in.png")
    image = read_image(tmp_path / "in.png")
    write_image(image, image.array, [tmp_path / "out" / "in_dpe.png"])
    assert (tmp_path / "out" / "in_dpe.png").stat().st_mode & 0o777 == mode


def test_3d_tiff_stack_is_written_back_page_for_page(tmp_path: Path) -> None:
    src = stardist_image("img3d.tif")
    if src is None:
        src = tmp_path / "stack.tif"
        tifffile.imwrite(src, np.random.default_rng(0).integers(0, 4096, (9, 20, 24), dtype=np.uint16))
    image = read_image(src)
    assert image.spatial_dims == 3
    out = tmp_path / "stack_dpe.tif"
    write_image(image, image.array + 1, [out])
    with tifffile.TiffFile(src) as a, tifffile.TiffFile(out) as b:
        assert len(b.pages) == len(a.pages) > 1 and b.pages[0].dtype == a.pages[0].dtype
        np.testing.assert_array_equal(b.asarray(), a.asarray() + 1)


def test_colour_tiff_stack_is_read_but_not_written(tmp_path: Path) -> None:
    path = tmp_path / "rgb_stack.tif"
    tifffile.imwrite(path, np.zeros((4, 10, 12, 3), np.uint8) + 7, photometric="rgb")
    with pytest.raises(BadImageError, match="multi-page colour TIFF stacks"):
        read_image(path)
    assert read_image(path, strict=False).array.shape == (3, 10, 12, 4)


@pytest.mark.parametrize("name", COMPRESSED)
def test_compressed_dicom_decodes_and_is_written_uncompressed(tmp_path: Path, name: str) -> None:
    path = _testdata(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        want = apply_modality_lut(ds.pixel_array, ds)
    assert ds.file_meta.TransferSyntaxUID.is_compressed
    image = read_image(path)
    np.testing.assert_array_equal(image.array[0], want)
    out = tmp_path / f"{path.stem}_dpe.dcm"
    write_image(image, image.array, [out])
    written = pydicom.dcmread(out)
    assert written.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(written.pixel_array, ds.pixel_array)


def test_big_endian_dicom_is_written_little_endian_with_its_values(tmp_path: Path) -> None:
    """A big-endian source (a retired syntax) comes back Explicit VR Little Endian holding the same pixel values; its
    bytes once went out little-endian under the big-endian label, which read back as noise."""
    path = _testdata("MR_small_bigendian.dcm")
    source = pydicom.dcmread(path)
    assert not source.file_meta.TransferSyntaxUID.is_little_endian
    out = tmp_path / "mr_dpe.dcm"
    image = read_image(path)
    write_image(image, image.array, [out])
    written = pydicom.dcmread(out)
    assert written.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(written.pixel_array, source.pixel_array)
    assert written.PatientName == source.PatientName and written.Rows == source.Rows


def test_an_empty_series_number_is_kept_empty(tmp_path: Path) -> None:
    """SeriesNumber is Type 2: present and empty is legal, and must not stop the file being enhanced."""
    ds = pydicom.dcmread(_testdata("CT_small.dcm"))
    ds.SeriesNumber = None
    src = tmp_path / "ct.dcm"
    ds.save_as(src)
    out = tmp_path / "ct_dpe.dcm"
    image = read_image(src)
    write_image(image, image.array, [out])
    written = pydicom.dcmread(out)
    assert "SeriesNumber" in written and written.SeriesNumber is None
    np.testing.assert_array_equal(written.pixel_array, ds.pixel_array)


def test_one_palette_and_alpha_policy(tmp_path: Path) -> None:
    """Palette/CMYK/PALETTE COLOR: decoded for reading, refused for enhancement with the policy's reason."""
    grey_palette = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).convert("P")
    grey_palette.save(tmp_path / "palette.png")
    Image.fromarray(np.full((6, 8, 3), 9, np.uint8)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    for name, layout in (("palette.png", "P"), ("cmyk.jpg", "CMYK")):
        with pytest.raises(BadImageError) as err:
            read_image(tmp_path / name)
        assert str(err.value) == f"{tmp_path / name}: {UNWRITABLE_LAYOUTS[layout]}"
        lenient = read_image(tmp_path / name, strict=False)
        assert lenient.array.shape[0] in (1, 3)
        with pytest.raises(BadImageError, match="not supported for enhancement"):
            write_image(lenient, lenient.array, [tmp_path / f"out_{name}"])
    assert read_image(tmp_path / "palette.png", strict=False).array.shape[0] == 1  # a grey palette decodes to grey
    us = _testdata("OBXXXX1A.dcm")  # PALETTE COLOR
    with pytest.raises(BadImageError, match="PALETTE COLOR"):
        read_image(us)
    decoded = read_image(us, strict=False)
    assert decoded.array.shape[0] == 3 and decoded.dtype == np.uint8


def test_pixel_size_description_and_sample_layout_survive(tmp_path: Path) -> None:
    """A micrograph's scale is part of the file: TIFF resolution and unit, its description (ImageJ spacing) and its
    planar RGB layout, and a PNG's dpi, come back as the source had them."""
    rng = np.random.default_rng(0)
    grey = (rng.random((32, 40)) * 60000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "grey.tif", grey, resolution=(300, 300), resolutionunit=2, description="sample 7")
    rgb = (rng.random((3, 32, 40)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "planar.tif", rgb, photometric="rgb", planarconfig="separate", resolution=(2.5, 2.5))
    stack = (rng.random((4, 32, 40)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, imagej=True, resolution=(4.0, 4.0), metadata={"spacing": 0.5})
    tifffile.imwrite(tmp_path / "time.tif", stack, imagej=True, metadata={"axes": "TYX", "finterval": 0.5})
    Image.fromarray((rng.random((32, 40)) * 255).astype(np.uint8)).save(tmp_path / "a.png", dpi=(150, 150))
    for name in ("grey.tif", "planar.tif", "stack.tif", "time.tif", "a.png"):
        image = read_image(tmp_path / name)
        out = tmp_path / f"out_{name}"
        write_image(image, image.array, [out])
        np.testing.assert_array_equal(read_image(out).array, image.array)
        if name.endswith(".png"):
            with Image.open(out) as png, Image.open(tmp_path / name) as src:
                assert png.info["dpi"] == src.info["dpi"] and np.allclose(png.info["dpi"], 150, atol=0.1)
            continue
        with tifffile.TiffFile(tmp_path / name) as a, tifffile.TiffFile(out) as b:
            pa, pb = a.pages[0], b.pages[0]
            for tag in ("XResolution", "YResolution", "ResolutionUnit", "ImageDescription"):
                assert pa.tags[tag].value == pb.tags[tag].value, (name, tag)
            assert int(pa.planarconfig) == int(pb.planarconfig) and len(a.pages) == len(b.pages), name
            assert b.series[0].axes == a.series[0].axes, name  # a Z-stack is not reopened as channels
            if name == "stack.tif":
                assert b.is_imagej and b.imagej_metadata["spacing"] == 0.5


def test_colour_dicom_gets_no_grey_display_window(tmp_path: Path) -> None:
    """WindowCenter/WindowWidth (VOI LUT) apply to MONOCHROME images only; an RGB result carries none, a grey one
    carries the window the enhancement used."""
    from dpe_monai.inference.files import enhance_native

    for name, grey in (("SC_rgb.dcm", False), ("CT_small.dcm", True)):
        image = read_image(_testdata(name))
        out = tmp_path / f"{name}_dpe.dcm"
        write_image(image, enhance_native(image, lambda x: x), [out])
        assert ("WindowCenter" in pydicom.dcmread(out)) == grey, name


def test_the_source_display_window_stays_first(tmp_path: Path) -> None:
    """A head CT stored at its brain window (WC 40 / WW 100) opens in that window after enhancement; the window the
    enhancement used follows as a second preset (it once replaced the clinical one, WC 105.5 / WW 2233)."""
    from dpe_monai.inference.files import enhance_native

    image = read_image(_testdata("693_UNCR.dcm"))
    out = tmp_path / "ct_dpe.dcm"
    write_image(image, enhance_native(image, lambda x: x), [out])
    o = pydicom.dcmread(out)
    assert [float(v) for v in o.WindowCenter][0] == 40 and [float(v) for v in o.WindowWidth][0] == 100
    assert list(o.WindowCenterWidthExplanation) == ["source window", "DPE enhancement window"]
    lo, hi = image.info["window"]
    assert abs(float(o.WindowWidth[1]) - (hi - lo + 1)) < 1  # the preset that shows the network output as made


def test_a_modality_lut_sequence_is_inverted_on_writing(tmp_path: Path) -> None:
    """``mlut_18.dcm`` maps its stored values (12 bits, signed) through a Modality LUT Sequence, not slope/intercept.
    The reader applies the table; the writer stores the result back through it, so an unchanged image comes back with
    its own stored values (before, the table's outputs, 0..65535, were clipped into the 12-bit range: 84 % of the
    pixels at 2047). A table that goes up and down cannot be inverted and is refused by name."""
    from dpe_monai.inference import enhance_files

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(_testdata("mlut_18.dcm"), src / "mlut.dcm")
    ds = pydicom.dcmread(src / "mlut.dcm")
    ds.SOPInstanceUID += ".2"
    lut = (
        np.frombuffer(ds.ModalityLUTSequence[0].LUTData, np.uint16).copy()
        if isinstance(ds.ModalityLUTSequence[0].LUTData, bytes)
        else np.asarray(ds.ModalityLUTSequence[0].LUTData, np.uint16)
    )
    lut[2048:] = lut[2048:][::-1]  # up, then down
    ds.ModalityLUTSequence[0].LUTData = lut.tolist()
    ds.save_as(src / "updown.dcm", enforce_file_format=True)
    summary = enhance_files([src], tmp_path / "out", lambda x: x)
    (name, message), *rest = summary.failed
    assert not rest and Path(name).name == "updown.dcm" and "Modality LUT is not monotonic" in message
    stored_in = pydicom.dcmread(src / "mlut.dcm").pixel_array
    out = pydicom.dcmread(tmp_path / "out" / "mlut_dpe.dcm")
    np.testing.assert_array_equal(out.pixel_array, stored_in)
    assert "ModalityLUTSequence" in out


def test_photo_and_png_metadata_are_kept(tmp_path: Path) -> None:
    """A JPEG keeps its EXIF (a phone photograph's orientation: without it every EXIF-aware viewer shows the result
    turned 90 degrees from its input) and ICC profile; a PNG keeps its text chunks, gamma and transparent value, and
    the same pixels stay see-through even where the enhancement moves others onto that value."""
    from PIL import ImageCms

    from dpe_monai.inference import enhance_files

    src = tmp_path / "in"
    src.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees to display
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(src / "photo.jpg", quality=92, exif=exif.tobytes(), icc_profile=icc)
    from PIL.PngImagePlugin import PngInfo

    chunks = PngInfo()
    chunks.add_text("Comment", "pixel size 0.5 um")
    chunks.add(b"gAMA", (45455).to_bytes(4, "big"))
    grey = np.random.default_rng(1).integers(1, 256, (48, 64)).astype(np.uint8)
    grey[:, :16] = 0  # the transparent border
    Image.fromarray(grey).save(src / "grey.png", pnginfo=chunks, transparency=0)
    summary = enhance_files([src], tmp_path / "out", lambda x: (x - 0.2).clamp(0, 1))  # moves dark pixels to 0
    assert summary.exit_code == 0, summary.failed
    photo = Image.open(tmp_path / "out" / "photo_dpe.jpg")
    assert dict(photo.getexif()).get(0x0112) == 6 and photo.info.get("icc_profile") == icc
    png = Image.open(tmp_path / "out" / "grey_dpe.png")
    assert png.info.get("Comment") == "pixel size 0.5 um" and abs(png.info.get("gamma", 0) - 0.45455) < 1e-6
    assert png.info.get("transparency") == 0
    out = np.asarray(png)
    np.testing.assert_array_equal(out == 0, grey == 0)  # the same pixels are transparent, no more, no fewer


@pytest.mark.parametrize("compression", ["lzw", "zlib", "packbits"])
def test_a_compressed_tiff_is_read_and_written_back_compressed(tmp_path: Path, compression: str) -> None:
    """LZW (the commonest TIFF compression: it was refused, tifffile needs imagecodecs), deflate and PackBits TIFFs
    are enhanced, and the result keeps the source's lossless compression (it was written uncompressed)."""
    from dpe_monai.inference import enhance_files

    src = tmp_path / "in"
    src.mkdir()
    grey = (np.random.default_rng(2).random((40, 56)) * 4000).astype(np.uint16)
    tifffile.imwrite(src / "scan.tif", grey, compression=compression)
    summary = enhance_files([src], tmp_path / "out", lambda x: x)
    assert summary.exit_code == 0, summary.failed
    with tifffile.TiffFile(tmp_path / "out" / "scan_dpe.tif") as tif, tifffile.TiffFile(src / "scan.tif") as ref:
        assert tif.pages[0].compression == ref.pages[0].compression
        np.testing.assert_array_equal(tif.asarray(), grey)


def test_padding_pixels_stay_padding_and_16_bit_data_is_ow(tmp_path: Path) -> None:
    """``693_UNCR.dcm`` marks the area outside its field of view with PixelPaddingValue -2000: those pixels are written
    back as padding whatever the enhancement did there (they became -1999 / -1998, about -3000 HU, neither padding nor
    data). 16-bit pixel data decoded from a compressed source is written native with VR OW (it kept the
    encapsulated data's OB)."""
    from dpe_monai.inference import enhance_files

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(_testdata("693_UNCR.dcm"), src / "ct.dcm")
    shutil.copy(_testdata("MR_small_RLE.dcm"), src / "rle.dcm")
    summary = enhance_files([src], tmp_path / "out", lambda x: (x + 0.01).clamp(0, 1))
    assert summary.exit_code == 0, summary.failed
    a, b = pydicom.dcmread(src / "ct.dcm"), pydicom.dcmread(tmp_path / "out" / "ct_dpe.dcm")
    pad = a.pixel_array == a.PixelPaddingValue
    assert pad.sum() > 0 and np.array_equal(b.pixel_array == a.PixelPaddingValue, pad)
    assert not np.array_equal(b.pixel_array[~pad], a.pixel_array[~pad])  # the rest was enhanced
    rle = pydicom.dcmread(tmp_path / "out" / "rle_dpe.dcm")
    assert rle.BitsAllocated == 16 and rle["PixelData"].VR == "OW"


def test_an_enhanced_multiframe_ct_gets_no_top_level_window(tmp_path: Path) -> None:
    """``eCT_Supplemental.dcm`` keeps its rescale (intercept -1024) and VOI in its functional groups; the result keeps
    them and gets no top-level window preset, which would read 1024 HU off (it was written in stored units)."""
    from dpe_monai.inference import enhance_files

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(_testdata("eCT_Supplemental.dcm"), src / "ect.dcm")
    summary = enhance_files([src], tmp_path / "out", lambda x: x)
    assert summary.exit_code == 0, summary.failed
    a, b = pydicom.dcmread(src / "ect.dcm"), pydicom.dcmread(tmp_path / "out" / "ect_dpe.dcm")
    assert "WindowCenter" not in b and b.NumberOfFrames == a.NumberOfFrames
    assert (
        b.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence
        == a.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence
    )
    np.testing.assert_array_equal(b.pixel_array, a.pixel_array)


def test_a_dicom_cut_before_its_pixel_data_is_called_truncated() -> None:
    """pydicom-data's ``emri_small_jpeg_2k_lossless_too_short.dcm`` (40 kB, cut inside its data) was reported as
    having no pixel data."""
    with pytest.raises(BadImageError, match="DICOM file is truncated"):
        read_image(_testdata("emri_small_jpeg_2k_lossless_too_short.dcm"))
