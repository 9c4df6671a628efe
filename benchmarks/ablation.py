"""Ablation (the paper's Table IV) and the BasicUNet baseline: bundle training variants under one equal budget.

Each variant is ``configs/train.json`` merged with one override file (no code forks)::

    base          configs/ablation/base.json          no residual blocks, plain skips, L1 only
    residual      configs/ablation/residual.json      + residual blocks
    gates         configs/ablation/gates.json         + gated skips (the full generator), L1 only
    feature_loss  configs/ablation/feature_loss.json  + regularised feature loss
    adversarial   configs/ablation/adversarial.json   + adversarial loss (= train.json, the full DPE recipe)
    basicunet     configs/basicunet.json              MONAI BasicUNet in DPE's I/O convention, DPE's loss/trainer

Every variant is trained through MONAI's ``ConfigWorkflow`` with the same budget (epochs x iterations x batch x
patch, same seed and data), then scored on the test split exactly as ``benchmarks.quality`` scores methods.

Full run (see benchmarks/README.md for time estimates)::

    python -m benchmarks.ablation --dataset_dir ~/.cache/dpe-monai/collection

Each variant is equivalent to ``python -m monai.bundle run --config_file "['configs/train.json',
'configs/ablation/<variant>.json']" --max_epochs E --epoch_length L ...`` run in the bundle folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    BUNDLE,
    RESULTS,
    WORK,
    machine_info,
    network_enhancer,
    parse_cli,
    parse_network,
    sha256,
    write_json,
)
from benchmarks.quality import add_data_args, load_pairs

logger = logging.getLogger("benchmarks.ablation")

ABLATION = ("base", "residual", "gates", "feature_loss", "adversarial", "global_local")
CONFIGS = {v: BUNDLE / "configs" / "ablation" / f"{v}.json" for v in ABLATION}
CONFIGS["basicunet"] = BUNDLE / "configs" / "basicunet.json"
#: Table IV of the paper (average PSNR dB / DeltaE over the three groups).
PAPER_TABLE_IV = {
    "base": (23.78, 5.88),
    "residual": (25.19, 5.17),
    "gates": (25.96, 4.55),
    "feature_loss": (26.50, 4.06),
    "adversarial": (27.61, 3.56),
}


def parse_overrides(pairs: list[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``KEY=JSON`` strings -> ``(common, per_variant)``; ``VARIANT:KEY=JSON`` applies to one variant only."""
    common: dict[str, Any] = {}
    per_variant: dict[str, dict[str, Any]] = {}
    for text in pairs:
        key, _, value = text.partition("=")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        if ":" in key:
            variant, key = key.split(":", 1)
            per_variant.setdefault(variant, {})[key] = parsed
        else:
            common[key] = parsed
    return common, per_variant


def _checkpoint_iteration(path: Path) -> int:
    """The trainer iteration stored in a resumable checkpoint (0 when it has none)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False).get("trainer") or {}
    return int(state.get("iteration", 0))


def train_variant(variant: str, args: argparse.Namespace, datalist: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Train one variant with the shared budget; returns its training record (checkpoint path, seconds...)."""
    from monai.bundle import ConfigWorkflow

    files = [str(BUNDLE / "configs" / "train.json"), str(CONFIGS[variant])]
    root = Path(args.work_dir) / variant
    # resume only a run of these very settings: a config changed since (e.g. a loss weight) starts over
    stamp = json.dumps({"budget": budget(args), **variant_settings(variant, overrides)}, sort_keys=True, default=str)
    same_run = (root / "settings.json").is_file() and (root / "settings.json").read_text() == stamp
    root.mkdir(parents=True, exist_ok=True)
    (root / "settings.json").write_text(stamp)
    settings = {
        "bundle_root": str(BUNDLE),
        "datalist": datalist,
        "output_dir": str(root / "out"),
        "ckpt_dir": str(root / "models"),
        "max_epochs": args.max_epochs,
        "epoch_length": args.epoch_length,
        "batch_size": args.batch_size,
        "patch_size": args.patch_size,
        "val_interval": args.max_epochs,  # one validation, at the end: the budget goes to training
        "seed": args.train_seed,
        "run_name": f"ablation_{variant}",
        # a variant killed mid-training continues from its last epoch
        "resume": not args.fresh and same_run and (root / "models" / "latest.pt").is_file(),
        **overrides,
    }
    resumed_from = _checkpoint_iteration(root / "models" / "latest.pt") if settings["resume"] else 0
    start = time.perf_counter()
    wf = ConfigWorkflow(config_file=files, workflow_type="train", **settings)
    wf.initialize()
    wf.run()
    trainer = wf.parser.get_parsed_content("train#trainer")
    record = {
        "configs": [str(Path(f).relative_to(BUNDLE)) for f in files],
        "description": wf.parser.get("ablation_description") or wf.parser.get("baseline_description"),
        "network_def": wf.parser.get("network_def"),
        "use_discriminator": wf.parser.get("use_discriminator"),
        "lambda_rfl": wf.parser.get("lambda_rfl"),
        "lambda_adv": wf.parser.get("lambda_adv"),
        "feature_backbone": wf.parser.get("feature_backbone"),
        "iterations": int(trainer.state.iteration),
        "images_seen": int(trainer.state.iteration) * int(settings["batch_size"]),
        "final_g_loss": float(trainer.state.output["loss"]) if trainer.state.output else None,
        "train_seconds": time.perf_counter() - start,  # this process only: a resumed run's earlier part is not in it
        "resumed_from_iteration": resumed_from,
        "checkpoint": str(root / "models" / "model.pt"),
        "overrides": overrides,
    }
    wf.finalize()
    return record


def budget(args: argparse.Namespace) -> dict[str, Any]:
    """The one training budget every variant gets."""
    return {
        "max_epochs": args.max_epochs,
        "epoch_length": args.epoch_length,
        "batch_size": args.batch_size,
        "patch_size": args.patch_size,
        "images_per_variant": args.max_epochs * args.epoch_length * args.batch_size,
        "paper_images": "about 1.5 million (15k pairs x 100 epochs, batch 24)",
        "train_seed": args.train_seed,
    }


def finished_variants(path: str | Path, head: dict[str, Any]) -> dict[str, Any]:
    """Variant records of an earlier (possibly killed) run at ``path`` that can be kept as they are.

    A record is kept when that run had the same budget, protocol, datalist and scored images and the variant's
    configs still define the same network and loss weights (:func:`variant_settings`), unless its checkpoint is on
    disk with another sha256 than the recorded one (retrained since). A record whose checkpoint
    is gone (a fresh clone: checkpoints live in the git-ignored ``outputs/``) is kept, so a committed partial JSON
    lets the next session train only the variants still missing; each record names the commit that scored it.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    earlier = json.loads(path.read_text())
    if any(earlier.get(k) != head[k] for k in ("budget", "protocol", "datalist", "groups", "n_scored")):
        return {}
    kept = {}
    for name, record in earlier.get("variants", {}).items():
        ckpt = Path(record.get("checkpoint", ""))
        settings = variant_settings(name, record.get("overrides")) if name in CONFIGS else None
        same_config = settings is not None and all(record.get(k) == v for k, v in settings.items())
        if (
            "summary" in record
            and same_config
            and (not ckpt.is_file() or record.get("checkpoint_sha256") == sha256(ckpt))
        ):
            kept[name] = record
    return kept


def variant_settings(variant: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings a variant's record names (network, losses), as its configs define them today."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / "train.json"), str(CONFIGS[variant])])
    parser.update(dict(overrides or {}))
    return {k: parser.get(k) for k in ("network_def", "use_discriminator", "lambda_rfl", "lambda_adv")}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train (unless ``--skip_training``) and score every variant; writes the JSON and returns it.

    The JSON is rewritten after every variant (``"complete": false`` until the last), and a rerun of the same
    command keeps the variants an earlier, killed run finished (:func:`finished_variants`; ``--fresh`` retrains
    them). A variant killed mid-training resumes from its last bundle checkpoint. Finished variants not named in
    ``--variants`` stay in the JSON, so one variant can be rerun alone.
    """
    from dpe_monai.evaluators.quality import QualityScorer, protocol, score_enhancers

    if args.threads:
        torch.set_num_threads(args.threads)
    common, per_variant = parse_overrides(args.set)
    pairs, skipped, datalist = load_pairs(args)
    scorer = QualityScorer(args.feature_backbone)
    head = {
        "benchmark": "ablation",
        "command": "python -m benchmarks.ablation " + shlex.join(args.argv),
        "datalist": datalist,
        "budget": budget(args),
        "protocol": protocol(args.seed, args.mode, args.max_side, args.feature_backbone),
        "machine": machine_info(),
        "groups": {g: sum(p["group"] == g for p in pairs) for g in sorted({p["group"] for p in pairs})},
        "n_scored": len(pairs),
        "skipped_by_luminance_gate": skipped,
        "paper_table_iv_average": {k: {"psnr": v[0], "delta_e": v[1]} for k, v in PAPER_TABLE_IV.items()},
    }
    earlier = {} if args.skip_training else finished_variants(args.output, head)
    kept = {} if args.fresh else earlier
    # variants not asked for this time stay in the file (same budget and protocol), so one can be rerun alone
    variants: dict[str, Any] = {k: v for k, v in earlier.items() if k not in args.variants}
    for variant in args.variants:
        overrides = {**common, **per_variant.get(variant, {})}
        if variant in kept and kept[variant].get("overrides") == overrides:
            logger.info("%s: kept from the earlier run of this command", variant)
            variants[variant] = kept[variant]
            continue
        ckpt = Path(args.work_dir) / variant / "models" / "model.pt"
        if args.skip_training:
            record = {"checkpoint": str(ckpt), "overrides": overrides, "trained": "earlier run (--skip_training)"}
        else:
            logger.info("training %s", variant)
            record = train_variant(variant, args, datalist, overrides)
        network = parse_network([BUNDLE / "configs" / "train.json", CONFIGS[variant]], overrides)
        enhancer, info = network_enhancer(network, ckpt, args.precision)
        record.update(parameters=info["parameters"], precision=info["precision"], checkpoint_sha256=sha256(ckpt))
        record["scored_by"] = {k: head["machine"][k] for k in ("git_commit", "date")}
        scores = score_enhancers(pairs, {variant: enhancer}, scorer)
        record["summary"] = scores["summary"][variant]
        record["input_summary"] = scores["summary"]["input"]
        record["seconds_per_image"] = scores["seconds_per_image"][variant]
        variants[variant] = record
        logger.info("%s: average PSNR %.2f", variant, record["summary"]["average"].get("psnr", float("nan")))
        write_json(args.output, {**head, "complete": False, "variants": variants})
    payload = {**head, "complete": True, "variants": variants}
    write_json(args.output, payload)
    logger.info("wrote %s", args.output)
    return payload


def parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--variants", nargs="+", default=list(ABLATION), help=f"from {sorted(CONFIGS)}")
    p.add_argument("--max_epochs", type=int, default=3)
    p.add_argument("--epoch_length", type=int, default=100)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--patch_size", type=int, default=128)
    p.add_argument("--train_seed", type=int, default=0)
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="[VARIANT:]KEY=JSON",
        help="extra bundle overrides, e.g. network_def#channels=[8,12,16]",
    )
    p.add_argument("--skip_training", action="store_true", help="score checkpoints of an earlier run")
    p.add_argument("--fresh", action="store_true", help="retrain every variant, even those a killed run finished")
    p.add_argument("--work_dir", default=str(WORK / "ablation"), help="checkpoints and training logs")
    p.add_argument(
        "--output",
        default=None,
        help="default: benchmarks/results/ablation.json (basicunet.json when only basicunet is trained)",
    )
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point."""
    args = parse_cli(parser(), argv)
    if args.output is None:
        args.output = str(RESULTS / ("basicunet.json" if args.variants == ["basicunet"] else "ablation.json"))
    return run(args)


if __name__ == "__main__":
    main()
