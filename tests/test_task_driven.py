"""Task-driven fine-tuning: the GradProm rule, the trainer's three modes, and the bundle's task_driven.json."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dpe_monai.engines import TaskDrivenTrainer, promote_gradients
from tests.bundle_utils import BUNDLE


def test_promotion_rule_global() -> None:
    g_e = [torch.tensor([1.0, 0.0]), torch.tensor([2.0])]
    aligned = [torch.tensor([1.0, 1.0]), torch.tensor([0.5])]
    opposed = [torch.tensor([-1.0, 3.0]), torch.tensor([-1.0])]
    out, stats = promote_gradients(g_e, aligned, weight=0.5)
    assert stats["promoted"] == 1.0 and stats["cosine"] > 0
    torch.testing.assert_close(out[0], torch.tensor([1.5, 0.5]))
    torch.testing.assert_close(out[1], torch.tensor([2.25]))
    out, stats = promote_gradients(g_e, opposed, weight=0.5)
    assert stats["promoted"] == 0.0 and stats["cosine"] < 0
    for got, want in zip(out, g_e):
        torch.testing.assert_close(got, want)


def test_promotion_rule_per_tensor() -> None:
    g_e = [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])]
    g_t = [torch.tensor([1.0, 1.0]), torch.tensor([-1.0, -2.0])]  # first tensor agrees, second opposes
    out, stats = promote_gradients(g_e, g_t, granularity="tensor")
    torch.testing.assert_close(out[0], torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(out[1], g_e[1])
    assert stats["promoted"] == 0.5
    # a missing gradient counts as zero; a zero gradient is never "aligned"
    out, _ = promote_gradients([None, g_e[1]], [g_t[0], g_t[1]], granularity="tensor")
    torch.testing.assert_close(out[0], torch.zeros(2))
    with pytest.raises(ValueError):
        promote_gradients(g_e, g_t, granularity="layer-ish")


class _Scale(torch.nn.Module):
    """``pred = a * x``: one parameter, so the expected update is known in closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * x


def _one_step(mode: str, task_sign: float) -> float:
    """``a`` after one SGD step (lr 0.1) with ``L_e = mean|a x - 2x|`` and ``L_t = sign * mean(a x)``."""
    return float(_run_one_step(mode, task_sign).network.a.detach())


def _run_one_step(mode: str, task_sign: float) -> TaskDrivenTrainer:
    x = torch.full((2, 1, 4, 4), 0.5)
    batch = [{"lq": x, "image": 2 * x, "label": torch.zeros(2, 1, 4, 4)}]
    net = _Scale()
    trainer = TaskDrivenTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=batch,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=torch.nn.L1Loss(),
        task_network=torch.nn.Identity(),
        task_loss_function=lambda out, label: task_sign * out.mean(),
        mode=mode,
    )
    trainer.run()
    return trainer


def test_trainer_modes_follow_the_rule() -> None:
    # dL_e/da = -mean(x) = -0.5; dL_t/da = sign * 0.5
    assert _one_step("gradprom", task_sign=+1.0) == pytest.approx(1.0 + 0.1 * 0.5)  # opposed: L_e alone
    assert _one_step("gradprom", task_sign=-1.0) == pytest.approx(1.0 + 0.1 * 1.0)  # aligned: both
    assert _one_step("sum", task_sign=+1.0) == pytest.approx(1.0)  # the sum cancels
    assert _one_step("alternate", task_sign=-1.0) == pytest.approx(1.0 + 0.1 * 0.5)  # iteration 1: L_e step
    with pytest.raises(ValueError):
        _one_step("bilevel", task_sign=1.0)


def test_trainer_logs_the_task_loss_floor() -> None:
    out = _run_one_step("gradprom", task_sign=-1.0).state.output
    assert out["task_loss"] == pytest.approx(-0.5) and out["task_loss_clean"] == pytest.approx(-1.0)  # on 2x


def _tiny_tumour_datalist(root: Path, size: int = 48) -> Path:
    """Grey 8-bit slices with a bright disc (the "tumour") on half of them, plus 0/1 label maps."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items = []
    for i in range(4):
        yy, xx = np.mgrid[0:size, 0:size]
        img = 120 + 40 * np.sin(xx / 5.0 + i) + rng.normal(0, 4, (size, size))
        lab = np.zeros((size, size), np.uint8)
        if i % 2 == 0:
            lab[(yy - 20 - i) ** 2 + (xx - 24) ** 2 < 36] = 1
            img[lab > 0] = 230
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / f"s{i}.png")
        Image.fromarray(lab).save(root / f"s{i}_label.png")
        items.append({"image": f"s{i}.png", "label": f"s{i}_label.png", "has_tumour": bool(i % 2 == 0)})
    path = root / "datalist.json"
    path.write_text(json.dumps({"training": items, "test": items[:1]}))
    return path


def test_bundle_task_driven_fine_tune(tmp_path: Path) -> None:
    """A tiny GradProm fine-tune of the shipped checkpoint through configs/task_driven.json, tracked in MLflow."""
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(
        config_file=str(BUNDLE / "configs" / "task_driven.json"),
        workflow_type="train",
        bundle_root=str(BUNDLE),
        datalist=str(_tiny_tumour_datalist(tmp_path / "data")),
        work_dir=str(tmp_path / "work"),
        output_dir=str(tmp_path / "out"),
        max_epochs=1,
        epoch_length=2,
        batch_size=2,
        patch_size=32,
        segmenter_iterations=2,
    )
    wf.initialize()
    before = {k: v.clone() for k, v in wf.parser.get_parsed_content("network").state_dict().items()}
    wf.run()
    wf.finalize()
    models = tmp_path / "out" / "models"
    assert (models / "model.pt").is_file() and (models / "latest.pt").is_file()
    assert (tmp_path / "work" / "task_segmenter.pt").is_file()
    after = wf.parser.get_parsed_content("network").state_dict()
    body = [k for k in before if not k.startswith("global_branch.")]
    assert any(not torch.equal(before[k], after[k]) for k in body)  # the body was fine-tuned
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("global_branch."))  # tone map fixed
    task = wf.parser.get_parsed_content("task_network")
    assert not any(p.requires_grad for p in task.parameters())  # the task network stays frozen
    con = sqlite3.connect(tmp_path / "out" / "mlruns.db")
    keys = {k for (k,) in con.execute("select distinct key from metrics")}
    params = dict(con.execute("select key, value from params"))
    con.close()
    assert {"loss", "enhancement_loss", "task_loss", "task_loss_clean", "cosine", "promoted"} <= keys
    assert params["task_mode"] == "gradprom" and params["task"] == "tumour_segmentation"
    from benchmarks.tumour import fine_tune_curves  # what the tumour benchmark records of each fine-tune

    curves = fine_tune_curves(tmp_path / "out", epoch_length=2)
    assert len(curves["task_loss"]) == 1 and 0.0 <= curves["promoted"][0] <= 1.0
    assert fine_tune_curves(tmp_path / "nothing", 2) == {}
