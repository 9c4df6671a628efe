"""Helpers for the bundle tests: a tiny on-disk dataset and datalist made by the test itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "dpe_enhancement"


def make_tiny_collection(root: Path, n_train: int = 4, n_val: int = 2, size: int = 48, seed: int = 0) -> Path:
    """Write bright 8-bit RGB and 16-bit grey PNGs plus a MONAI datalist; return the datalist path."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lists: dict[str, list[dict]] = {"training": [], "validation": [], "test": []}
    for split, n in (("training", n_train), ("validation", n_val), ("test", n_val)):
        for i in range(n):
            yy, xx = np.mgrid[0:size, 0:size] / size
            base = 0.55 + 0.35 * np.sin(6 * xx + i) * np.cos(4 * yy + seed)
            if i % 2 == 0:
                rgb = np.stack([base, base * 0.9, 1 - base * 0.5], -1) + rng.normal(0, 0.02, (size, size, 3))
                img = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
            else:
                img = Image.fromarray((np.clip(base, 0, 1) * 65535).astype(np.uint16))
            name = f"{split}_{i}.png"
            img.save(root / name)
            lists[split].append({"image": name, "subject": f"{split}{i}"})
    path = root / "datalist.json"
    path.write_text(json.dumps(lists))
    return path


def tiny_train_overrides(tmp_path: Path, datalist: Path, **extra) -> dict:
    """`train.json` overrides for CI-sized runs: tiny networks, 32-px patches, random feature backbone."""
    overrides = {
        "bundle_root": str(BUNDLE),
        "datalist": str(datalist),
        "output_dir": str(tmp_path / "out"),
        "ckpt_dir": str(tmp_path / "models"),
        "batch_size": 2,
        "patch_size": 32,
        "val_crop": 32,
        "num_workers": 0,
        "feature_backbone": "random",
        "network_def": {"_target_": "dpe_monai.networks.GlobalLocalNet", "channels": [8, 12, 16]},
        "discriminator_def": {"_target_": "dpe_monai.networks.DPEDiscriminator", "channels": [8, 8, 16, 16]},
    }
    overrides.update(extra)
    return overrides
