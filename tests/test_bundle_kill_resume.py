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

    # a finished run extended with a larger max_epochs continues its own MLflow run too (it opened a second one)
    more = subprocess.run(
        _cmd(args_file, resume=True, max_epochs=epoch + 2), cwd=BUNDLE, env=env, capture_output=True, text=True
    )
    assert more.returncode == 0, more.stderr[-2000:]
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    steps = {m.step for m in client.get_metric_history(runs[0].info.run_id, "g_loss")}
    assert steps == set(range(1, 2 * (epoch + 2) + 1)), sorted(steps)


def _validation_epoch(saver, psnr: float, epoch: int):
    """One validator epoch that ends with ``val_psnr = psnr``, with ``saver`` attached (MONAI's key-metric saver)."""
    from ignite.engine import Engine, Events

    engine = Engine(lambda e, b: None)
    engine.state.key_metric_name = "val_psnr"

    @engine.on(Events.EPOCH_COMPLETED)
    def _metric(e):
        e.state.metrics["val_psnr"] = psnr

    saver.attach(engine)
    engine.run([0], max_epochs=1)
    engine.state.epoch = epoch


def test_a_resumed_run_keeps_its_best_model(tmp_path):
    """After a resume, MONAI's key-metric saver started from nothing and rewrote ``model_best.pt`` with the first
    validation, however worse (a user audit: 19.19 dB replaced the run's best 19.23). ``BestSoFar`` carries its
    record in the resumable checkpoint."""
    from monai.handlers import CheckpointSaver

    from dpe_monai.handlers import BestSoFar

    def saver(weight: float):
        net = torch.nn.Linear(1, 1)
        torch.nn.init.constant_(net.weight, weight)
        return CheckpointSaver(str(tmp_path), {"model": net}, save_key_metric=True, key_metric_filename="best.pt")

    best = tmp_path / "best.pt"
    first = saver(1.0)
    _validation_epoch(first, 19.23, 1)
    record = BestSoFar(first).state_dict()
    assert record and float(torch.load(best, weights_only=True)["weight"]) == 1.0

    resumed = saver(2.0)  # the network after the resume: its next validation is worse
    BestSoFar(resumed).load_state_dict(record)
    _validation_epoch(resumed, 19.19, 2)
    assert float(torch.load(best, weights_only=True)["weight"]) == 1.0  # the run's best stays
    _validation_epoch(resumed, 19.50, 3)
    assert float(torch.load(best, weights_only=True)["weight"]) == 2.0  # a better one replaces it

    fresh = saver(3.0)  # what a resume did before: no record
    _validation_epoch(fresh, 19.19, 2)
    assert float(torch.load(best, weights_only=True)["weight"]) == 3.0
    BestSoFar(None).load_state_dict(record)  # a disabled saver (ranks > 0) takes nothing
    assert BestSoFar(None).state_dict() == {}
