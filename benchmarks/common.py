"""Shared helpers of the benchmark scripts: paths, machine description, enhancement methods by name, JSON output."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from dpe_monai.data.ensure import default_dataset_dir

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "dpe_enhancement"
RESULTS = REPO / "benchmarks" / "results"
FIGURES = REPO / "benchmarks" / "figures"
WORK = REPO / "outputs" / "benchmarks"  # git-ignored scratch space (checkpoints of trained baselines, datalists)
DEFAULT_DATASET = default_dataset_dir()

CLASSICAL_METHODS = (
    "hist_eq",
    "clahe",
    "auto_levels",
    "auto_levels_nlm",
    "percentile_stretch",
    "stretch_nlm",
    "nlm_stretch",
    "lime",
    "dual",
)
NETWORK_METHODS = ("basicunet", "dpe_paper", "dpe")
CEILINGS = ("oracle",)
ALL_METHODS = CLASSICAL_METHODS + NETWORK_METHODS + CEILINGS
#: what-if variants of the shipped model, measured for ``results/candidates`` (never part of a default run):
#: ``dpe_scan_path`` sends every image down the scan path (NLM + the denoised image's window), as if the contract had
#: flagged it relative to itself; the question it answers is whether 8-bit grey images (exports of scans, the
#: downstream tasks' slices) should take that path too
CANDIDATE_METHODS = ("dpe_scan_path", "dpe_nlm_learned")
#: the paper-faithful DPENet checkpoint (27 x 100 iterations, L1, CPU), kept as a variant beside the shipped model
DPE_PAPER_CHECKPOINT = BUNDLE / "models" / "dpenet_paper.pt"
LABELS = {
    "input": "input (degraded)",
    "hist_eq": "hist. equalisation",
    "clahe": "CLAHE",
    "auto_levels": "auto-levels",
    "auto_levels_nlm": "auto-levels + NLM",
    "percentile_stretch": "percentile stretch",
    "stretch_nlm": "stretch + NLM",
    "nlm_stretch": "NLM + stretch",
    "dpe_paper": "DPENet (paper)",
    "oracle": "oracle (unreachable)",
    "lime": "LIME",
    "dual": "DUAL",
    "basicunet": "BasicUNet",
    "dpe": "DPE (shipped)",
    "dpe_scan_path": "DPE, every image on the scan path (candidate)",
    "dpe_nlm_learned": "DPE, NLM first, then the learned path (candidate)",
    "dpe_gradprom": "DPE task-driven (GradProm)",
    "dpe_sum": "DPE task-driven (plain sum)",
    "dpe_alternate": "DPE task-driven (HQG-style alternation)",
    "degraded": "input (degraded)",
    "clean": "clean (reference)",
}


def machine_info() -> dict[str, Any]:
    """CPU model, cores, threads, bf16 support, library versions (:func:`dpe_monai.machine.machine_summary`), git
    commit, date and memory."""
    from dpe_monai.machine import machine_summary

    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    info = {
        **machine_summary(),
        "git_commit": commit,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    try:
        with open("/proc/meminfo") as f:
            info["memory_gb"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return info


#: how the benchmarks hand the route flag to ``dpe`` (``load_clean``'s ``relative``), recorded in every result
ROUTE = (
    "relative = dpe_monai.contract.is_scan(rule, grey) of the clean image (bundle >= 0.6.0; "
    "grey: is_near_grey since 0.6.1)"
)


def bundle_version() -> str:
    """The bundle's version (``configs/metadata.json``)."""
    return str(json.loads((BUNDLE / "configs" / "metadata.json").read_text())["version"])


def sha256(path: str | os.PathLike, limit: int = 12) -> str:
    """Short SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:limit]


def parse_network(
    config_files: Sequence[str | os.PathLike], overrides: Mapping[str, Any] | None = None
) -> torch.nn.Module:
    """Instantiate ``network_def`` of merged bundle configs (e.g. ``train.json`` + an ablation override)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(f) for f in config_files])
    parser["bundle_root"] = str(BUNDLE)
    parser.update(dict(overrides or {}))
    return parser.get_parsed_content("network_def")


def network_enhancer(
    network: torch.nn.Module, checkpoint: str | os.PathLike, precision: str = "auto", device: str | None = None
) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
    """The shared fast path (:class:`~dpe_monai.inference.Enhancer`) for ``network`` with ``checkpoint`` weights."""
    from dpe_monai.inference import Enhancer, load_network

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}")
    network = load_network(network, checkpoint)
    enhancer = Enhancer(network, device=device, precision=precision)
    info = {
        "checkpoint": str(Path(checkpoint).resolve().relative_to(REPO))
        if _inside_repo(checkpoint)
        else str(checkpoint),
        "checkpoint_sha256": sha256(checkpoint),
        "network": type(network).__name__,
        "parameters": sum(p.numel() for p in network.parameters()),
        "options": network_options(network),
        "precision": enhancer.precision,
        "precision_check": enhancer.precision_check,
    }
    return enhancer, info


def network_options(network: torch.nn.Module) -> dict[str, Any]:
    """The constructor options that change what a :class:`~dpe_monai.networks.GlobalLocalNet` computes (empty for
    other networks), so a result records *which* variant scored it, not only its weights."""
    if not hasattr(network, "prefilter_on"):
        return {}
    scan_path = network.prefilter_on == "relative"
    return {
        "denoise_first": bool(network.denoise_first),
        "prefilter": None if network.prefilter is None else "nlm",
        "prefilter_on": network.prefilter_on,
        "noise_model": getattr(network, "noise_model", "gaussian"),
        # acts on the scan path only (prefilter on relative images); recorded as None where it cannot act
        "keep_scale": getattr(network, "keep_scale", None) if network.prefilter is not None and scan_path else None,
        "nlm_h_factor": None if network.prefilter is None else network.prefilter.h_factor,
        "nlm_sure_factors": (network.prefilter.sure_factors or None) if network.prefilter is not None else None,
        "scan_refiner": None if getattr(network, "refiner", None) is None else network.refiner.channels,
        "clean_gate": getattr(network, "gate", None) is not None,
        "exposed": getattr(network, "exposed", None),
        "regional_limit": None if getattr(network, "limit", None) is None else [network.limit.t0, network.limit.t1],
        "tone_window": getattr(network.global_branch, "window", "grey"),
        "tone_strength": getattr(network.global_branch, "strength", 1.0),
        "colour_restore": "nlm" if getattr(network, "colour_nlm", False) else "body",
    }


def _inside_repo(path: str | os.PathLike) -> bool:
    try:
        Path(path).resolve().relative_to(REPO)
        return True
    except ValueError:
        return False


def build_methods(
    names: Sequence[str],
    dpe_checkpoint: str | os.PathLike | None = None,
    dpe_network: Mapping[str, Any] | None = None,
    basicunet_checkpoint: str | os.PathLike | None = None,
    basicunet_network: Mapping[str, Any] | None = None,
    precision: str = "auto",
    device: str | None = None,
) -> tuple[dict[str, Callable], dict[str, Any]]:
    """Enhancement callables by name (see :data:`ALL_METHODS`) and a description of each.

    ``dpe``: ``network_def`` of ``inference.json`` (or ``dpe_network``, a config dict) with ``dpe_checkpoint``.
    ``basicunet``: ``network_def`` of ``train.json`` + ``configs/basicunet.json`` (or ``basicunet_network``).
    """
    from monai.bundle import ConfigParser

    from dpe_monai.baselines import ClassicalEnhancer

    methods: dict[str, Callable] = {}
    info: dict[str, Any] = {}
    for name in names:
        if name in CLASSICAL_METHODS:
            methods[name] = ClassicalEnhancer(name)
            info[name] = {"kind": "classical", "function": f"dpe_monai.baselines.classical.CLASSICAL[{name!r}]"}
        elif name == "oracle":
            from dpe_monai.baselines import OracleEnhancer

            methods[name] = OracleEnhancer()
            info[name] = {
                "kind": "ceiling",
                "function": f"dpe_monai.baselines.OracleEnhancer ({OracleEnhancer.definition})",
            }
        elif name == "dpe_paper":
            from dpe_monai.networks import DPENet

            methods[name], info[name] = network_enhancer(DPENet(), DPE_PAPER_CHECKPOINT, precision, device)
            info[name]["kind"] = "network"
        elif name == "dpe":
            if dpe_network is not None:
                net = ConfigParser({"network_def": dict(dpe_network)}).get_parsed_content("network_def")
            else:
                net = parse_network([BUNDLE / "configs" / "inference.json"])
            ckpt = dpe_checkpoint or BUNDLE / "models" / "model.pt"
            methods[name], info[name] = network_enhancer(net, ckpt, precision, device)
            info[name].update(kind="network", bundle_version=bundle_version(), route=ROUTE)
        elif name == "dpe_scan_path":
            net = parse_network([BUNDLE / "configs" / "inference.json"])
            enhancer, info[name] = network_enhancer(net, dpe_checkpoint or BUNDLE / "models" / "model.pt", precision)
            methods[name] = _ScanPath(enhancer)
            info[name].update(kind="candidate", route="relative=True for every image")
        elif name == "dpe_nlm_learned":
            net = parse_network([BUNDLE / "configs" / "inference.json"])
            enhancer, info[name] = network_enhancer(net, dpe_checkpoint or BUNDLE / "models" / "model.pt", precision)
            methods[name] = _NLMLearned(enhancer)
            info[name].update(kind="candidate", route="the network's NLM layer, then relative=False for every image")
        elif name == "basicunet":
            if basicunet_network is not None:
                net = ConfigParser({"network_def": dict(basicunet_network)}).get_parsed_content("network_def")
            else:
                net = parse_network([BUNDLE / "configs" / "train.json", BUNDLE / "configs" / "basicunet.json"])
            ckpt = basicunet_checkpoint or WORK / "ablation" / "basicunet" / "models" / "model.pt"
            methods[name], info[name] = network_enhancer(net, ckpt, precision, device)
            info[name]["kind"] = "network"
        else:
            raise ValueError(f"unknown method {name!r}; choose from {ALL_METHODS + CANDIDATE_METHODS}")
    return methods, info


class _ScanPath:
    """An :class:`~dpe_monai.inference.Enhancer` given ``relative=True`` whatever the image (``dpe_scan_path``)."""

    uses_convention = True

    def __init__(self, enhancer: Callable[..., torch.Tensor]) -> None:
        self.enhancer = enhancer

    def __call__(self, x: torch.Tensor, relative: bool | None = None) -> torch.Tensor:
        return self.enhancer(x, relative=True)


class _NLMLearned:
    """The network's scan-path restoration (NLM at the image's noise level, and its refiner where it has one), then
    the learned path (``dpe_nlm_learned``)."""

    uses_convention = True

    def __init__(self, enhancer: Callable[..., torch.Tensor]) -> None:
        self.enhancer = enhancer

    def __call__(self, x: torch.Tensor, relative: bool | None = None) -> torch.Tensor:
        from dpe_monai.networks.nonlocal_means import noise_sigma

        net = self.enhancer.network
        with torch.no_grad():
            den = net.restore(x.float(), noise_sigma(x.float()))
        return self.enhancer(den, relative=False)


def write_json(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as standard JSON (NaN -> null) and return the path."""
    from dpe_monai.evaluators.common import save_json

    return save_json(path, payload)


def json_arg(text: str | None) -> Any:
    """Parse a JSON command-line argument (None stays None)."""
    return None if text is None else json.loads(text)


def parse_cli(parser: Any, argv: Sequence[str] | None = None) -> Any:
    """Entry-point prologue: INFO logging, parse ``argv`` (default ``sys.argv[1:]``), keep it as ``args.argv``."""
    import logging
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    return args
