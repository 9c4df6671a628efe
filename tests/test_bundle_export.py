"""Bundle exports: TorchScript via `monai.bundle ckpt_export`, ONNX via scripts/export_onnx.py; both match eager."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import torch
from monai.bundle import ConfigParser

from dpe_monai.networks import GlobalLocalNet
from tests.bundle_utils import BUNDLE


def _random_checkpoint(path):
    """Random weights for the network ``inference.json`` declares (so a strict load of the bundle's own
    ``network_def`` takes them, refiner included where the bundle ships one)."""
    torch.manual_seed(0)
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.json"))
    net = parser.get_parsed_content("network_def").eval()
    assert isinstance(net, GlobalLocalNet)
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


def _export_module():
    spec = importlib.util.spec_from_file_location("export_onnx", BUNDLE / "scripts" / "export_onnx.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_onnx_export_matches_eager(tmp_path):
    """The single-input export (``--no_route``) of the bundle's network: the learned path."""
    _random_checkpoint(tmp_path / "model.pt")
    mod = _export_module()
    out = mod.export(tmp_path / "model.pt", tmp_path / "model.onnx", route=False)
    assert mod.check(out, tmp_path / "model.pt") < 1e-4


def test_routed_onnx_export_takes_the_flag(tmp_path):
    """The default export has the route flag as an input: grey images with flag 1 take the scan path (NLM and the
    denoised image's window) in ONNX Runtime as in eager PyTorch, colour ones with flag 0 the learned path. The
    NLM search is cut to 3x3 here to keep the export short; the bundle's 13x13 graph is the same, only longer."""
    import onnxruntime as ort

    from dpe_monai.networks.nonlocal_means import NonLocalMeans

    torch.manual_seed(0)
    net = GlobalLocalNet(
        prefilter="nlm",
        prefilter_on="relative",
        keep_scale=(0.8, 0.9),
        scan_refiner=True,
        refiner_channels="mean",
        clean_gate=True,
        exposed=(0.9, 0.95),
    ).eval()  # the shipped layout (inference.json), refiner and gate included
    net.prefilter = NonLocalMeans(2, patch_distance=1)
    with torch.no_grad():  # untrained, the refiner's head and the gate are zero: give them something to compute
        for p in [*net.refiner.parameters(), *net.gate.parameters()]:
            p.add_(0.05 * torch.randn_like(p))
    mod = _export_module()
    out = mod.export_network(net, tmp_path / "routed.onnx")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "relative"]
    # sizes other than the traced one: a size fixed at export once made the scan path silently wrong elsewhere
    sizes = ((1, 3, 97, 131), (1, 3, 64, 80), (1, 3, 256, 256), (1, 3, 300, 200))
    assert mod.check_session(session, net, sizes) < 1e-4
    grey = (0.6 * torch.rand(1, 1, 64, 80)).expand(1, 3, 64, 80).contiguous().numpy()
    scan = session.run(None, {"image": grey, "relative": np.ones(1, np.float32)})[0]
    learned = session.run(None, {"image": grey, "relative": np.zeros(1, np.float32)})[0]
    assert np.abs(scan - learned).max() > 1e-3  # the flag selects a different path
