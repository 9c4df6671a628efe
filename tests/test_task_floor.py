"""benchmarks.task_floor: the fine-tune's task loss against the frozen task network's loss on the clean crops."""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmarks import task_floor


def test_gap_to_floor():
    gaps = task_floor.gap_to_floor({"task_loss": [0.5, 0.4, math.nan], "task_loss_clean": [0.3, 0.4, 0.2]})
    assert gaps[:2] == [0.5 - 0.3, 0.0] and math.isnan(gaps[2])
    assert task_floor.gap_to_floor({}) == []


def test_reads_a_finished_fine_tune(tmp_path: Path, monkeypatch):
    """A fine-tune already trained against the current task U-Net (its EMA checkpoint, MLflow store and stamp in
    place) is read, not run again."""
    import mlflow

    from benchmarks import tumour

    seen = []
    monkeypatch.setattr(tumour, "task_segmenter_key", lambda config, overrides: seen.append(overrides) or "unet-key")
    out = tmp_path / "work" / "tumour" / "slab" / "gradprom_fold0"
    (out / "models").mkdir(parents=True)
    (out / "models" / "model.pt").write_bytes(b"trained earlier")
    (out / "task_segmenter.key").write_text("unet-key\n")
    client = mlflow.MlflowClient(f"sqlite:///{(out / 'mlruns.db').resolve()}")
    run = client.create_run(client.create_experiment("dpe_task_driven")).info.run_id
    for step in range(1, 5):  # 2 epochs of 2 iterations
        client.log_metric(run, "task_loss", 0.6 - 0.05 * step, step=step)
        client.log_metric(run, "task_loss_clean", 0.4, step=step)
    out_json = tmp_path / "floor.json"
    argv = ["--folds", "0", "--task_modes", "gradprom", "--finetune_epoch_length", "2"]
    payload = task_floor.main([*argv, "--work_dir", str(tmp_path / "work"), "--output", str(out_json)])
    rec = payload["runs"]["gradprom_fold0"]
    assert (out / "models" / "model.pt").read_bytes() == b"trained earlier"
    assert seen[0]["work_dir"] == str((tmp_path / "work" / "tumour" / "slab" / "data_fold0").resolve())
    assert [round(g, 3) for g in rec["gap_to_floor"]] == [0.125, 0.025]
    assert json.loads(out_json.read_text())["settings"]["epoch_length"] == 2

    from benchmarks.report import fmt
    from benchmarks.report_tumour import task_floor_section
    from dpe_monai.markdown import markdown_table

    text = "\n".join(task_floor_section(payload, {"fmt": fmt, "table": markdown_table}))
    assert "**gradprom_fold0**" in text and "| 1 | 0.525 | 0.400 | 0.125 |" in text
