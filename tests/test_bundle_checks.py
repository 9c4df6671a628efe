"""The bundle passes MONAI's own workflow checks, and its files follow the model zoo's conventions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow
from PIL import Image

from dpe_monai.engines.file_enhancement import FailedFilesError
from dpe_monai.networks import DPENet
from tests.bundle_utils import BUNDLE, make_tiny_collection, tiny_train_overrides

CONFIGS = BUNDLE / "configs"
SMALL = {"_target_": "dpe_monai.networks.DPENet", "channels": [8, 12, 16]}


def _workflow(config: str, workflow_type: str, **overrides) -> ConfigWorkflow:
    return ConfigWorkflow(
        config_file=str(CONFIGS / config),
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=False,
        workflow_type=workflow_type,
        **overrides,
    )


def _checkpoint(path):
    torch.manual_seed(0)
    torch.save({"model": DPENet(channels=(8, 12, 16)).state_dict()}, path)
    return str(path)


def _images(folder):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.arange(20 * 24, dtype=np.uint8).reshape(20, 24)).save(folder / "a.png")
    return folder


def test_inference_workflow_passes_checks(tmp_path):
    wf = _workflow(
        "inference.json",
        "infer",
        bundle_root=str(BUNDLE),
        dataset_dir=str(_images(tmp_path / "in")),
        output_dir=str(tmp_path / "out"),
        checkpoint=_checkpoint(tmp_path / "model.pt"),
        network_def=SMALL,
    )
    wf.initialize()
    assert wf.check_properties() == []
    assert len(wf.dataset) == 1


def test_train_workflow_passes_checks(tmp_path):
    datalist = make_tiny_collection(tmp_path / "data", n_train=2, n_val=1, size=32)
    wf = _workflow("train.json", "train", **tiny_train_overrides(tmp_path, datalist, max_epochs=1))
    wf.initialize()
    assert wf.check_properties() == []
    handlers = wf.parser.get_parsed_content("train#handlers")
    assert "ValidationHandler" in {type(h).__name__ for h in handlers} and None not in handlers


def test_evaluate_workflow_passes_checks(tmp_path):
    datalist = make_tiny_collection(tmp_path / "data", n_train=1, n_val=1, size=32)
    wf = _workflow(
        "evaluate.json",
        "eval",
        bundle_root=str(BUNDLE),
        datalist=str(datalist),
        output_dir=str(tmp_path / "out"),
        checkpoint=_checkpoint(tmp_path / "model.pt"),
        network_def=SMALL,
    )
    wf.initialize()
    assert wf.check_properties() == []


@pytest.mark.parametrize("dataset_dir", [None, "does/not/exist"])
def test_inference_needs_an_existing_dataset_dir(tmp_path, dataset_dir):
    overrides = {} if dataset_dir is None else {"dataset_dir": str(tmp_path / dataset_dir)}
    wf = _workflow("inference.json", "infer", bundle_root=str(BUNDLE), output_dir=str(tmp_path / "out"), **overrides)
    wf.initialize()
    with pytest.raises(Exception, match="dataset_dir"):
        wf.run()


def test_inference_raises_naming_failed_files(tmp_path):
    src = _images(tmp_path / "in")
    (src / "broken.png").write_bytes(b"not a png")
    wf = _workflow(
        "inference.json",
        "infer",
        bundle_root=str(BUNDLE),
        dataset_dir=str(src),
        output_dir=str(tmp_path / "out"),
        checkpoint=_checkpoint(tmp_path / "model.pt"),
        network_def=SMALL,
        tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}",
    )
    wf.initialize()
    with pytest.raises(RuntimeError) as info:  # MONAI wraps the error of a config expression
        wf.run()
    error = info.value if isinstance(info.value, FailedFilesError) else info.value.__cause__
    assert isinstance(error, FailedFilesError) and "broken.png" in str(error) and "a.png" not in str(error)
    assert (tmp_path / "out" / "a_dpe.png").is_file()  # the good file was still enhanced
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(summary["done"]) == 1 and len(summary["failed"]) == 1


def test_bundle_files_follow_the_conventions():
    files = [p for p in BUNDLE.rglob("*") if p.is_file() and "outputs" not in p.relative_to(BUNDLE).parts]
    for path in files:
        if path.suffix == ".json":
            text = path.read_text()
            assert text.endswith("\n") and "NaN" not in text, path
            assert text == json.dumps(json.loads(text), indent=4, ensure_ascii=False) + "\n", (
                f"{path}: not 4-space formatted"
            )
        if path.suffix in (".json", ".md", ".py", ".txt"):
            assert not re.search(r"(/work/|/home/\w|/root/|/Users/)", path.read_text()), f"{path}: machine path"
    assert not (BUNDLE / "docs" / "training_config").exists()


def test_bundle_inference_passes_the_contract_flag_like_the_cli(tmp_path):
    """inference.json (shipped network and weights) enhances a 16-bit scan exactly as the CLI's path does: the
    intensity contract's ``relative`` flag reaches the network, so the scan takes its relative-image path."""
    from dpe_monai.inference import Enhancer, enhance_native
    from dpe_monai.io import discover, read_image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:72, 0:80]
    scan = 900 + 300 * np.sin(xx / 9.0) * np.cos(yy / 11.0) + rng.normal(0, 60, (72, 80))  # a noisy 16-bit slice
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.clip(scan, 0, 65535).astype(np.uint16)).save(src / "scan.png")
    wf = _workflow(
        "inference.json",
        "infer",
        bundle_root=str(BUNDLE),
        dataset_dir=str(src),
        output_dir=str(tmp_path / "out"),
        tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}",
        precision="fp32",
    )
    wf.initialize()
    wf.run()
    jobs, _ = discover([tmp_path / "out" / "scan_dpe.png"])
    bundle_out = read_image(jobs[0].paths, jobs[0].kind).array
    jobs, _ = discover([src / "scan.png"])
    image = read_image(jobs[0].paths, jobs[0].kind)
    cli_out = enhance_native(image, Enhancer.from_bundle(BUNDLE, device="cpu", precision="fp32"))
    assert np.abs(bundle_out.astype(np.float64) - np.round(cli_out)).max() <= 1
    assert np.std(np.diff(bundle_out.astype(np.float64), axis=-1)) < np.std(np.diff(image.array, axis=-1))  # denoised


def test_inference_and_evaluate_build_the_same_network():
    """The checkpoint's keys cannot tell a refiner's ``channels`` mode (or the NLM strength) apart: the two configs
    that load ``models/model.pt`` must declare the same network."""
    defs = [
        json.loads((BUNDLE / "configs" / f).read_text())["network_def"] for f in ("inference.json", "evaluate.json")
    ]
    assert defs[0] == defs[1]


@pytest.mark.parametrize("config", ["train.json", "task_driven.json"])
def test_training_never_writes_into_the_shipped_models_folder(config):
    """A documented training run from the bundle folder once replaced the shipped ``models/model.pt`` by a network
    that inference could not load; checkpoints go under the run's ``output_dir``."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / config))
    parser["bundle_root"] = "/bundle"
    ckpt, out = Path(parser.get_parsed_content("ckpt_dir")), Path(parser.get_parsed_content("output_dir"))
    assert ckpt != Path("/bundle/models") and out in ckpt.parents, (ckpt, out)


def test_a_task_driven_checkpoint_loads_into_inference_with_the_documented_overrides():
    """The bundle docs' command for a task-driven fine-tune (``inference.json --network_def#prefilter None
    --network_def#scan_refiner False --network_def#clean_gate False --network_def#colour_restore body``) builds
    exactly the network that
    ``task_driven.json`` trains (it once missed the clean gate's keys)."""
    from monai.bundle import ConfigParser

    trained = ConfigParser()
    trained.read_config(str(CONFIGS / "task_driven.json"))
    state = trained.get_parsed_content("network_def", instantiate=True).state_dict()
    infer = ConfigParser()
    infer.read_config(str(CONFIGS / "inference.json"))
    for key, value in (("prefilter", None), ("scan_refiner", False), ("clean_gate", False), ("colour_restore", "body")):
        infer[f"network_def#{key}"] = value
    infer.get_parsed_content("network_def", instantiate=True).load_state_dict(state, strict=True)


def test_too_few_training_or_validation_items_are_named(tmp_path, caplog):
    """A folder with fewer training images than one batch trained nothing and exited 0 with MONAI's generic "dataloader
    is empty"; an empty validation split was skipped silently, and crashed under torchrun inside DistributedSampler
    (a user audit). Each now gets one line naming the split, its size and what it needs."""
    import logging

    from monai.bundle import ConfigParser

    from dpe_monai.data import enough_items

    datalist = make_tiny_collection(tmp_path / "data", n_train=3, n_val=0)
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser.update(tiny_train_overrides(tmp_path, datalist, batch_size=8))
    with pytest.raises(RuntimeError) as raised:  # MONAI's config error, caused by ours
        parser.get_parsed_content("train#datalist")
    cause = raised.value.__cause__
    assert isinstance(cause, ValueError)
    assert "the training split has 3 item(s); one step needs 8 (batch_size 8 x 1 process(es))" in str(cause)
    with caplog.at_level(logging.WARNING):
        assert parser.get_parsed_content("validate#datalist") == []
    assert "the validation split has 0 item(s)" in caplog.text and "running without validation" in caplog.text
    with pytest.raises(ValueError, match=r"validation split has 1 item\(s\); one step needs 2 \(batch_size 1 x 2"):
        enough_items([{}], "validation", 1, ranks=2)
    assert enough_items([{}, {}], "training", 2) == [{}, {}]


def test_the_luminance_gate_says_what_it_left_out(tmp_path, caplog):
    """Dark training images were dropped at the luminance gate without a word; with all of them gone the run failed
    with "num_samples should be a positive integer value, but got num_samples=0"."""
    import logging

    from dpe_monai.data import degradable_items

    items = []
    for i, level in enumerate((20, 40, 200)):
        Image.fromarray(np.full((16, 16), level, np.uint8)).save(tmp_path / f"{i}.png")
        items.append({"image": str(tmp_path / f"{i}.png")})
    with caplog.at_level(logging.WARNING):
        kept = degradable_items(items)
    assert [k["image"] for k in kept] == [items[2]["image"]]
    assert "luminance gate: 2 of 3 images have mean L8 <= 100" in caplog.text
