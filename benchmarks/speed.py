"""Speed benchmark (the paper's Table III): DPE inference latency per execution path, training throughput, memory.

Full run (from the repository root, nothing else running on the machine)::

    python -m benchmarks.speed

writes ``benchmarks/results/speed.json``: for 256^2, 512^2 and 1024^2 RGB images (batch 1) the median latency of
fp32 eager, channels-last, bf16 autocast (channels-last), torch.compile (fp32 and bf16), TorchScript (traced,
frozen), ONNX Runtime and the shared :class:`~dpe_monai.inference.Enhancer` path; each with its ratio to the paper's
4-core CPU figure, its max |difference| to fp32 eager, and its achieved GFLOP/s against the machine's peak (matmul
and 3x3 convolution, measured in the same run). Also training images/s at 128^2 (train.json's step with its
defaults, the shipped recipe; the record says whether the discriminator and the feature loss ran), and the peak
memory of a 4096^2 image through the Enhancer's tiled path (measured in a fresh subprocess).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.common import BUNDLE, REPO, RESULTS, json_arg, machine_info, parse_network, sha256, write_json
from benchmarks.flops import gflops, measure_peak, time_call

logger = logging.getLogger("benchmarks.speed")

PAPER_CPU_SECONDS = {256: 0.45, 512: 1.65, 1024: 6.85}  # Table III, 4-core Ryzen 3 3200G
PAPER_GPU_SECONDS = {256: 0.01, 512: 0.02, 1024: 0.04}  # Table III, GTX 1060
NETWORK_PATHS = ("fp32", "channels_last", "bf16", "compile", "compile_bf16", "torchscript", "onnxruntime")
VARIANTS = (*NETWORK_PATHS, "enhancer", "enhancer_scan")
#: variants whose output is not ``net(x)``: ``enhancer_scan`` enhances a grey scan (``x``'s first channel, replicated)
#: windowed relative to itself (``relative=True``: GlobalLocalNet's non-local-means path), compared with the
#: network's own output for that input and flag
SCAN_VARIANTS = {"enhancer_scan"}
BF16_VARIANTS = {"bf16", "compile_bf16"}


class _Autocast(nn.Module):
    """Run a module under bf16 autocast (so torch.compile traces the casts)."""

    def __init__(self, net: nn.Module, device_type: str) -> None:
        super().__init__()
        self.net, self.device_type = net, device_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.net(x).float()


def load_generator(args: argparse.Namespace) -> tuple[nn.Module, dict[str, Any]]:
    """The generator of ``inference.json`` (or ``--network``) with ``--checkpoint`` weights if present."""
    from monai.bundle import ConfigParser

    from dpe_monai.inference import load_network

    spec = json_arg(args.network)
    if spec is not None:
        net = ConfigParser({"network_def": spec}).get_parsed_content("network_def")
    else:
        net = parse_network([BUNDLE / "configs" / "inference.json"])
    ckpt = Path(args.checkpoint) if args.checkpoint else BUNDLE / "models" / "model.pt"
    info: dict[str, Any] = {"network": type(net).__name__, "parameters": sum(p.numel() for p in net.parameters())}
    if ckpt.is_file():
        load_network(net, ckpt)
        info.update(weights=str(ckpt), weights_sha256=sha256(ckpt))
    else:
        info["weights"] = "random initialisation (latency does not depend on the weight values)"
    return net.eval(), info


def _onnx_session(net: nn.Module, path: Path) -> Any:
    """Export ``net`` with the bundle's own ONNX export (``scripts/export_onnx.py``: dynamic height and width,
    batch 1, opset 18; the single-input graph, i.e. the learned path the other network rows time) and open it in
    ONNX Runtime."""
    import importlib.util

    import onnxruntime as ort

    spec = importlib.util.spec_from_file_location("export_onnx", BUNDLE / "scripts" / "export_onnx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.export_network(net.eval(), path, route=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def build_runner(variant: str, net: nn.Module, x: torch.Tensor, cache: dict) -> Callable[[], torch.Tensor]:
    """A zero-argument callable running ``variant`` on ``x``; setup cost (export, tracing) happens here."""
    dev = x.device
    cl = x.contiguous(memory_format=torch.channels_last)
    if variant == "fp32":
        return lambda: net(x)
    if variant in ("channels_last", "bf16", "compile", "compile_bf16"):
        m = copy.deepcopy(net).to(memory_format=torch.channels_last)
        if variant in BF16_VARIANTS:
            m = _Autocast(m, dev.type)
        if variant.startswith("compile"):
            torch._dynamo.reset()
            m = torch.compile(m, dynamic=False)
        return lambda: m(cl)
    if variant == "torchscript":
        traced = torch.jit.freeze(torch.jit.trace(copy.deepcopy(net), x))
        return lambda: traced(x)
    if variant == "onnxruntime":
        if dev.type != "cpu":
            raise RuntimeError("ONNX Runtime is measured on CPU only")
        if "onnx" not in cache:
            cache["onnx"] = _onnx_session(net, Path(cache["work_dir"]) / "dpe_speed.onnx")
        sess, arr = cache["onnx"], x.numpy()
        return lambda: torch.from_numpy(sess.run(None, {"image": arr})[0])
    if variant in ("enhancer", "enhancer_scan"):
        from dpe_monai.inference import Enhancer

        if variant not in cache:
            cache[variant] = Enhancer(copy.deepcopy(net), device=dev, precision="auto", tile_size=cache["tile_size"])
        if variant in SCAN_VARIANTS:  # a scan: grey, replicated to the network's three channels
            grey = x[:, :1].expand_as(x).contiguous()
            return lambda: cache[variant](grey, relative=True)
        return lambda: cache[variant](x)
    raise ValueError(f"unknown variant {variant!r}")


def latency(args: argparse.Namespace, net: nn.Module, device: torch.device) -> dict[str, Any]:
    """Latency, accuracy and GFLOP/s of every variant at every size."""
    cache: dict[str, Any] = {"work_dir": args.work_dir, "tile_size": args.tile_size}
    rows: dict[str, dict[str, Any]] = {v: {} for v in args.variants}
    flops = {s: gflops(net, s) for s in args.sizes}
    net = net.to(device)
    for size in args.sizes:
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size)).to(device)
        with torch.inference_mode():
            ref = net(x).float().cpu()
        for variant in args.variants:
            try:
                with torch.inference_mode() if variant != "compile" else torch.no_grad():
                    start = time.perf_counter()
                    fn = build_runner(variant, net, x, cache)
                    setup = time.perf_counter() - start
                    sec, first = time_call(fn, args.warmup, args.repeats)
                    want = ref
                    if variant in SCAN_VARIANTS:
                        grey = x[:, :1].expand_as(x).contiguous()
                        want = net(grey, relative=torch.ones(1, device=device)).float().cpu()
                    diff = float((fn().float().cpu() - want).abs().max())
            except Exception as err:  # noqa: BLE001 - record the failure, keep measuring the rest
                logger.warning("%s at %d failed: %s", variant, size, err)
                rows[variant][str(size)] = {"error": f"{type(err).__name__}: {err}"[:500]}
                continue
            row = {
                "seconds": sec,
                "first_call_seconds": first,
                "setup_seconds": setup,
                "max_abs_diff_fp32": diff,
                "gflop": flops[size],
                "gflops_per_s": flops[size] / sec,
            }
            if size in PAPER_CPU_SECONDS:
                row["speedup_vs_paper_cpu"] = PAPER_CPU_SECONDS[size] / sec
            if variant in ("enhancer", "enhancer_scan"):
                row["precision"] = cache[variant].precision
                row["precision_check"] = cache[variant].precision_check
                row["tiled"] = size > args.tile_size
            if variant in SCAN_VARIANTS:  # the count follows the colour path (the meta device takes no route flag)
                row["gflop"] = row["gflops_per_s"] = None
                row.pop("speedup_vs_paper_cpu", None)
            rows[variant][str(size)] = row
            logger.info("%-14s %5d^2: %.3f s, diff %.2e", variant, size, sec, diff)
    return {"gflop_per_image": {str(s): f for s, f in flops.items()}, "variants": rows}


def training_throughput(args: argparse.Namespace, device: torch.device, precision: str) -> dict[str, Any]:
    """Images/s of train.json's training step at ``--train_patch``^2 on random pairs (no data loading)."""
    from monai.bundle import ConfigParser
    from torch.utils.data import DataLoader

    from dpe_monai.engines import ConditionalGANTrainer

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser.update({"bundle_root": str(BUNDLE), "device": device, **dict(json_arg(args.train_overrides) or {})})
    n = args.train_warmup + args.train_iterations
    b, p = args.train_batch, args.train_patch
    data = [{"image": torch.rand(3, p, p), "lq": torch.rand(3, p, p) * 0.5} for _ in range(b)]
    loader = DataLoader(data, batch_size=b)
    trainer = ConditionalGANTrainer(
        device=device,
        max_epochs=1,
        epoch_length=n,
        train_data_loader=_Repeat(loader),
        g_network=parser.get_parsed_content("network"),
        g_optimizer=parser.get_parsed_content("g_optimizer"),
        g_loss_function=parser.get_parsed_content("loss_on_device"),
        d_network=parser.get_parsed_content("discriminator"),
        d_optimizer=parser.get_parsed_content("d_optimizer"),
        precision=precision,
        channels_last=parser.get_parsed_content("channels_last"),
        ema_network=parser.get_parsed_content("ema_network"),
    )
    stamps: list[float] = []
    from ignite.engine import Events

    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: stamps.append(time.perf_counter()))
    trainer.run()
    sec = stamps[-1] - stamps[args.train_warmup - 1] if args.train_warmup else stamps[-1] - stamps[0]
    iters = args.train_iterations if args.train_warmup else args.train_iterations - 1
    return {
        "precision": precision,
        "amp_dtype": str(trainer.amp_dtype),
        "batch_size": b,
        "patch_size": p,
        "images_per_s": iters * b / sec,
        "seconds_per_iteration": sec / iters,
        "discriminator": parser.get("use_discriminator"),
        "feature_backbone": parser.get("feature_backbone"),
        "lambda_rfl": parser.get("lambda_rfl"),
    }


class _Repeat:
    """An endless iterable over a DataLoader (the trainer runs ``epoch_length`` iterations)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __iter__(self):
        while True:
            yield from self.loader

    def __len__(self) -> int:
        return 10**9


def _vm_hwm_mb() -> float:
    """Peak resident memory of this process image (``VmHWM``; unlike ``ru_maxrss`` it is not inherited through
    fork + exec from the parent, which here is the large benchmark process)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_probe(args: argparse.Namespace) -> dict[str, Any]:
    """(Run in a fresh process.) Peak memory of one ``--memory_size``^2 image through the tiled Enhancer."""
    from dpe_monai.inference import Enhancer

    net, _ = load_generator(args)
    enh = Enhancer(net, precision="auto", tile_size=args.tile_size)
    x = torch.rand(1, 3, args.memory_size, args.memory_size)
    with open("/proc/self/statm") as f:
        rss_before = int(f.read().split()[1]) * 4096 / 2**20
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    enh(x)
    out = {
        "size": args.memory_size,
        "tile_size": args.tile_size,
        "precision": enh.precision,
        "seconds": time.perf_counter() - start,
        "rss_before_mb": rss_before,
        "peak_rss_mb": _vm_hwm_mb(),
        "image_mb": x.numel() * 4 / 2**20,
    }
    if torch.cuda.is_available():
        out["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All measurements; writes the JSON and returns it."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net, net_info = load_generator(args)
    payload: dict[str, Any] = {
        "benchmark": "speed",
        "command": "python -m benchmarks.speed " + shlex.join(args.argv),
        "machine": machine_info(),
        "device": str(device),
        "network": net_info,
        "paper_cpu_seconds": PAPER_CPU_SECONDS,
        "paper_gpu_seconds": PAPER_GPU_SECONDS,
        "settings": {k: v for k, v in vars(args).items() if k != "argv"},
    }
    payload["peak_gflops"] = measure_peak(device, args.peak_size)
    logger.info("peak GFLOP/s: %s", payload["peak_gflops"])
    payload["latency"] = latency(args, net, device)
    payload["training"] = [training_throughput(args, device, p) for p in args.train_precisions]
    logger.info("training: %s", payload["training"])
    if args.memory_size:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.speed",
            "--memory_probe",
            "--memory_size",
            str(args.memory_size),
            "--tile_size",
            str(args.tile_size),
            "--threads",
            str(torch.get_num_threads()),
        ]
        if args.checkpoint:
            cmd += ["--checkpoint", args.checkpoint]
        if args.network:
            cmd += ["--network", args.network]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        payload["tiled_memory"] = json.loads(lines[-1]) if lines else {"error": proc.stderr[-2000:]}
        logger.info("tiled memory: %s", payload["tiled_memory"])
    write_json(args.output, payload)
    logger.info("wrote %s", args.output)
    return payload


def parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), help=f"subset of {list(VARIANTS)}")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before the timed ones (>= 1)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--checkpoint", default=None, help="default: bundles/dpe_enhancement/models/model.pt if present")
    p.add_argument("--network", default=None, help="network_def JSON (default: inference.json's)")
    p.add_argument("--peak_size", type=int, default=4096, help="matmul side of the peak measurement")
    p.add_argument("--tile_size", type=int, default=1024, help="Enhancer tile side")
    p.add_argument("--train_batch", type=int, default=8)
    p.add_argument("--train_patch", type=int, default=128)
    p.add_argument("--train_iterations", type=int, default=10)
    p.add_argument("--train_warmup", type=int, default=2)
    p.add_argument("--train_precisions", nargs="+", default=["fp32", "auto"])
    p.add_argument("--train_overrides", default=None, help="train.json overrides as JSON (CI: tiny networks)")
    p.add_argument("--memory_size", type=int, default=4096, help="image side of the tiled-memory probe (0: skip)")
    p.add_argument("--memory_probe", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--work_dir", default=str(REPO / "outputs" / "benchmarks" / "speed"))
    p.add_argument("--output", default=str(RESULTS / "speed.json"))
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.argv = argv
    if args.memory_probe:
        if args.threads:
            torch.set_num_threads(args.threads)
        result = memory_probe(args)
        print(json.dumps(result))
        return result
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return run(args)


if __name__ == "__main__":
    main()
