"""Tumour-task scoring: bootstrap intervals, paired recovery and the report section, on synthetic records."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpe_monai.evaluators.bootstrap import bootstrap_ci, mean_of
from dpe_monai.evaluators.tumour import summarise_tumour

INPUTS = ("degraded", "stretch_nlm", "dpe", "dpe_gradprom", "clean")


def _records(n: int = 12) -> list[dict]:
    """Dice: degraded 0.2, clean 0.8, stretch 0.5, dpe 0.6, gradprom 0.7 (+ noise); detections: the true box scored
    high on clean/gradprom, a wrong box on degraded."""
    rng = np.random.default_rng(0)
    base = {"degraded": 0.2, "stretch_nlm": 0.5, "dpe": 0.6, "dpe_gradprom": 0.7, "clean": 0.8}
    recs = []
    for i in range(n):
        box = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
        hit = {"box": box, "label": torch.zeros(1, dtype=torch.long), "label_scores": torch.tensor([0.9])}
        miss = {"box": box + 100, "label": torch.zeros(1, dtype=torch.long), "label_scores": torch.tensor([0.9])}
        recs.append(
            {
                "id": f"s{i}",
                "patient": "p1" if i < n // 2 else "p2",
                "dice": {k: float(np.clip(v + rng.normal(0, 0.05), 0, 1)) for k, v in base.items()},
                "detections": {k: hit if k in ("clean", "dpe_gradprom") or i % 2 else miss for k in INPUTS},
                "target": {"box": box, "label": torch.zeros(1, dtype=torch.long)},
                **{q: {k: 20.0 + j for j, k in enumerate(INPUTS)} for q in ("psnr", "ssim", "delta_e")},
            }
        )
    return recs


def test_bootstrap_interval_brackets_the_mean() -> None:
    values = np.random.default_rng(1).normal(0.5, 0.1, 40)
    ci = bootstrap_ci(mean_of(values), len(values), 500, seed=0)
    assert ci["low"] < ci["value"] < ci["high"] and ci["value"] == pytest.approx(values.mean())
    assert ci["high"] - ci["low"] < 0.1
    assert bootstrap_ci(mean_of(values), len(values), 500, seed=0) == ci  # seeded


def test_summary_recovery_and_intervals() -> None:
    s = summarise_tumour(_records(), n_boot=200, n_boot_map=50)
    assert s["n_slices"] == 12 and s["patients"] == {"p1": 6, "p2": 6}
    rec = s["recovery"]
    assert set(rec) == {"stretch_nlm", "dpe", "dpe_gradprom"}
    assert rec["dpe_gradprom"]["dice"]["value"] == pytest.approx(5 / 6, abs=0.1)
    assert rec["stretch_nlm"]["dice"]["value"] < rec["dpe"]["dice"]["value"] < rec["dpe_gradprom"]["dice"]["value"]
    for k in rec:
        assert rec[k]["dice"]["low"] <= rec[k]["dice"]["value"] <= rec[k]["dice"]["high"]
    ap = {k: v["mAP_50"]["value"] for k, v in s["inputs"].items()}
    assert ap["clean"] == pytest.approx(1.0) and ap["dpe_gradprom"] == pytest.approx(1.0)
    assert ap["degraded"] < 0.7
    assert rec["dpe_gradprom"]["mAP_50"]["value"] == pytest.approx(1.0)
    assert s["inputs"]["dpe"]["psnr"] == pytest.approx(22.0)


def test_report_section_renders() -> None:
    from benchmarks.report import fmt
    from benchmarks.report_tumour import tumour_section, tumour_verdict
    from dpe_monai.markdown import markdown_table

    summary = summarise_tumour(_records(), n_boot=50, n_boot_map=20)
    r = {
        "command": "python -m benchmarks.downstream --tasks tumour",
        "caveat": "synthetic",
        "protocol": {"x": "y"},
        "settings": {"paper": "Algorithm 1"},
        "pooled": {"paper": summary},
        "folds": {"0": {"test_patients": ["p1", "p2"], "paper": summary, "task_driven": {"dpe_gradprom": {}}}},
        "methods": {"oracle": {"function": "dpe_monai.baselines.OracleEnhancer (an earlier definition)"}},
    }
    curves = {"task_loss": [0.6, 0.5], "enhancement_loss": [0.02, 0.01], "cosine": [-0.1, 0.2], "promoted": [0.4, 0.6]}
    r["folds"]["0"]["task_driven"]["dpe_gradprom"]["training"] = curves
    ctx = {"fmt": fmt, "table": markdown_table, "labels": {}}
    text = "\n".join(tumour_section(r, ctx))
    assert "12 tumour slices of 2 patients" in text and "recovery (Dice)" in text
    assert "fold 0, dpe_gradprom: task loss 0.600 -> 0.500" in text and "promoted share 0.40 to 0.60" in text
    assert "scored by an earlier definition of the ceiling" in text
    verdict = tumour_verdict(r, ctx)
    assert any("task-driven wins" in line for line in verdict)
    assert "(not evidence: the degradation costs" not in text
    summary["inputs"]["degraded"]["dice"]["value"] = summary["inputs"]["clean"]["dice"]["value"] - 0.04
    text = "\n".join(tumour_section(r, ctx))  # the per-fold best classical pick says it is no evidence either
    assert "(not evidence: the degradation costs 0.040 Dice)" in text


def test_paired_difference_against_the_best_baseline() -> None:
    """The best baseline is chosen by point recovery; a clearly better input's paired interval excludes 0, and the
    report labels it."""
    from benchmarks.report import fmt
    from benchmarks.report_tumour import _versus_best
    from dpe_monai.markdown import markdown_table

    s = summarise_tumour(_records(24), n_boot=200, n_boot_map=20, baselines=("stretch_nlm",))
    vs = s["versus_best"]["dice"]
    assert vs["best"] == "stretch_nlm" and set(vs["difference"]) == {"dpe", "dpe_gradprom"}
    d = vs["difference"]["dpe_gradprom"]
    want = s["recovery"]["dpe_gradprom"]["dice"]["value"] - s["recovery"]["stretch_nlm"]["dice"]["value"]
    assert d["value"] == pytest.approx(want) and 0 < d["low"] <= d["value"] <= d["high"]
    assert "versus_best" not in summarise_tumour(_records(), n_boot=20, n_boot_map=5)  # no baselines: no table
    text = "\n".join(_versus_best(s, {"fmt": fmt, "table": markdown_table, "labels": {}}))
    assert "recovery minus stretch_nlm (Dice)" in text and "(wins)" in text
    # a degradation that costs the task model (almost) nothing: recovery divides by that cost, so no verdict
    s["inputs"]["degraded"]["dice"]["value"] = s["inputs"]["clean"]["dice"]["value"] + 0.02
    text = "\n".join(_versus_best(s, {"fmt": fmt, "table": markdown_table, "labels": {}}))
    assert text.count("(not evidence)") == 2  # the Dice column of both rows; AP keeps its verdicts


def test_fine_tune_is_kept_only_for_the_task_unet_it_was_trained_against(tmp_path) -> None:
    from benchmarks.tumour import match_task_segmenter

    out = tmp_path / "gradprom_fold0"
    (out / "models").mkdir(parents=True)
    (out / "models" / "model.pt").write_bytes(b"from before the stamp")
    match_task_segmenter(out, "a")  # no stamp: unknown U-Net, so the run starts over
    assert not (out / "models").exists() and (out / "task_segmenter.key").read_text().strip() == "a"
    (out / "models").mkdir()
    (out / "models" / "model.pt").write_bytes(b"trained against a")
    match_task_segmenter(out, "a")  # same U-Net: kept (finished or resumable)
    assert (out / "models" / "model.pt").read_bytes() == b"trained against a"
    match_task_segmenter(out, "b")  # the U-Net was retrained
    assert not (out / "models").exists() and (out / "task_segmenter.key").read_text().strip() == "b"
