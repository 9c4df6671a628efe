"""inference.json and evaluate.json through MONAI's ConfigWorkflow."""

from __future__ import annotations

import json
import sqlite3

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow
from PIL import Image

from dpe_monai.networks import DPENet
from tests.bundle_utils import BUNDLE, make_tiny_collection
from tests.io_fixtures import smooth

SMALL = {"_target_": "dpe_monai.networks.DPENet", "channels": [8, 12, 16]}


def _checkpoint(path):
    torch.manual_seed(0)
    torch.save({"model": DPENet(channels=(8, 12, 16)).state_dict()}, path)
    return path


def test_inference_keeps_format_bit_depth_and_geometry(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray((smooth((70, 90)) * 50000).astype(np.uint16)).save(src / "xray16.png")
    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    affine[:3, 3] = [5, -7, 11]
    nib.save(nib.Nifti1Image((smooth((40, 36, 4)) * 900).astype(np.int16), affine), src / "brain.nii.gz")
    out = tmp_path / "out"
    wf = ConfigWorkflow(
        config_file=str(BUNDLE / "configs" / "inference.json"),
        workflow_type="infer",
        bundle_root=str(BUNDLE),
        dataset_dir=str(src),
        output_dir=str(out),
        checkpoint=str(_checkpoint(tmp_path / "model.pt")),
        network_def=SMALL,
        tile_size=64,
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    png = Image.open(out / "xray16_dpe.png")
    assert png.mode.startswith("I;16") and png.size == (90, 70)
    nii_in, nii_out = nib.load(src / "brain.nii.gz"), nib.load(out / "brain_dpe.nii.gz")
    assert np.array_equal(nii_in.affine, nii_out.affine) and nii_out.shape == nii_in.shape
    assert nii_out.get_data_dtype() == np.int16
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["done"]) == 2 and not summary["failed"]
    con = sqlite3.connect(out / "mlruns.db")
    assert ("n_done", 2.0) in set(con.execute("select key, value from metrics"))
    con.close()


def test_inference_refuses_to_write_into_its_input_folder(tmp_path):
    """``output_dir == dataset_dir`` is refused by name before anything (results, MLflow store) is written there."""
    from dpe_monai.engines.file_enhancement import EnhanceFileDataset

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray((smooth((40, 48)) * 255).astype(np.uint8)).save(src / "a.png")
    with pytest.raises(ValueError, match="is the input folder"):
        EnhanceFileDataset(str(src), str(src / "."))
    assert sorted(p.name for p in src.iterdir()) == ["a.png"]


def test_evaluate_scores_methods(tmp_path):
    datalist = make_tiny_collection(tmp_path / "data")
    results = {}
    for method in ("identity", "clahe", "dpe"):
        out = tmp_path / f"eval_{method}"
        wf = ConfigWorkflow(
            config_file=str(BUNDLE / "configs" / "evaluate.json"),
            workflow_type="eval",
            bundle_root=str(BUNDLE),
            datalist=str(datalist),
            output_dir=str(out),
            method=method,
            checkpoint=str(_checkpoint(tmp_path / "model.pt")),
            network_def=SMALL,
        )
        wf.initialize()
        wf.run()
        evaluator = wf.parser.get_parsed_content("evaluator")
        assert set(evaluator.state.metrics) == {"psnr"}
        wf.finalize()
        quality = json.loads((out / "quality.json").read_text())
        assert quality["method"] == method and (out / "quality.md").is_file()
        results[method] = quality["summary"][method]["pooled"]
        assert len(quality["per_image"]) + len(quality["skipped"]) == 2
        # the run's artifacts are its results, not a copy of the open tracking database (it was, growing each run)
        logged = sorted(p.name for p in (out / "mlruns").rglob("*") if p.is_file())
        assert logged == ["quality.json", "quality.md"], logged
    for metrics in results.values():
        assert set(metrics) == {"psnr", "ssim", "delta_e"}
        assert all(np.isfinite(v["mean"]) for v in metrics.values())
    assert results["identity"]["psnr"] != results["clahe"]["psnr"]


@pytest.mark.parametrize("method", ["clahe", "dpe"])
def test_evaluate_json_and_quality_engine_score_the_same_pairs(tmp_path, method):
    """evaluate.json and :func:`paired_set` + :func:`score_enhancers` are one protocol: same numbers per item (for
    the shipped network too, whose 16-bit items take the scan path only if the contract's flag reaches it)."""
    from dpe_monai.evaluators import load_datalist, paired_set, score_enhancers
    from dpe_monai.evaluators.quality import QualityScorer
    from dpe_monai.inference import Enhancer

    datalist = make_tiny_collection(tmp_path / "data")
    out = tmp_path / "eval"
    wf = ConfigWorkflow(
        config_file=str(BUNDLE / "configs" / "evaluate.json"),
        workflow_type="eval",
        bundle_root=str(BUNDLE),
        datalist=str(datalist),
        output_dir=str(out),
        method=method,
        seed=3,
        precision="fp32",
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    bundle = {r["id"]: r["metrics"][method] for r in json.loads((out / "quality.json").read_text())["per_image"]}
    from dpe_monai.baselines import ClassicalEnhancer

    pairs, _ = paired_set(load_datalist(str(datalist), "test"), seed=3)
    assert any(p["relative"] for p in pairs)  # a 16-bit item: the flag matters
    fn = ClassicalEnhancer("clahe") if method == "clahe" else Enhancer.from_bundle(BUNDLE, precision="fp32")
    engine = score_enhancers(pairs, {method: fn}, QualityScorer(None))
    direct = {r["id"]: r["metrics"][method] for r in engine["per_image"]}
    assert set(bundle) == set(direct) and bundle
    for ident, metrics in direct.items():
        for name, value in metrics.items():
            assert abs(bundle[ident][name] - value) < 1e-4, (ident, name)


def test_evaluate_says_why_it_has_nothing_to_score(tmp_path):
    """A user folder of three volumes had no test subject: MONAI raised ``IndexError``; with ``--split validation``
    every (black-background) slice failed the luminance gate and the run exited 0 without a result. Each is now one
    line naming the cause and the override, and ``brightness_threshold 0`` scores the dark images."""
    datalist = make_tiny_collection(tmp_path / "data")
    lists = json.loads(datalist.read_text())
    dark = tmp_path / "data" / "dark.png"
    Image.fromarray((smooth((48, 48), 1) * 60).astype(np.uint8)).save(dark)
    lists.update(test=[], validation=[{"image": "dark.png", "subject": "d"}])
    datalist.write_text(json.dumps(lists))

    def run(split, **extra):
        out = tmp_path / f"eval_{split}_{len(extra)}"
        wf = ConfigWorkflow(
            config_file=str(BUNDLE / "configs" / "evaluate.json"),
            workflow_type="eval",
            bundle_root=str(BUNDLE),
            datalist=str(datalist),
            output_dir=str(out),
            method="identity",
            split=split,
            **extra,
        )
        wf.initialize()
        wf.run()
        wf.finalize()
        return json.loads((out / "quality.json").read_text())

    def cause(err):
        while err.__cause__ is not None:
            err = err.__cause__
        return str(err)

    with pytest.raises(Exception) as empty:
        run("test")
    assert "the 'test' split is empty (training 4, validation 1, test 0)" in cause(empty.value)
    with pytest.raises(Exception) as gated:
        run("validation")
    assert "none of the 1 images passes the luminance gate (mean L8 > 100)" in cause(gated.value)
    assert len(run("validation", brightness_threshold=0)["per_image"]) == 1
