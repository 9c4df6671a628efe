"""Every benchmark script end to end on a tiny configuration (so they cannot rot), then the report from their JSON.

Results go to a temporary folder, never to benchmarks/results (tiny numbers are not results).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.networks.nets import BasicUNet

from benchmarks import ablation, downstream, passthrough, quality, report, route_census, speed
from benchmarks.common import BUNDLE, parse_network
from dpe_monai.networks import DPENet
from dpe_monai.networks.residual_wrapper import GlobalResidualNet
from tests.bundle_utils import make_tiny_collection

CI_SPEED = ("fp32", "channels_last", "bf16", "compile", "torchscript", "onnxruntime", "enhancer")  # not compile_bf16
TINY_DPE = {"_target_": "dpe_monai.networks.DPENet", "channels": [8, 12, 16]}
TINY_UNET = {
    "_target_": "dpe_monai.networks.residual_wrapper.GlobalResidualNet",
    "network": {
        "_target_": "BasicUNet",
        "spatial_dims": 2,
        "in_channels": 3,
        "out_channels": 3,
        "features": [4, 4, 8, 8, 16, 4],
    },
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    torch.save({"model": DPENet(channels=(8, 12, 16)).state_dict()}, root / "dpe.pt")
    unet = GlobalResidualNet(BasicUNet(2, 3, 3, features=(4, 4, 8, 8, 16, 4)))
    torch.save({"model": unet.state_dict()}, root / "unet.pt")
    nets = [
        "--dpe_checkpoint",
        str(root / "dpe.pt"),
        "--dpe_network",
        json.dumps(TINY_DPE),
        "--basicunet_checkpoint",
        str(root / "unet.pt"),
        "--basicunet_network",
        json.dumps(TINY_UNET),
    ]
    return {
        "root": root,
        "datalist": str(make_tiny_collection(root / "data")),
        "results": root / "results",
        "figures": root / "figures",
        "nets": nets,
    }


def test_route_census(env):
    """The tiny collection's 16-bit grey images are scans, its 8-bit colour ones take the learned path, under both
    greyness rules."""
    out = route_census.main(["--datalist", env["datalist"], "--output", str(env["results"] / "route.json")])
    assert out["counts"] == {
        "training/all/learned": 2, "training/all/scan": 2, "validation/all/learned": 1, "validation/all/scan": 1,
        "test/all/learned": 1, "test/all/scan": 1,
    }  # fmt: skip
    assert out["moved_by_near_grey"] == [] and (env["results"] / "route.json").exists()
    # a grey scan stored in colour with 1-level channel noise: a scan only under the near-grey rule
    from PIL import Image

    rng = np.random.default_rng(0)
    grey = (rng.random((32, 40)) * 200).astype(int)
    noisy = np.clip(grey[..., None] + rng.integers(-1, 2, (32, 40, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(env["root"] / "near_grey.png")
    (env["root"] / "near.json").write_text(json.dumps({"test": [{"image": "near_grey.png"}]}))
    out = route_census.main(
        [
            "--datalist",
            str(env["root"] / "near.json"),
            "--splits",
            "test",
            "--output",
            str(env["root"] / "near_out.json"),
        ]
    )
    assert out["counts"] == {"test/all/scan": 1} and [m["id"] for m in out["moved_by_near_grey"]] != []


def test_default_quality_run_leaves_out_an_untrained_basicunet(tmp_path):
    """The BasicUNet baseline is not shipped: a default run on a fresh checkout scores everything else."""
    assert quality.default_methods(str(tmp_path / "missing.pt")) == [m for m in quality.ALL_METHODS if m != "basicunet"]
    (tmp_path / "model.pt").write_bytes(b"x")
    assert quality.default_methods(str(tmp_path / "model.pt")) == list(quality.ALL_METHODS)


def test_quality(env):
    out = quality.main(
        [
            "--datalist",
            env["datalist"],
            "--feature_backbone",
            "random",
            "--limit_per_group",
            "3",
            "--output",
            str(env["results"] / "quality.json"),
            "--figures",
            str(env["figures"]),
            *env["nets"],
        ]
    )
    assert out["n_scored"] == 2 and set(out["summary"]) == {"input", *quality.ALL_METHODS}
    assert out["summary"]["oracle"]["average"]["psnr"] > out["summary"]["input"]["average"]["psnr"]
    assert {"psnr", "ssim", "delta_e", "feature_distance"} <= set(out["summary"]["dpe"]["average"])
    assert out["methods"]["dpe"]["precision"] in ("bf16", "fp32")
    assert (env["figures"] / "quality_grid_all.png").is_file()
    assert json.loads((env["results"] / "quality.json").read_text())["per_image"][0]["metrics"]["lime"]


def test_passthrough(env):
    out = passthrough.main(
        ["--datalist", env["datalist"], "--methods", "dpe", "--output", str(env["results"] / "passthrough.json")]
        + ["--mni_step", "60"]
        + env["nets"][:4]
    )
    rows = out["collection"]["dpe"]["per_image"]
    assert len(rows) == 2 and all(r["psnr"] > 0 for r in rows)
    mni = out["source_scale"]["dpe"]["per_image"]
    assert len(mni) >= 2 and all(r["id"].startswith("mni152_axial") and r["psnr"] > 0 for r in mni)
    assert out["dicoms"]["dpe"] and all(d["inside_own_range"] for d in out["dicoms"]["dpe"])
    for g in out["collection"]["dpe"]["summary"]["groups"].values():
        psnrs = [r["psnr"] for r in rows if r["group"] in out["collection"]["dpe"]["summary"]["groups"]]
        assert 0 <= g["below_bar"] <= g["n"] and g["min"] <= g["median"] <= max(psnrs)


def test_ablation_configs_build_every_variant():
    for variant, path in ablation.CONFIGS.items():
        override = (
            {"network_def#network#features": [4, 4, 8, 8, 16, 4]}
            if variant == "basicunet"
            else {"network_def#channels": [8, 12, 16]}
        )
        net = parse_network([BUNDLE / "configs" / "train.json", path], override)
        assert net(torch.rand(1, 3, 20, 36)).shape == (1, 3, 20, 36)
        if variant in ("base", "residual"):
            assert not any("gate" in n for n, _ in net.named_parameters())


@pytest.mark.parametrize("variant", ["base", "residual", "gates", "feature_loss", "adversarial", "global_local"])
def test_ablation_variant_switches_on_its_table_iv_parts(variant):
    """Each variant's merged config holds exactly the parts its Table IV row names, whatever train.json defaults to
    (the shipped recipe is L1 only: a variant that inherited its loss weights from it would silently drop them)."""
    from monai.bundle import ConfigParser

    from benchmarks.report_sections import ABLATION_FLAGS

    flags = ABLATION_FLAGS[variant][:4]
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / "train.json"), str(ablation.CONFIGS[variant])])
    net = parser["network_def"]
    if variant == "global_local":
        assert net["_target_"].endswith("GlobalLocalNet")  # residual blocks and gated skips in its DPE body
    else:
        assert net["_target_"].endswith("DPENet")
        assert net.get("use_residual", True) == ("R" in flags) and net.get("use_gates", True) == ("G" in flags)
    assert (float(parser["lambda_rfl"]) > 0) == ("F" in flags)
    assert bool(parser["use_discriminator"]) == ("A" in flags) and float(parser["lambda_adv"]) > 0


def test_ablation_trains_and_scores(env):
    argv = [
        "--datalist",
        env["datalist"],
        "--feature_backbone",
        "random",
        "--variants",
        "base",
        "adversarial",
        "--max_epochs",
        "1",
        "--epoch_length",
        "2",
        "--batch_size",
        "2",
        "--patch_size",
        "32",
        "--work_dir",
        str(env["root"] / "ablation"),
        "--output",
        str(env["results"] / "ablation.json"),
        "--set",
        "network_def#channels=[8,12,16]",
        "discriminator_def#channels=[8,8,16,16]",
        'feature_backbone="random"',
        "val_crop=32",
    ]
    out = ablation.main(argv)
    base, adv = out["variants"]["base"], out["variants"]["adversarial"]
    assert base["iterations"] == adv["iterations"] == 2 and out["budget"]["images_per_variant"] == 4
    assert not base["use_discriminator"] and adv["use_discriminator"] and base["lambda_rfl"] == 0.0
    assert base["parameters"] < adv["parameters"] and "psnr" in adv["summary"]["average"] and out["complete"]

    # a killed run: the JSON holds only the first variant; the rerun keeps it and finishes the second
    path = env["results"] / "ablation.json"
    partial = json.loads(path.read_text())
    del partial["variants"]["adversarial"]
    partial["complete"] = False
    path.write_text(json.dumps(partial))
    base_ckpt = Path(base["checkpoint"])
    stamp = base_ckpt.stat().st_mtime_ns
    again = ablation.main(argv)
    assert again["complete"] and again["variants"]["base"] == base and base_ckpt.stat().st_mtime_ns == stamp
    assert again["variants"]["adversarial"]["summary"] == adv["summary"]  # resumed from its final checkpoint

    # a fresh clone has the JSON but no checkpoints: records are kept; a retrained checkpoint drops its record
    base_ckpt.unlink()
    assert ablation.main(argv)["variants"]["base"] == base
    Path(adv["checkpoint"]).write_bytes(b"retrained since")
    redone = ablation.main(argv)["variants"]["adversarial"]  # record dropped: resumed, saved and scored again
    assert redone["train_seconds"] != adv["train_seconds"] and redone["summary"] == adv["summary"]

    # a record whose loss weights differ from what its configs say today (changed since) is trained and scored again
    stale = json.loads(path.read_text())
    stale["variants"]["base"]["lambda_rfl"] = 0.5
    path.write_text(json.dumps(stale))
    assert ablation.main(argv)["variants"]["base"]["train_seconds"] != base["train_seconds"]

    # rerunning one variant keeps the others in the file
    only_base = [*argv[: argv.index("base") + 1], *argv[argv.index("adversarial") + 1 :]]
    assert set(ablation.main(only_base)["variants"]) == {"base", "adversarial"}

    # another protocol (degradation seed) keeps no record: every variant is scored again
    changed = ablation.main([*argv, "--seed", "1"])
    assert changed["variants"]["base"]["summary"] != base["summary"]


def test_speed(env):
    out = speed.main(
        [
            "--sizes",
            "32",
            "--variants",
            *CI_SPEED,
            "--repeats",
            "1",
            "--warmup",
            "1",
            "--peak_size",
            "128",
            "--network",
            json.dumps(TINY_DPE),
            "--checkpoint",
            str(env["root"] / "dpe.pt"),
            "--train_batch",
            "2",
            "--train_patch",
            "32",
            "--train_iterations",
            "2",
            "--train_warmup",
            "1",
            "--train_precisions",
            "auto",
            "--train_overrides",
            json.dumps(
                {
                    "network_def#channels": [8, 12, 16],
                    "feature_backbone": "random",
                    "discriminator_def#channels": [8, 8, 16, 16],
                }
            ),
            "--memory_size",
            "96",
            "--tile_size",
            "64",
            "--work_dir",
            str(env["root"] / "speed"),
            "--output",
            str(env["results"] / "speed.json"),
        ]
    )
    rows = out["latency"]["variants"]
    for variant in CI_SPEED:
        assert "error" not in rows[variant]["32"], rows[variant]["32"]
        assert rows[variant]["32"]["seconds"] > 0
        tol = 2e-2 if variant in speed.BF16_VARIANTS or variant == "enhancer" else 1e-4
        assert rows[variant]["32"]["max_abs_diff_fp32"] < tol
    assert out["peak_gflops"]["matmul_fp32"] > 0 and out["training"][0]["images_per_s"] > 0
    assert out["tiled_memory"]["peak_rss_mb"] > 0, out["tiled_memory"]


def test_downstream(env):
    def run(output: str, *extra: str) -> dict:
        tiny = ["--seg_iterations", "2", "--det_iterations", "2", "--train_step", "12", "--limit_test", "2"]
        work = ["--work_dir", str(env["root"] / "downstream"), "--output", str(env["results"] / output)]
        return downstream.main([*tiny, *work, *extra])

    out = run("downstream.json", "--methods", "clahe", "dpe", *env["nets"][:4])
    assert set(out["tasks"]) == {"segmentation", "nuclei", "lesions"}
    seg = out["tasks"]["segmentation"]
    assert list(seg["inputs"]) == ["degraded", "clahe", "dpe", "clean"] and set(seg["recovery"]) == {"clahe", "dpe"}
    assert out["tasks"]["nuclei"]["n_test"] == 2 and "mAP_50_95" in out["tasks"]["lesions"]["inputs"]["clean"]
    assert seg["train"]["augmentation"] == "none"
    aug = run(
        "downstream_augmented.json", "--tasks", "segmentation", "--task_augmentation", "nnunet", "--methods", "clahe"
    )
    aug_seg = aug["tasks"]["segmentation"]
    assert aug_seg["train"]["augmentation"] == "nnunet" and not aug_seg["train"]["cached"]  # its own task model
    assert "intensity augmentation: nnunet" in aug["protocol"]["task_models"]


def test_report(env):
    if len(list(env["results"].glob("*.json"))) < 4:
        pytest.skip("needs the JSON written by the other tests of this module")
    text = report.main(
        [
            "--results",
            str(env["results"]),
            "--figures",
            str(env["figures"]),
            "--output",
            str(env["root"] / "RESULTS.md"),
        ]
    )
    headings = ("## 1a. Image quality", "## 1b. Image quality", "## 1c. Do no harm", "## 2. Ablation", "## 3. Speed")
    for heading in headings + ("## 4. Downstream", "## 5. Where DPE"):
        assert heading in text
    assert "tiny CI-sized configurations" in text
    assert "### Task models trained with intensity augmentation" in text and "augmentation nnunet" in text
    assert "| input | mean Dice (plain) | recovery (plain) | mean Dice (augmented) |" in text
    for fig in ("quality_psnr.png", "quality_delta_e.png", "speed_latency.png", "downstream_recovery.png"):
        assert (env["figures"] / fig).is_file()


def test_scan_path_candidate_sends_every_image_down_the_scan_path():
    """``dpe_scan_path`` (results/candidates only) is the shipped enhancer with relative=True whatever it is told."""
    from benchmarks.common import ALL_METHODS, build_methods
    from dpe_monai.evaluators.common import for_item

    assert "dpe_scan_path" not in ALL_METHODS  # never part of a default run
    methods, info = build_methods(["dpe", "dpe_scan_path"], precision="fp32")
    x = (0.2 + 0.3 * torch.rand(1, 1, 48, 48, generator=torch.Generator().manual_seed(0))).expand(1, 3, 48, 48)
    want = methods["dpe"](x, relative=True)
    assert torch.equal(for_item(methods["dpe_scan_path"], False)(x), want)
    assert not torch.equal(for_item(methods["dpe"], False)(x), want)
    assert info["dpe_scan_path"]["kind"] == "candidate"


def test_flop_count_includes_the_nlm_layers_arithmetic():
    """The speed benchmark's GFLOP count sees non-local means (elementwise work ``FlopCounterMode`` misses): per pixel
    and shift ``3C + 2(p - 1) + 1 + 5 + 2C + 1``; a convolution beside it is still counted by the counter."""
    from benchmarks.flops import gflops
    from dpe_monai.networks.nonlocal_means import NonLocalMeans

    nlm = NonLocalMeans(2, patch_size=3, patch_distance=1)
    per_shift = 3 * 3 + 2 * 2 + 1 + 5 + 2 * 3 + 1
    assert round(gflops(nlm, 8) * 1e9) == 8 * 8 * 9 * per_shift

    class Both(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.nlm = nlm
            self.conv = torch.nn.Conv2d(3, 3, 1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.nlm(x, torch.full((x.shape[0],), 0.1, device=x.device)))

    assert round(gflops(Both(), 8) * 1e9) == 8 * 8 * 9 * per_shift + 2 * 3 * 3 * 8 * 8
