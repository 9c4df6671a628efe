"""The bundle's train.json through MONAI's ConfigWorkflow: train, MLflow tracking, kill-and-resume."""

from __future__ import annotations

import sqlite3

import torch
from monai.bundle import ConfigWorkflow

from tests.bundle_utils import BUNDLE, make_tiny_collection, tiny_train_overrides


def _workflow(tmp_path, **overrides) -> ConfigWorkflow:
    datalist = make_tiny_collection(tmp_path / "data")
    settings = tiny_train_overrides(tmp_path, datalist, max_epochs=2, epoch_length=2, ema_decay=0.9, run_name="ci_run")
    settings.update(overrides)
    wf = ConfigWorkflow(config_file=str(BUNDLE / "configs" / "train.json"), workflow_type="train", **settings)
    wf.initialize()
    return wf


def test_train_tracks_and_resumes(tmp_path):
    wf = _workflow(tmp_path, use_discriminator=True, lambda_rfl=0.05)  # the paper's full GAN recipe, tiny
    wf.run()
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 2 and trainer.state.iteration == 4
    models = tmp_path / "models"
    assert (models / "model.pt").is_file() and (models / "latest.pt").is_file()
    ckpt = torch.load(models / "latest.pt", weights_only=True)
    assert ckpt["trainer"]["iteration"] == 4 and ckpt["trainer"]["max_epochs"] == 2
    assert {"network", "discriminator", "g_optimizer", "d_optimizer", "ema_network"} <= set(ckpt)
    wf.finalize()

    # MLflow (SQLite) holds per-iteration losses, per-epoch validation metrics, params and artifacts
    db = tmp_path / "out" / "mlruns.db"
    con = sqlite3.connect(db)
    keys = {k for (k,) in con.execute("select distinct key from metrics")}
    params = {k for (k,) in con.execute("select key from params")}
    con.close()
    assert {"g_loss", "d_loss", "val_psnr", "val_ssim", "val_delta_e"} <= keys
    assert {"learning_rate", "lambda_adv", "feature_backbone"} <= params
    artifacts = {p.name for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert "train.json" in artifacts and "command.txt" in artifacts and "model.pt" in artifacts
    assert any(name.startswith("grid_epoch_") for name in artifacts)

    # resume: a run with max_epochs=3 continues from epoch 2 and only trains the missing epoch
    wf2 = _workflow(tmp_path, use_discriminator=True, lambda_rfl=0.05, resume=True, max_epochs=3, run_name="ci_resume")
    wf2.run()
    trainer2 = wf2.parser.get_parsed_content("train#trainer")
    assert trainer2.state.epoch == 3 and trainer2.state.iteration == 6
    wf2.finalize()


def test_train_from_a_user_folder(tmp_path):
    """`dataset_dir` may be a plain folder of the user's images: a datalist is built beside it, the folder untouched."""
    from tests.io_fixtures import write_formats

    folder = tmp_path / "my_images"
    write_formats(folder)
    before = sorted(p.name for p in folder.rglob("*"))
    wf = ConfigWorkflow(
        config_file=str(BUNDLE / "configs" / "train.json"),
        workflow_type="train",
        bundle_root=str(BUNDLE),
        dataset_dir=str(folder),
        output_dir=str(tmp_path / "out"),
        ckpt_dir=str(tmp_path / "models"),
        max_epochs=1,
        epoch_length=1,
        batch_size=2,
        patch_size=32,
        val_crop=32,
        num_workers=0,
        feature_backbone="random",
        use_discriminator=False,
        network_def={"_target_": "dpe_monai.networks.GlobalLocalNet", "channels": [8, 12, 16]},
        run_name="user_folder",
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    assert (tmp_path / "my_images_dpe_collection" / "datalist.json").is_file()
    assert sorted(p.name for p in folder.rglob("*")) == before
    assert (tmp_path / "models" / "model.pt").is_file()
