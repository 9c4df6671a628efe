"""A training run killed with SIGKILL resumes from its last atomic checkpoint with `resume` set."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch

from tests.bundle_utils import BUNDLE, make_tiny_collection, tiny_train_overrides


def _cmd(args_file, **extra):
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        "configs/train.json",
        "--args_file",
        str(args_file),
    ]
    for k, v in extra.items():
        cmd += [f"--{k}", str(v)]
    return cmd


def test_sigkill_then_resume(tmp_path):
    datalist = make_tiny_collection(tmp_path / "data")
    overrides = tiny_train_overrides(tmp_path, datalist, max_epochs=1000, epoch_length=2, val_interval=1000)
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps(overrides))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    latest = tmp_path / "models" / "latest.pt"
    proc = subprocess.Popen(_cmd(args_file), cwd=BUNDLE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if latest.exists() and torch.load(latest, weights_only=True)["trainer"]["iteration"] >= 4:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    saved = torch.load(latest, weights_only=True)  # the atomic write left a complete checkpoint
    assert saved["trainer"]["epoch_length"] == 2 and saved["trainer"]["iteration"] % 2 == 0
    epoch = saved["trainer"]["iteration"] // 2
    assert epoch >= 2
    # a kill in the middle of a write may leave DiskSaver's temporary file; the resumed run removes it
    (tmp_path / "models" / "tmpabcd1234").write_bytes(b"partial")

    done = subprocess.run(
        _cmd(args_file, resume=True, max_epochs=epoch + 1),
        cwd=BUNDLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resumed from {latest}" in done.stdout + done.stderr
    after = torch.load(latest, weights_only=True)
    assert after["trainer"]["iteration"] == 2 * (epoch + 1) and after["trainer"]["epoch"] == epoch + 1
    assert after["trainer"]["max_epochs"] == epoch + 1
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["latest.pt", "model.pt", "run_name.txt"]
    # the resumed training logs into the MLflow run the killed one left open, and finishes it
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'out' / 'mlruns.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_name for r in runs] == [(tmp_path / "models" / "run_name.txt").read_text().strip()]
    assert runs[0].info.status == "FINISHED"
    steps = {m.step for m in client.get_metric_history(runs[0].info.run_id, "g_loss")}
    assert steps == set(range(1, 2 * (epoch + 1) + 1)), sorted(steps)
