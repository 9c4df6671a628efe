"""The MONAI Label app's infer tasks, called in-process (no server). Skipped when the optional extra is absent.

Install the extra with ``pip install --no-deps -c constraints.txt -r requirements-monailabel.txt`` (see
docs/ENHANCE_CLI.md). ``monailabel.tasks.infer.bundle`` (used for the segmentation stage of the
enhance-then-segment example) imports ``torchvision`` at module level, which cannot be installed here without
pulling CUDA torch; the ``torchvision_stand_in`` fixture below (and only it) makes that import succeed. Nothing
calls into the stand-in: it is removed from ``sys.modules`` right after the import.
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
import torch

try:
    from monailabel.interfaces.tasks.infer_v2 import InferType
    from monailabel.tasks.infer.basic_infer import CallBackTypes

    from dpe_monai.integrations.monailabel.lib.infers import EnhanceInfer, EnhanceThenSegment, build_infers
except ImportError as error:  # the optional extra (or one of its pure-Python needs) is not installed
    pytest.skip(f"monailabel extra not installed ({error})", allow_module_level=True)

from dpe_monai.io import read_image
from tests.io_fixtures import smooth, write_formats
from tests.tiny_bundle import make_tiny_bundle


@pytest.fixture(scope="module")
def dpe_bundle(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return make_tiny_bundle(tmp_path_factory.mktemp("dpe_bundle"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    return write_formats(tmp_path_factory.mktemp("inputs"))


def _infer(task, image: Path, **options) -> tuple[str, dict]:
    """What ``MONAILabelApp.infer`` does for a file path: call the task with the request."""
    return task({"model": "dpe_enhance", "image": str(image), "device": "cpu", "precision": "fp32", **options})


def test_app_registers_generic_type(dpe_bundle):
    infers = build_infers({"dpe_bundle": str(dpe_bundle)})
    assert sorted(infers) == ["dpe_enhance"]
    task = infers["dpe_enhance"]
    assert isinstance(task, EnhanceInfer) and task.is_valid()
    assert task.type == InferType.OTHERS == "others"  # MONAI Label has no enhancement type
    assert json.dumps(task.info(), default=str)  # what the server's /info/ endpoint serialises
    assert not build_infers({"dpe_bundle": str(dpe_bundle / "missing")})["dpe_enhance"].is_valid()


@pytest.mark.parametrize("name", ["nifti_int16", "png_grey16", "png_rgb8", "tiff16", "dicom_ct"])
def test_enhance_returns_image_in_input_format(dpe_bundle, inputs, name):
    task = build_infers({"dpe_bundle": str(dpe_bundle)})["dpe_enhance"]
    before = inputs[name].read_bytes()
    result, info = _infer(task, inputs[name])
    try:
        assert Path(result).suffix == inputs[name].suffix and info["result"] == "image"
        src, out = read_image(inputs[name]), read_image(Path(result))
        assert (out.kind, out.dtype, out.array.shape) == (src.kind, src.dtype, src.array.shape)
        assert not np.array_equal(out.array, src.array) and np.isfinite(out.array).all()
        if name == "nifti_int16":
            a, b = nib.load(inputs[name]), nib.load(result)
            assert a.header.binaryblock == b.header.binaryblock and np.array_equal(a.affine, b.affine)
        if name == "dicom_ct":
            ds = pydicom.dcmread(result)
            assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
            assert ds.SeriesInstanceUID != pydicom.dcmread(inputs[name]).SeriesInstanceUID
    finally:
        Path(result).unlink()
    assert inputs[name].read_bytes() == before


def test_enhance_dicom_series_folder_returns_zip(dpe_bundle, inputs):
    task = build_infers({"dpe_bundle": str(dpe_bundle)})["dpe_enhance"]
    result, _ = _infer(task, inputs["dicom_series"])
    with zipfile.ZipFile(result) as z:
        names = sorted(z.namelist())
    Path(result).unlink()
    assert names == ["slice0.dcm", "slice1.dcm", "slice2.dcm"]


def test_enhance_bad_input_names_file(dpe_bundle, tmp_path):
    task = build_infers({"dpe_bundle": str(dpe_bundle)})["dpe_enhance"]
    bad = tmp_path / "constant.tif"
    tifffile.imwrite(bad, np.full((16, 16), 7, np.uint16))
    with pytest.raises(ValueError, match=r"constant\.tif: image is constant"):
        _infer(task, bad)


@pytest.fixture
def torchvision_stand_in(monkeypatch):
    """Make ``monailabel.tasks.infer.bundle`` importable without torchvision (see the module docstring)."""
    import monai.bundle  # noqa: F401  (import MONAI modules that probe torchvision before the stand-in exists)
    import monai.networks.nets  # noqa: F401
    import monai.transforms  # noqa: F401

    if "monailabel.tasks.infer.bundle" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except Exception:  # absent, or a CUDA build that fails on this CPU-only torch
            for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
                monkeypatch.delitem(sys.modules, name)
            tv, utils = types.ModuleType("torchvision"), types.ModuleType("torchvision.utils")
            tv.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
            utils.__spec__ = importlib.machinery.ModuleSpec("torchvision.utils", None)

            def _not_available(*args, **kwargs):
                raise RuntimeError("torchvision stand-in (tests only): not available")

            utils.make_grid = utils.save_image = _not_available
            tv.utils = utils
            monkeypatch.setitem(sys.modules, "torchvision", tv)
            monkeypatch.setitem(sys.modules, "torchvision.utils", utils)
    from monailabel.tasks.infer.bundle import BundleInferTask

    return BundleInferTask  # monkeypatch removes the stand-in when the test ends


def _tiny_segmentation_bundle(root: Path) -> Path:
    """A MONAI segmentation bundle (3-D UNet, random weights) as MONAI Label's BundleInferTask expects it."""
    from monai.networks.nets import UNet

    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    net = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [4, 8]}
    net.update(strides=[2], num_res_units=0)
    config = {
        "imports": ["$import torch"],
        "bundle_root": str(root),
        "device": "$torch.device('cpu')",
        "network_def": net,
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image"},
                {"_target_": "EnsureChannelFirstd", "keys": "image"},
                {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -1000, "a_max": 1000}
                | {"b_min": 0.0, "b_max": 1.0, "clip": True},
                {"_target_": "EnsureTyped", "keys": "image"},
            ],
        },
        "inferer": {"_target_": "SimpleInferer"},
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            ],
        },
    }
    (root / "configs" / "inference.json").write_text(json.dumps(config, indent=1))
    fmt = {"type": "image", "num_channels": 1, "spatial_shape": [32, 32, 16]}
    pred = {"type": "image", "num_channels": 2, "channel_def": {"0": "background", "1": "tissue"}}
    meta = {"version": "0.0.1", "description": "tiny test segmentation", "network_data_format": {}}
    meta["network_data_format"] = {"inputs": {"image": fmt}, "outputs": {"pred": pred}}
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    torch.manual_seed(0)
    unet = UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,), num_res_units=0)
    torch.save({"model": unet.state_dict()}, root / "models" / "model.pt")
    return root


def test_enhance_then_segment_feeds_enhanced_image(dpe_bundle, tmp_path, torchvision_stand_in):
    volume = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image((smooth((32, 32, 16), 4) * 1600 - 800).astype(np.int16), np.diag([1, 1, 2.5, 1])), volume)
    segment = torchvision_stand_in(str(_tiny_segmentation_bundle(tmp_path / "seg_bundle")), {})
    assert segment.is_valid()
    infers = build_infers({"dpe_bundle": str(dpe_bundle)}, segment=segment)
    pipeline = infers["dpe_enhance_then_segment"]
    assert isinstance(pipeline, EnhanceThenSegment) and pipeline.is_valid() and pipeline.type == "segmentation"

    seen = {}

    def spy(data):  # what the segmentation model was given, read while the enhanced file still exists
        seen["path"] = data["image_path"]
        seen["values"] = np.asarray(nib.load(data["image_path"]).dataobj)
        return data

    request = {"model": "dpe_enhance_then_segment", "image": str(volume), "device": "cpu", "precision": "fp32"}
    label, result = pipeline(request, {CallBackTypes.PRE_TRANSFORMS: spy})
    assert seen["path"] != str(volume) and not Path(seen["path"]).exists()  # intermediate file cleaned up
    original = np.asarray(nib.load(volume).dataobj)
    assert seen["values"].shape == original.shape and not np.array_equal(seen["values"], original)
    assert result["enhancement"]["format"] == "nifti" and "latencies" in result
    seg = np.asarray(nib.load(label).dataobj)
    Path(label).unlink()
    assert seg.shape == original.shape and set(np.unique(seg)) <= {0, 1}
