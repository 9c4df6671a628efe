"""A tiny, randomly initialised DPE bundle for command-line and MONAI Label tests (fast on 2 CPU cores)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dpe_monai.networks import DPENet

TINY_NETWORK = {"_target_": "dpe_monai.networks.DPENet", "spatial_dims": 2, "in_channels": 3, "out_channels": 3}
TINY_NETWORK["channels"] = [8, 16, 24]


def make_tiny_bundle(root: Path, seed: int = 0) -> Path:
    """Write ``configs/inference.json`` (``network_def`` only) and ``models/model.pt`` (``{"model": sd}``)."""
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(parents=True, exist_ok=True)
    config = {"imports": ["$import dpe_monai"], "bundle_root": ".", "network_def": TINY_NETWORK}
    (root / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    torch.manual_seed(seed)
    net = DPENet(channels=(8, 16, 24))
    torch.save({"model": net.state_dict()}, root / "models" / "model.pt")
    return root
