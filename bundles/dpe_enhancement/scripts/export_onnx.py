"""Export the bundle's generator to ONNX with dynamic height/width (batch 1) and check it against eager PyTorch.

Usage (from the bundle folder)::

    python scripts/export_onnx.py --checkpoint models/model.pt --output models/model.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

BUNDLE = Path(__file__).resolve().parents[1]


def export(
    checkpoint: Path, output: Path, config: Path = BUNDLE / "configs" / "inference.json", opset: int = 18
) -> Path:
    """Write ``output`` (ONNX) from ``network_def`` in ``config`` with ``checkpoint`` weights; returns the path."""
    from monai.bundle import ConfigParser

    from dpe_monai.inference import load_network

    parser = ConfigParser()
    parser.read_config(str(config))
    parser["bundle_root"] = str(BUNDLE)
    network = load_network(parser.get_parsed_content("network_def"), checkpoint).eval()
    return export_network(network, output, opset)


def export_network(network: torch.nn.Module, output: Path, opset: int = 18) -> Path:
    """Write ``output`` (ONNX) from an eval-mode enhancement ``network``; returns the path."""
    example = torch.rand(1, network.in_channels, 97, 131)  # not a multiple of 16: keeps the pad symbolic
    output.parent.mkdir(parents=True, exist_ok=True)
    # batch: AUTO, which the exporter specialises to 1 (the global branch's per-channel whole-image statistics
    # reshape per image); height and width stay dynamic. Enhance a batch image by image.
    batch, height, width = torch.export.Dim.AUTO, torch.export.Dim.AUTO, torch.export.Dim.AUTO
    torch.onnx.export(
        network,
        (example,),
        str(output),
        input_names=["image"],
        output_names=["pred"],
        dynamic_shapes={"x": {0: batch, 2: height, 3: width}},
        opset_version=opset,
        dynamo=True,
    )
    return output


def check(
    onnx_path: Path,
    checkpoint: Path,
    shapes: tuple[tuple[int, ...], ...] = ((1, 3, 97, 131), (1, 3, 64, 80), (1, 3, 260, 300)),
) -> float:
    """Largest |ONNX Runtime - eager| over random inputs of ``shapes`` (values in [0, 1])."""
    import onnxruntime as ort
    from monai.bundle import ConfigParser

    from dpe_monai.inference import load_network

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.json"))
    network = load_network(parser.get_parsed_content("network_def"), checkpoint).eval()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    gen = torch.Generator().manual_seed(0)
    for shape in shapes:
        x = torch.rand(*shape, generator=gen)
        with torch.no_grad():
            ref = network(x).numpy()
        out = session.run(None, {"image": x.numpy()})[0]
        worst = max(worst, float(np.abs(out - ref).max()))
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=BUNDLE / "models" / "model.pt")
    ap.add_argument("--output", type=Path, default=BUNDLE / "models" / "model.onnx")
    ap.add_argument("--opset", type=int, default=18)
    args = ap.parse_args(argv)
    export(args.checkpoint, args.output, opset=args.opset)
    err = check(args.output, args.checkpoint)
    print(f"wrote {args.output}; max |onnxruntime - eager| = {err:.2e}")
    return 0 if err < 1e-3 else 1


if __name__ == "__main__":
    sys.path.insert(0, str(BUNDLE.parents[1]))
    raise SystemExit(main())
