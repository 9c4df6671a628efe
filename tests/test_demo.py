"""Smoke test of the demo (``make demo``) on a tiny collection with the shipped checkpoint."""

from __future__ import annotations

import json
import sqlite3

from dpe_monai.demo import BUNDLE, METHODS, run_demo
from tests.bundle_utils import make_tiny_collection


def test_demo_writes_metrics_grid_and_mlflow(tmp_path):
    datalist = make_tiny_collection(tmp_path / "data", n_train=1, n_val=3, size=40)
    lists = json.loads(datalist.read_text())
    for i, item in enumerate(lists["test"]):
        item["modality_group"] = "radiology" if i % 2 else "dermatology"
    datalist.write_text(json.dumps(lists))

    result = run_demo(tmp_path / "out", tmp_path / "data", BUNDLE / "models" / "model.pt", seed=0)

    paths = result["paths"]
    for key in ("grid", "metrics", "metrics_json", "mlflow"):
        assert paths[key].is_file(), key
    assert len(list(paths["enhanced"].rglob("*_dpe.png"))) == 3
    summary = result["summary"]
    assert set(summary) == set(METHODS) and {"dermatology", "radiology", "pooled", "average"} <= set(summary["dpe"])
    table = paths["metrics"].read_text()
    assert "| radiology |" in table and "mean of group means" in table
    assert "DPE against the best simple method" in table and "oracle (unreachable)" in table
    saved = json.loads(paths["metrics_json"].read_text())
    assert len(saved["per_image"]) == 3 and saved["summary"]["dpe"]["pooled"]["psnr"]["n"] == 3
    run = saved["run"]  # where and how long it ran, so the README's figures name their machine
    assert set(run["seconds"]) == {"collection", "degrade", "enhance", "score"} and run["bundle_version"]
    assert f"Run: bundle {run['bundle_version']} on " in table and "logical CPUs" in table
    con = sqlite3.connect(paths["mlflow"])
    keys = {k for (k,) in con.execute("select distinct key from metrics")}
    con.close()
    assert "pooled_dpe_psnr" in keys and "average_clahe_delta_e" in keys and "pooled_oracle_psnr" in keys


def test_demo_scores_a_16_bit_scan_through_the_window_the_enhancer_used(tmp_path):
    """A 16-bit scan keeps its own units in the enhanced file (the contract), so the demo must read that file through
    the window the enhancer used; read through the container range (0..65535) the enhanced scan looked as dark as
    the degraded one and DPE scored what the degraded image scored."""
    datalist = make_tiny_collection(tmp_path / "data", n_train=1, n_val=2, size=40)
    lists = json.loads(datalist.read_text())
    lists["test"] = lists["test"][1:]  # the 16-bit grey item
    lists["test"][0]["modality_group"] = "radiology"
    datalist.write_text(json.dumps(lists))

    result = run_demo(tmp_path / "out", tmp_path / "data", BUNDLE / "models" / "model.pt", seed=0)

    (row,) = json.loads(result["paths"]["metrics_json"].read_text())["per_image"]
    psnr = {m: v["psnr"] for m, v in row["metrics"].items()}
    assert psnr["dpe"] > psnr["degraded"] + 6, psnr
    assert psnr["dpe"] > psnr["clahe"], psnr
