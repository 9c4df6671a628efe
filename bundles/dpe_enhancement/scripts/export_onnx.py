"""Export the bundle's generator to ONNX with dynamic height/width (batch 1) and check it against eager PyTorch.

Usage (from the bundle folder)::

    python scripts/export_onnx.py --checkpoint models/model.pt --output models/model.onnx

The graph has two inputs, ``image`` ``(1, 3, H, W)`` float32 in [0, 1] and ``relative`` ``(1,)`` float32, the route
flag the CLI passes (:func:`dpe_monai.contract.is_scan` of the window rule and
:func:`dpe_monai.transforms.is_near_grey` of the image: 1 for grey images and images windowed relative to
themselves, which take the scan path; 0 for colour 8-bit images). Both paths are in the graph, selected by the flag,
so the export computes what the CLI computes for either kind. The export takes minutes (the non-local-means layer
unrolls into many nodes; the ONNX optimiser pass is skipped, it would take longer than the export).
``--no_route`` writes the older single-input graph (``image`` only: the learned path for every image).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

BUNDLE = Path(__file__).resolve().parents[1]


class Routed(torch.nn.Module):
    """``forward(image, relative)``: ``network`` with its route flag as a second positional input (ONNX graphs
    have no keyword arguments)."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.in_channels = network.in_channels

    def forward(self, image: torch.Tensor, relative: torch.Tensor) -> torch.Tensor:
        """``image`` ``(1, C, H, W)`` in [0, 1] and its flag ``relative`` ``(1,)`` -> the enhanced image."""
        return self.network(image, relative=relative)


def export(
    checkpoint: Path,
    output: Path,
    config: Path = BUNDLE / "configs" / "inference.json",
    opset: int = 18,
    route: bool = True,
) -> Path:
    """Write ``output`` (ONNX) from ``network_def`` in ``config`` with ``checkpoint`` weights; returns the path."""
    from monai.bundle import ConfigParser

    from dpe_monai.inference import load_network

    parser = ConfigParser()
    parser.read_config(str(config))
    parser["bundle_root"] = str(BUNDLE)
    network = load_network(parser.get_parsed_content("network_def"), checkpoint).eval()
    return export_network(network, output, opset, route)


def export_network(network: torch.nn.Module, output: Path, opset: int = 18, route: bool = True) -> Path:
    """Write ``output`` (ONNX) from an eval-mode enhancement ``network``; returns the path.

    With ``route`` the graph takes ``(image, relative)`` (see the module docstring), else ``image`` only."""
    example = torch.rand(1, network.in_channels, 97, 131)  # not a multiple of 16: keeps the pad symbolic
    output.parent.mkdir(parents=True, exist_ok=True)
    # batch: AUTO, which the exporter specialises to 1 (the global branch's per-channel whole-image statistics
    # reshape per image); height and width stay dynamic. Enhance a batch image by image.
    batch, height, width = torch.export.Dim.AUTO, torch.export.Dim.AUTO, torch.export.Dim.AUTO
    image_dims = {0: batch, 2: height, 3: width}
    if route:
        module, args, names = Routed(network).eval(), (example, torch.zeros(1)), ["image", "relative"]
        dynamic = {"image": image_dims, "relative": {0: batch}}
    else:
        module, args, names, dynamic = network, (example,), ["image"], {"x": image_dims}
    torch.onnx.export(
        module,
        args,
        str(output),
        input_names=names,
        output_names=["pred"],
        dynamic_shapes=dynamic,
        opset_version=opset,
        dynamo=True,
        optimize=not route,
    )
    return output


def check(
    onnx_path: Path,
    checkpoint: Path,
    shapes: tuple[tuple[int, ...], ...] = ((1, 3, 97, 131), (1, 3, 64, 80), (1, 3, 260, 300)),
    config: Path = BUNDLE / "configs" / "inference.json",
) -> float:
    """Largest |ONNX Runtime - eager| over random inputs of ``shapes`` (values in [0, 1]); a routed export is
    checked on colour images with flag 0 and on grey ones with flag 1, as the CLI would pass them."""
    import onnxruntime as ort
    from monai.bundle import ConfigParser

    from dpe_monai.inference import load_network

    parser = ConfigParser()
    parser.read_config(str(config))
    network = load_network(parser.get_parsed_content("network_def"), checkpoint).eval()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return check_session(session, network, shapes)


def check_session(session: Any, network: torch.nn.Module, shapes: tuple[tuple[int, ...], ...]) -> float:
    """Largest |``session`` - ``network``| (see :func:`check`)."""
    routed = "relative" in [i.name for i in session.get_inputs()]
    worst = 0.0
    gen = torch.Generator().manual_seed(0)
    for i, shape in enumerate(shapes):
        # dark images (bright end 0.6, as a degraded one) at every size; at the first, also bright ones, which the
        # network's ``exposed`` rule passes (colour path) or leaves at their own scale (scan path)
        colour = torch.rand(*shape, generator=gen)
        cases = [(0.6 * colour, 0.0)] + ([(colour, 0.0)] if i == 0 else [])
        if routed:
            grey = colour[:, :1].expand(shape).contiguous()
            cases += [(0.6 * grey, 1.0)] + ([(grey, 1.0)] if i == 0 else [])
        for x, flag in cases:
            feed = {"image": x.numpy()}
            with torch.no_grad():
                if routed:
                    ref = network(x, relative=torch.full((1,), flag)).numpy()
                    feed["relative"] = np.full((1,), flag, dtype=np.float32)
                else:
                    ref = network(x).numpy()
            out = session.run(None, feed)[0]
            worst = max(worst, float(np.abs(out - ref).max()))
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=BUNDLE / "models" / "model.pt")
    ap.add_argument("--output", type=Path, default=BUNDLE / "models" / "model.onnx")
    ap.add_argument("--opset", type=int, default=18)
    ap.add_argument("--no_route", action="store_true", help="single input `image`: the learned path for every image")
    args = ap.parse_args(argv)
    export(args.checkpoint, args.output, opset=args.opset, route=not args.no_route)
    err = check(args.output, args.checkpoint)
    print(f"wrote {args.output}; max |onnxruntime - eager| = {err:.2e}")
    return 0 if err < 1e-3 else 1


if __name__ == "__main__":
    sys.path.insert(0, str(BUNDLE.parents[1]))
    raise SystemExit(main())
