"""The bundle's checkpoint report runs evaluate.json (the quality engine) and writes standard, NaN-free files."""

from __future__ import annotations

import importlib.util
import json

from tests.bundle_utils import BUNDLE, make_tiny_collection


def _report():
    spec = importlib.util.spec_from_file_location("checkpoint_report", BUNDLE / "scripts" / "checkpoint_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_on_a_tiny_collection(tmp_path, monkeypatch):
    report = _report()
    docs = tmp_path / "docs"
    docs.mkdir()
    monkeypatch.setattr(report, "DOCS", docs)
    datalist = make_tiny_collection(tmp_path / "data", n_train=1, n_val=2, size=40)
    lists = json.loads(datalist.read_text())
    for i, item in enumerate(lists["test"]):
        item["modality_group"] = ("radiology", "microscopy")[i % 2]
    datalist.write_text(json.dumps(lists))
    assert report.main(["--dataset-dir", str(tmp_path / "data"), "--work-dir", str(tmp_path / "work")]) == 0
    text = (docs / "test_metrics.json").read_text()
    assert "NaN" not in text and text.endswith("\n")
    saved = json.loads(text)
    assert set(saved["summary"]) == {"identity", "clahe", "dpe"}
    md = (docs / "test_metrics.md").read_text()
    assert "| radiology |" in md and "DPE (shipped)" in md and "mean of group means: DPE" in md


def test_training_table_marks_the_discriminator():
    report = _report()
    rows = [{"run": "r1", "metric": "g_loss", "step": s, "value": 1.0} for s in (1, 2, 3)]
    rows.append({"run": "r1", "metric": "val_psnr", "step": 1, "value": 20.0})
    runs = [{"run_name": "r1", "params": {"batch_size": "8", "patch_size": "128"}, "final_metrics": {"val_psnr": 20.0}}]
    table = report.training_markdown(rows, runs)
    assert "| r1 | 1-3 | 1 | 8 | 128 | None | off | 20.00 / - |" in table
