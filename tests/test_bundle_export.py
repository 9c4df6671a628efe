"""Bundle exports: TorchScript via `monai.bundle ckpt_export`, ONNX via scripts/export_onnx.py; both match eager."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import torch

from dpe_monai.networks import GlobalLocalNet
from tests.bundle_utils import BUNDLE


def _random_checkpoint(path):
    torch.manual_seed(0)
    net = GlobalLocalNet().eval()
    torch.save({"model": net.state_dict()}, path)
    return net


def test_torchscript_export_matches_eager(tmp_path):
    net = _random_checkpoint(tmp_path / "model.pt")
    ts = tmp_path / "model.ts"
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "ckpt_export",
        "network_def",
        "--filepath",
        str(ts),
        "--ckpt_file",
        str(tmp_path / "model.pt"),
        "--key_in_ckpt",
        "model",
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        "configs/inference.json",
    ]
    proc = subprocess.run(cmd, cwd=BUNDLE, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    scripted = torch.jit.load(str(ts))
    x = torch.rand(1, 3, 97, 131)
    with torch.no_grad():
        assert (scripted(x) - net(x)).abs().max() < 1e-5


def test_onnx_export_matches_eager(tmp_path):
    _random_checkpoint(tmp_path / "model.pt")
    spec = importlib.util.spec_from_file_location("export_onnx", BUNDLE / "scripts" / "export_onnx.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.export(tmp_path / "model.pt", tmp_path / "model.onnx")
    assert mod.check(out, tmp_path / "model.pt") < 1e-4
