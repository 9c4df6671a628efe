"""multi_gpu_train.json under torchrun: 2 CPU processes with the gloo backend (PyTorch DDP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from tests.bundle_utils import BUNDLE, make_tiny_collection, tiny_train_overrides


def test_two_process_gloo_ddp(tmp_path):
    datalist = make_tiny_collection(tmp_path / "data", n_train=4, n_val=2)
    configs = [str(BUNDLE / "configs" / "train.json"), str(BUNDLE / "configs" / "multi_gpu_train.json")]
    overrides = tiny_train_overrides(
        tmp_path, datalist, max_epochs=1, epoch_length=2, batch_size=1, precision="fp32", run_name="ddp_ci"
    )
    args_file = tmp_path / "overrides.json"
    args_file.write_text(json.dumps(overrides))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29533",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        json.dumps(configs),
        "--args_file",
        str(args_file),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=str(BUNDLE))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / "models" / "latest.pt", weights_only=True)
    assert ckpt["trainer"]["iteration"] == 2 and ckpt["trainer"]["epoch_length"] == 2
    assert (tmp_path / "models" / "model.pt").is_file()
    assert (tmp_path / "out" / "mlruns.db").is_file()  # rank 0 tracked the run
