"""``dpe-monai`` command line: formats, derived DICOM series, tiling, dry run, overwrite rules and exit codes."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
import torch
from PIL import Image
from pydicom.data import get_testdata_file

from dpe_monai.cli import default_bundle, main
from tests.io_fixtures import smooth, write_formats
from tests.tiny_bundle import make_tiny_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"))


def _enhance(bundle: Path, *args: str) -> int:
    return main(["enhance", *args, "--bundle", str(bundle), "--device", "cpu", "--precision", "fp32"])


def _png(path: Path, shape=(40, 48), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((smooth(shape, seed) * 255).astype(np.uint8)).save(path)
    return path


def test_help_runs_without_torch_and_lists_commands():
    code = (
        "import sys; from dpe_monai.cli import main; rc = main(['--help']); assert 'torch' not in sys.modules; exit(rc)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    for word in ("enhance", "data", "demo"):
        assert word in res.stdout


def test_usage_errors_exit_1(bundle, tmp_path, capsys):
    png = _png(tmp_path / "in" / "a.png")
    assert main(["enhance", str(png)]) == 1  # no --output
    assert main(["enhance", str(png), "-o", str(tmp_path / "o"), "--axis", "3"]) == 1
    assert main(["enhance", str(png), "-o", str(tmp_path / "o"), "--tile-size", "0"]) == 1
    assert main(["frobnicate"]) == 1
    assert main(["enhance", str(png), "-o", str(tmp_path / "o"), "--bundle", str(tmp_path / "nowhere")]) == 1
    assert "not a DPE bundle" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["enhance", str(png), "-o", str(tmp_path / "o"), "--bundle", str(bundle), "--device", "cuda"]) == 1
        assert "CUDA is not available" in capsys.readouterr().err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    assert _enhance(bundle, str(tmp_path / "notes"), "-o", str(tmp_path / "o")) == 1
    assert "nothing to do: no supported image files" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert _enhance(bundle, str(tmp_path / "empty"), "-o", str(tmp_path / "o")) == 1  # one rule for nothing to do
    assert "nothing to do" in capsys.readouterr().err
    bad = tmp_path / "bad_weights.pt"
    bad.write_text("not a checkpoint")
    assert _enhance(bundle, str(png), "-o", str(tmp_path / "o"), "--weights", str(bad)) == 1
    assert "not a model checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_default_bundle_env_override(monkeypatch, tmp_path):
    monkeypatch.delenv("DPE_MONAI_BUNDLE", raising=False)
    assert default_bundle() == Path(__file__).resolve().parents[1] / "bundles" / "dpe_enhancement"
    monkeypatch.setenv("DPE_MONAI_BUNDLE", str(tmp_path))
    assert default_bundle() == tmp_path


def test_dicom_ct_mr_and_series_become_derived_series(bundle, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(get_testdata_file(name), src / name)
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    (src / "series").mkdir()
    for i in range(3):
        ds = copy.deepcopy(ct)
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.1.{i}"
        ds.ImagePositionPatient = [0.0, 0.0, 2.5 * i]
        ds.PixelData = (ds.pixel_array.astype(np.int16) + 30 * i).tobytes()
        ds.save_as(src / "series" / f"im{i}", enforce_file_format=True)  # no extension: found by its preamble
    assert _enhance(bundle, str(src), "-o", str(tmp_path / "out")) == 0
    table = capsys.readouterr().out
    assert "done         3" in table and "written      5 files" in table  # CT, MR and the series (one job, 3 files)
    outs = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert outs == {"CT_small_dpe.dcm", "MR_small_dpe.dcm"} | {f"series/im{i}_dpe" for i in range(3)}
    series_uids = set()
    for rel in sorted(outs):
        o = pydicom.dcmread(tmp_path / "out" / rel)
        s = pydicom.dcmread(src / rel.replace("_dpe", ""))
        assert list(o.ImageType)[:2] == ["DERIVED", "SECONDARY"] and o.SeriesDescription.endswith("DPE enhanced")
        assert o.SeriesInstanceUID != s.SeriesInstanceUID and o.SOPInstanceUID != s.SOPInstanceUID
        assert o.file_meta.MediaStorageSOPInstanceUID == o.SOPInstanceUID
        keep = ("Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation", "RescaleSlope")
        for tag in keep + ("RescaleIntercept", "StudyInstanceUID", "PatientID"):
            assert o.get(tag) == s.get(tag), (rel, tag)
        # the source's windows stay first (a viewer opens the scan as before); the window used is the last preset
        names = o.WindowCenterWidthExplanation
        names = list(names) if isinstance(names, pydicom.multival.MultiValue) else [names]
        widths = o.WindowWidth if isinstance(o.WindowWidth, pydicom.multival.MultiValue) else [o.WindowWidth]
        assert names[-1] == "DPE enhancement window" and float(widths[-1]) >= 1
        if "WindowCenter" in s:
            centres = o.WindowCenter if len(names) > 1 else [o.WindowCenter]
            assert float(centres[0]) == float(s.WindowCenter) and len(names) == 2
        assert o.pixel_array.dtype == s.pixel_array.dtype and o.pixel_array.shape == s.pixel_array.shape
        if rel.startswith("series/"):
            series_uids.add(o.SeriesInstanceUID)
    assert len(series_uids) == 1


def test_nifti_volume_tiff16_and_axis(bundle, tmp_path):
    files = write_formats(tmp_path / "in")
    for axis in ("0", "2"):
        out = tmp_path / f"out{axis}"
        assert _enhance(bundle, str(files["nifti_int16"]), str(files["tiff16"]), "-o", str(out), "--axis", axis) == 0
        a, b = nib.load(files["nifti_int16"]), nib.load(out / "vol_int16_dpe.nii.gz")
        assert a.header.binaryblock == b.header.binaryblock and np.array_equal(a.affine, b.affine)
        assert b.shape == a.shape and b.get_data_dtype() == np.int16
        t = tifffile.imread(out / "grey16_dpe.tif")
        assert t.dtype == np.uint16 and t.shape == tifffile.imread(files["tiff16"]).shape


def test_tiled_inference_has_no_seams(bundle, tmp_path):
    src = tmp_path / "big.tif"
    tifffile.imwrite(src, (smooth((200, 232), 3) * 60000).astype(np.uint16))
    assert _enhance(bundle, str(src), "-o", str(tmp_path / "whole"), "--tile-size", "512") == 0
    assert _enhance(bundle, str(src), "-o", str(tmp_path / "tiled"), "--tile-size", "64") == 0
    whole = tifffile.imread(tmp_path / "whole" / "big_dpe.tif").astype(float)
    tiled = tifffile.imread(tmp_path / "tiled" / "big_dpe.tif").astype(float)
    assert np.abs(whole - tiled).max() < 0.01 * 60000  # Gaussian-blended tiles match the single pass


def test_dry_run_writes_nothing(bundle, tmp_path, capsys):
    png = _png(tmp_path / "in" / "a.png")
    assert main(["enhance", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--dry-run"]) == 0  # no model needed
    printed = capsys.readouterr().out
    assert f"would write {tmp_path / 'out' / 'a_dpe.png'}" in printed
    assert "planned      1" in printed and "would write      1 file\n" in printed and "done" not in printed
    assert not (tmp_path / "out").exists() and png.exists()


def test_existing_outputs_skipped_then_overwritten(bundle, tmp_path, capsys):
    _png(tmp_path / "in" / "a.png")
    out = tmp_path / "out" / "a_dpe.png"
    out.parent.mkdir()
    out.write_bytes(b"old")
    assert _enhance(bundle, str(tmp_path / "in"), "-o", str(tmp_path / "out")) == 0
    assert "output exists" in capsys.readouterr().err and out.read_bytes() == b"old"
    assert _enhance(bundle, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--overwrite") == 0
    assert Image.open(out).size == (48, 40)


def test_outputs_never_replace_inputs(bundle, tmp_path, capsys):
    src = tmp_path / "in"
    a = _png(src / "a.png")
    before = a.read_bytes()
    assert _enhance(bundle, str(src), "-o", str(src), "--postfix", "") == 1  # output folder == an input folder
    assert "is an input folder" in capsys.readouterr().err
    assert _enhance(bundle, str(a), "-o", str(src), "--postfix", "") == 1  # output == its own input
    assert "refusing to overwrite inputs" in capsys.readouterr().err
    out = src / "enhanced"  # an output folder inside the input folder
    assert _enhance(bundle, str(src), "-o", str(out)) == 0
    enhanced = (out / "a_dpe.png").read_bytes()
    assert _enhance(bundle, str(src), "-o", str(out), "--overwrite") == 0  # earlier outputs are never inputs
    assert sorted(p.name for p in out.rglob("*.png")) == ["a_dpe.png"]
    assert a.read_bytes() == before and (out / "a_dpe.png").read_bytes() == enhanced


def test_two_inputs_with_one_output_name_fail_instead_of_one_being_lost(bundle, tmp_path, capsys):
    """``c1/x.png`` and ``c2/x.png`` both map to ``out/x_dpe.png``: the second is reported by name, and
    ``--overwrite`` does not let it replace the first one's result."""
    first, second = _png(tmp_path / "c1" / "x.png", seed=1), _png(tmp_path / "c2" / "x.png", seed=2)
    out = tmp_path / "out"
    for extra in ([], ["--overwrite"]):
        assert _enhance(bundle, str(first), str(second), "-o", str(out), *extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {second}: its output") and str(first) in err[0], err
    assert sorted(p.name for p in out.iterdir()) == ["x_dpe.png"]
    assert _enhance(bundle, str(first), "-o", str(tmp_path / "only1"), "--overwrite") == 0
    assert (out / "x_dpe.png").read_bytes() == (tmp_path / "only1" / "x_dpe.png").read_bytes()  # the first's
    # the order the user gave them in decides, not the path order: c2 named first keeps the name
    assert _enhance(bundle, str(second), str(first), "-o", str(tmp_path / "rev")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {first}: its output") and str(second) in err[0], err
    assert _enhance(bundle, str(second), "-o", str(tmp_path / "only2")) == 0
    assert (tmp_path / "rev" / "x_dpe.png").read_bytes() == (tmp_path / "only2" / "x_dpe.png").read_bytes()


def test_failure_mid_batch_leaves_no_partial_files(bundle, tmp_path, monkeypatch, capsys):
    import dpe_monai.io as io

    for i in range(3):
        _png(tmp_path / "in" / f"im{i}.png", seed=i)
    real = io.write_raster

    def flaky(image, values, out_path):
        if image.sources[0].name == "im1.png":
            Path(out_path).write_bytes(b"partial")
            raise OSError("disk full")
        real(image, values, out_path)

    monkeypatch.setattr(io, "write_raster", flaky)
    assert _enhance(bundle, str(tmp_path / "in"), "-o", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'in' / 'im1.png'}: OSError: disk full"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["im0_dpe.png", "im2_dpe.png"]


def test_missing_input_is_reported_and_batch_goes_on(bundle, tmp_path, capsys):
    _png(tmp_path / "in" / "a.png")
    assert _enhance(bundle, str(tmp_path / "missing.png"), str(tmp_path / "in"), "-o", str(tmp_path / "out")) == 2
    assert "missing.png: no such file or directory" in capsys.readouterr().err
    assert (tmp_path / "out" / "a_dpe.png").is_file()


def test_data_build_and_demo_are_delegated(monkeypatch):
    calls = []
    for name in ("dpe_monai.demo", "dpe_monai.data.build"):
        fake = types.ModuleType(name)
        fake.main = lambda argv, name=name: calls.append((name, argv)) or 0
        monkeypatch.setitem(sys.modules, name, fake)
    assert main(["demo", "--fast"]) == 0
    assert main(["data", "build", "--out", "x"]) == 0
    assert calls == [("dpe_monai.demo", ["--fast"]), ("dpe_monai.data.build", ["--out", "x"])]


def test_network_config_picks_the_network_the_weights_belong_to(bundle, tmp_path, capsys):
    """--network-config: the same weights in the scan-path network and in the plain one (a task-driven fine-tune's)
    give different results on a 16-bit scan; a path works like a name in <bundle>/configs; a missing one is a usage
    error."""
    import json

    from dpe_monai.networks import GlobalLocalNet

    root = shutil.copytree(bundle, tmp_path / "bundle")
    torch.manual_seed(0)
    net = GlobalLocalNet(channels=(8, 16, 24))
    last = net.body.tail.conv if hasattr(net.body.tail, "conv") else net.body.tail
    torch.nn.init.normal_(last.weight, std=0.05)  # a body that acts (its head is zero-initialised)
    torch.save({"model": net.state_dict()}, root / "models" / "gl.pt")
    nd = {"_target_": "dpe_monai.networks.GlobalLocalNet", "channels": [8, 16, 24]}
    for name, extra in (("scan", {"prefilter": "nlm", "prefilter_on": "relative"}), ("plain", {})):
        cfg = {"imports": ["$import dpe_monai"], "bundle_root": ".", "network_def": {**nd, **extra}}
        (root / "configs" / f"{name}.json").write_text(json.dumps(cfg))
    src = tmp_path / "scan.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(src, (smooth((64, 72), 5) * 20000 + 8000 + rng.normal(0, 600, (64, 72))).astype(np.uint16))
    outs = {}
    for name, cfg in (("scan", "scan.json"), ("plain", "plain.json"), ("path", str(root / "configs" / "plain.json"))):
        args = (str(src), "-o", str(tmp_path / name), "--weights", str(root / "models" / "gl.pt"))
        assert _enhance(root, *args, "--network-config", cfg) == 0
        outs[name] = tifffile.imread(tmp_path / name / "scan_dpe.tif").astype(np.float64)
    assert np.array_equal(outs["plain"], outs["path"])
    assert np.abs(outs["scan"] - outs["plain"]).mean() > 50  # the scan path ignores the body; the plain net uses it
    capsys.readouterr()
    assert _enhance(root, str(src), "-o", str(tmp_path / "x"), "--network-config", "nowhere.json") == 1
    assert "nowhere.json: no such bundle config" in capsys.readouterr().err


def test_an_output_folder_that_cannot_be_written_is_one_early_line(bundle, tmp_path, capsys, monkeypatch):
    """An unwritable ``--output`` (read-only, or under a file) fails once, before anything is enhanced, naming the
    folder (it failed once per image, after the enhancement, naming a hidden temporary file)."""
    import tempfile

    _png(tmp_path / "in" / "a.png")
    _png(tmp_path / "in" / "b.png", seed=1)
    (tmp_path / "file.txt").write_text("x")
    assert _enhance(bundle, str(tmp_path / "in"), "-o", str(tmp_path / "file.txt" / "out")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"dpe-monai: error: --output {tmp_path / 'file.txt' / 'out'}: cannot write"
    )

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)  # what a read-only folder does (tests run as root)
    assert _enhance(bundle, str(tmp_path / "in"), "-o", str(tmp_path / "ro")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dpe-monai: error: --output {tmp_path / 'ro'}: cannot write there (Permission denied)"]
    assert not (tmp_path / "ro").exists()


def test_weights_from_train_json_in_the_shipped_network_say_what_to_do(bundle, tmp_path, capsys):
    """A checkpoint trained by ``train.json`` (no refiner, no gate) given to the shipped network failed with a
    ``Missing key(s) in state_dict: "refiner.body.0.conv.weight", ...`` wall naming neither the file nor a fix (a user
    audit, bundle inference); now one line names the file, the missing parts and the overrides."""
    import json

    from dpe_monai.inference import load_network
    from dpe_monai.networks import GlobalLocalNet

    root = shutil.copytree(bundle, tmp_path / "bundle")
    trained = root / "models" / "trained.pt"
    torch.save({"model": GlobalLocalNet(channels=(8, 16, 24)).state_dict()}, trained)
    shipped = {"channels": (8, 16, 24), "prefilter": "nlm", "prefilter_on": "relative", "scan_refiner": True,
               "clean_gate": True}  # fmt: skip
    with pytest.raises(ValueError) as raised:
        load_network(GlobalLocalNet(**shipped), trained)
    text = str(raised.value)
    assert text.startswith(f"{trained} does not fit the network GlobalLocalNet: it lacks ")
    assert "(gate, refiner)" in text and "--network_def#scan_refiner False" in text and "--network-config" in text
    with pytest.raises(ValueError, match=r"does not fit the network GlobalLocalNet: \d+ weights have other shapes"):
        load_network(GlobalLocalNet(channels=(8, 16, 32)), trained)
    cfg = {"imports": ["$import dpe_monai"], "bundle_root": ".",
           "network_def": {"_target_": "dpe_monai.networks.GlobalLocalNet", **shipped}}  # fmt: skip
    (root / "configs" / "inference.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    src = _png(tmp_path / "in" / "a.png")
    assert _enhance(root, str(src), "-o", str(tmp_path / "o"), "--weights", str(trained)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{trained} does not fit the network" in err[0] and "--network-config" in err[0]
