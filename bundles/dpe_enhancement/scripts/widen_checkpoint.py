"""Start a ``denoise_first`` :class:`~dpe_monai.networks.GlobalLocalNet` run from a plain one's weights.

Usage (from the repository root)::

    .venv/bin/python bundles/dpe_enhancement/scripts/widen_checkpoint.py \
        bundles/dpe_enhancement/models/model.pt \
        bundles/dpe_enhancement/outputs/global_local_v4/models/latest.pt

The source is a bundle ``model.pt`` (``{"model": state_dict}``) or a resumable ``latest.pt`` (its EMA generator, else
its generator). :meth:`GlobalLocalNet.widen_state_dict` gives the body's head a zero-initialised input-domain group,
so the widened network computes exactly what the source did. The output is a resumable training checkpoint (the
``LatestCheckpoint`` format) with that generator as both ``network`` and ``ema_network`` (EMA restarted), the
trainer at epoch 0 and no optimiser state, ready for ``train.json`` with ``resume``
(``configs/global_local_v4_cpu.json``).

``--zero_head`` instead keeps the layout and zeroes the body's last convolution: the start of a
``prefilter="nlm"`` run (``configs/global_local_v5_cpu.json``), which then computes exactly "NLM, then the shipped
tone map" and keeps the shipped body's features to learn from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dpe_monai.networks import GlobalLocalNet


def widen(source: Path, output: Path, epoch_length: int = 200, zero_head: bool = False) -> dict:
    """Write the widened (or, with ``zero_head``, head-zeroed) resumable checkpoint of ``source`` to ``output``
    (atomically); returns a short description."""
    ckpt = torch.load(source, map_location="cpu", weights_only=False)
    if "model" in ckpt:
        origin, state = "model", ckpt["model"]
    else:
        origin = "ema_network" if ckpt.get("ema_network") else "network"
        state = ckpt[origin]
    # the scan refiner is not part of train.json's network (it is trained on its own and merged at export)
    state = {
        k.removeprefix("module."): v for k, v in state.items() if k != "n_averaged" and not k.startswith("refiner.")
    }
    if zero_head:
        wide = {k: torch.zeros_like(v) if k.startswith("body.tail.") else v for k, v in state.items()}
    else:
        wide = GlobalLocalNet.widen_state_dict(state)
    out = {
        "network": wide,
        "ema_network": {"n_averaged": torch.tensor(0), **{"module." + k: v.clone() for k, v in wide.items()}},
        "trainer": {"epoch": 0, "iteration": 0, "epoch_length": epoch_length, "max_epochs": 1},
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".partial")
    torch.save(out, tmp)
    tmp.replace(output)
    return {"source": str(source), "weights": origin, "tensors": len(wide)}


def main(argv: list[str] | None = None) -> dict:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--epoch_length", type=int, default=200, help="recorded in the trainer state")
    p.add_argument("--zero_head", action="store_true", help="keep the layout, zero the body's last convolution")
    args = p.parse_args(argv)
    info = widen(args.source, args.output, args.epoch_length, args.zero_head)
    print(f"{args.output}: {info}")
    return info


if __name__ == "__main__":
    main()
