"""One image-file layer: every reader and detector gives the same answers on one shared fixture folder.

The folder holds DICOMs named ``.dcm``, ``.IMA``, ``IM0001.1`` and with no suffix, PNG 8/16-bit, TIFF (2-D and a 3-D
stack), NIfTI and a non-image file. The CLI's ``discover``/``read_image``, the MONAI ``DPEImageReader`` (directly and
through ``LoadImaged`` by its dotted name), the user-folder scanner and ``data/ensure.py`` agree on kind and values.
"""

from __future__ import annotations

import copy
import importlib.util
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
from monai.transforms import LoadImage, LoadImaged
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

from dpe_monai.data.folders import display_array, scan_folder
from dpe_monai.io import BadImageError, detect_kind, discover, read_image
from dpe_monai.io.readers import DPEImageReader

#: file name in the fixture folder -> kind every detector must report (None: not an image).
EXPECTED_KINDS = {
    "ct.dcm": "dicom",
    "scan.IMA": "dicom",
    "IM0001.1": "dicom",
    "IM0002": "dicom",
    "grey8.png": "png",
    "rgb8.png": "png",
    "grey16.png": "png",
    "grey16.tif": "tiff",
    "stack3d.tif": "tiff",
    "vol.nii.gz": "nifti",
    "notes.txt": None,
}


def stardist_image(name: str) -> Path | None:
    """A sample image shipped with stardist, found without importing it (None when stardist is not installed)."""
    spec = importlib.util.find_spec("stardist")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / name
    return path if path.is_file() else None


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layer")
    ct = Path(get_testdata_file("CT_small.dcm", download=False))
    mr = Path(get_testdata_file("MR_small.dcm", download=False))
    shutil.copy(ct, root / "ct.dcm")
    shutil.copy(ct, root / "scan.IMA")  # same image twice: same slice position, so two single-file items
    (root / "numbered").mkdir()
    shutil.copy(mr, root / "numbered" / "IM0001.1")
    shutil.copy(mr, root / "numbered" / "IM0002")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8)).save(root / "grey8.png")
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(root / "rgb8.png")
    Image.fromarray(rng.integers(0, 65536, (24, 18), dtype=np.uint16)).save(root / "grey16.png")
    tifffile.imwrite(root / "grey16.tif", rng.integers(0, 4096, (22, 26), dtype=np.uint16))
    stack = stardist_image("img3d.tif")
    if stack is not None:
        shutil.copy(stack, root / "stack3d.tif")
    else:
        tifffile.imwrite(root / "stack3d.tif", rng.integers(0, 4096, (7, 20, 24), dtype=np.uint16))
    affine = np.diag([0.9, 1.1, 2.0, 1.0])
    nib.save(nib.Nifti1Image(rng.integers(-1000, 2000, (16, 14, 6)).astype(np.int16), affine), root / "vol.nii.gz")
    (root / "notes.txt").write_text("not an image")
    return root


def _files(root: Path) -> dict[str, Path]:
    return {p.name: p for p in root.rglob("*") if p.is_file()}


def test_every_detector_agrees_on_kind(folder: Path) -> None:
    files = _files(folder)
    assert set(files) == set(EXPECTED_KINDS)
    for name, kind in EXPECTED_KINDS.items():
        assert detect_kind(files[name]) == kind, name
    jobs, problems = discover([folder])
    assert not problems
    assert {j.paths[0].name: j.kind for j in jobs} == {n: k for n, k in EXPECTED_KINDS.items() if k}
    reader = DPEImageReader()
    for name, kind in EXPECTED_KINDS.items():
        assert reader.verify_suffix(files[name]) == (kind is not None), name
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing in this folder is a bad file
        items, bad = scan_folder(folder)
    assert not bad
    by_name = {Path(it["image"]).name: it for it in items}
    assert {n: it["format"] for n, it in by_name.items()} == {n: k for n, k in EXPECTED_KINDS.items() if k}


def test_cli_monai_and_folder_readers_give_the_same_values(folder: Path) -> None:
    files = _files(folder)
    load = LoadImage(reader=DPEImageReader(), image_only=True, ensure_channel_first=True, dtype=None)
    load_native = LoadImage(reader=DPEImageReader(layout="native"), image_only=True, dtype=None)
    loadd = LoadImaged(keys="image", reader="dpe_monai.io.readers.DPEImageReader", ensure_channel_first=True)
    items = {Path(it["image"]).name: it for it in scan_folder(folder)[0]}
    for name, kind in EXPECTED_KINDS.items():
        if kind is None:
            continue
        native = read_image(files[name])  # the CLI's reader
        arr = native.array
        assert arr.shape[0] in (1, 3), name
        monai = load(str(files[name]))
        back = monai.numpy() if kind == "nifti" else np.swapaxes(monai.numpy(), 1, 2)
        np.testing.assert_array_equal(back, arr, err_msg=name)
        np.testing.assert_array_equal(load_native(str(files[name])).numpy(), arr, err_msg=name)
        by_name = loadd({"image": str(files[name])})["image"]
        np.testing.assert_allclose(by_name.numpy(), monai.numpy(), rtol=1e-6, err_msg=name)  # LoadImaged: float32
        assert monai.meta["source_format"] == kind and monai.meta["bit_depth"] == 8 * native.dtype.itemsize
        item = items[name]  # the user-folder scanner
        assert item["channels"] == arr.shape[0] and item["bit_depth"] == 8 * native.dtype.itemsize, name
        assert item["shape"] == [s for s in monai.shape[1:] if s != 1], name
        shown = display_array(read_image(files[name], strict=False))
        if arr.ndim == 3:  # 2-D images: (rows, cols[, 3])
            expected = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
            np.testing.assert_array_equal(shown, expected, err_msg=name)
        else:
            assert shown.size == arr.size and set(np.unique(shown)) <= set(np.unique(arr)), name


def test_dicom_values_are_modality_values_under_every_name(folder: Path) -> None:
    files = _files(folder)
    for name, source in (("ct.dcm", "CT_small.dcm"), ("scan.IMA", "CT_small.dcm"), ("IM0001.1", "MR_small.dcm")):
        ds = pydicom.dcmread(get_testdata_file(source, download=False))
        want = apply_modality_lut(ds.pixel_array, ds)
        np.testing.assert_array_equal(read_image(files[name]).array[0], want)
        assert read_image(files[name]).kind == "dicom"
    assert np.array_equal(read_image(files["IM0002"]).array, read_image(files["IM0001.1"]).array)


def test_3d_tiff_stack_is_a_volume(folder: Path) -> None:
    path = _files(folder)["stack3d.tif"]
    with tifffile.TiffFile(path) as tif:
        pages, raw = len(tif.pages), tif.asarray()
    image = read_image(path)
    assert image.array.shape == (1, *raw.shape[1:], pages) and image.dtype == raw.dtype
    np.testing.assert_array_equal(image.array[0], np.moveaxis(raw, 0, -1))


def test_a_folder_of_only_ima_and_numbered_dicoms_is_a_user_folder(folder: Path, tmp_path: Path) -> None:
    """``ensure_collection`` must not build the packaged collection into a folder of ``.IMA``/``IM0001.1`` scans."""
    from dpe_monai.data.ensure import _has_images, ensure_collection

    user = tmp_path / "scans"
    user.mkdir()
    shutil.copy(_files(folder)["scan.IMA"], user / "scan.IMA")
    shutil.copy(_files(folder)["IM0001.1"], user / "IM0001.1")
    before = sorted(p.name for p in user.rglob("*"))
    assert _has_images(user)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datalist = Path(ensure_collection(user))
    assert datalist.parent == tmp_path / "scans_dpe_collection"
    assert sorted(p.name for p in user.rglob("*")) == before  # the user's folder is never written to


def test_io_is_the_bottom_layer() -> None:
    """``dpe_monai.io`` imports nothing else from the package but the numpy-only intensity contract."""
    import ast
    import subprocess
    import sys

    import dpe_monai.io

    for path in Path(dpe_monai.io.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                ok = name.startswith(("dpe_monai.io", "dpe_monai.contract"))
                assert not name.startswith("dpe_monai") or ok, (path.name, name)
    code = (
        "import sys, dpe_monai.io, dpe_monai.io.readers; print(sorted(m for m in sys.modules if m.startswith('dpe_')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    allowed = ("dpe_monai.io", "dpe_monai.contract")
    assert all(m.startswith(allowed) for m in eval(loaded) if m != "dpe_monai"), loaded


def _series(folder: Path, n: int = 4, uid: str = "1.2.826.0.1.3680043.8.498.7") -> list[Path]:
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        ds = copy.deepcopy(ct)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, f"{uid}.{i}"
        ds.ImagePositionPatient = [0.0, 0.0, 2.5 * i]
        ds.save_as(folder / f"s{i}.dcm", enforce_file_format=True)
        paths.append(folder / f"s{i}.dcm")
    return paths


def test_a_localizer_in_the_series_leaves_the_stack_whole(tmp_path: Path) -> None:
    """A file of another size saved under the series' UID (a localizer) goes alone; the slices stay one series
    (they were all split into single images, each with its own derived series and display window)."""
    paths = _series(tmp_path / "s")
    loc = pydicom.dcmread(paths[0])
    loc.SOPInstanceUID += ".99"
    loc.PixelData = loc.pixel_array[:64, :48].copy().tobytes()
    loc.Rows, loc.Columns = 64, 48
    loc.save_as(tmp_path / "s" / "localizer.dcm", enforce_file_format=True)
    jobs, problems = discover([tmp_path / "s"])
    assert not problems and sorted(len(j.paths) for j in jobs) == [1, 4]


def test_a_series_given_file_by_file_is_one_series(tmp_path: Path) -> None:
    """``dpe-monai enhance s/*.dcm`` (a shell glob) groups the files as the folder ``s`` would."""
    paths = _series(tmp_path / "s")
    jobs, _ = discover([str(p) for p in reversed(paths)])
    assert len(jobs) == 1 and jobs[0].paths == paths and jobs[0].root == tmp_path / "s"


def test_a_truncated_slice_fails_alone_and_the_rest_of_its_series_is_enhanced(tmp_path: Path) -> None:
    """One cut file in a series is one failure naming it; the other slices are still enhanced as one series, each
    output at its own slice position (before, the cut file failed the whole series and nothing was written)."""
    from dpe_monai.inference import enhance_files

    paths = _series(tmp_path / "s")
    whole = paths[2].read_bytes()
    paths[2].write_bytes(whole[: len(whole) - 4000])  # cut inside the pixel data
    summary = enhance_files([tmp_path / "s"], tmp_path / "out", lambda x: x)
    assert summary.exit_code == 2
    (name, message), *rest = summary.failed
    assert not rest and name == str(paths[2]) and "truncated" in message and str(paths[2]) in message
    (done, outs), *more = summary.done
    assert not more and "series of 3" in done
    written = sorted((tmp_path / "out").glob("*.dcm"))
    assert [p.name for p in written] == ["s0_dpe.dcm", "s1_dpe.dcm", "s3_dpe.dcm"]
    ds = [pydicom.dcmread(p) for p in written]
    assert len({d.SeriesInstanceUID for d in ds}) == 1
    assert [float(d.ImagePositionPatient[2]) for d in ds] == [0.0, 2.5, 7.5]
    for src, out in zip([paths[0], paths[1], paths[3]], ds):  # identity enhancer: the stored values come back
        np.testing.assert_array_equal(out.pixel_array, pydicom.dcmread(src).pixel_array)


def test_a_series_whose_files_all_fail_is_one_line(tmp_path: Path) -> None:
    paths = _series(tmp_path / "s", n=2)
    for p in paths:
        p.write_bytes(p.read_bytes()[:-4000])
    with pytest.raises(BadImageError, match="truncated.*no file of this series of 2 is readable"):
        read_image(paths, "dicom", partial=True)
    with pytest.raises(BadImageError, match="truncated"):
        read_image(paths[::-1][:1] + paths[:1], "dicom")
