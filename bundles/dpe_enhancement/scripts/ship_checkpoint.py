"""Write the bundle's ``models/model.pt`` from a training run's resumable checkpoint (its EMA generator).

Usage (from the repository root)::

    .venv/bin/python bundles/dpe_enhancement/scripts/ship_checkpoint.py \
        bundles/dpe_enhancement/outputs/global_local/models/latest.pt bundles/dpe_enhancement/models/model.pt

The EMA weights (``ema_network``, BasicSR/NAFNet ``net_g_ema``) are what the bundle runs; without EMA the raw
generator (``network``) is written. The output is ``{"model": state_dict}``, what ``inference.json`` loads. With
``--base models/model.pt`` the tensors that the run does not train (the scan refiner, the clean gate) are kept.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def ship(latest: Path, output: Path, base: Path | None = None) -> dict:
    """Extract the generator weights of ``latest`` into ``output``; returns a short description.

    ``base``: a shipped checkpoint whose tensors that ``latest`` does not hold are kept (the scan path's refiner and
    the clean gate, trained by their own scripts, under a body and tone branch trained with ``train.json``).
    """
    ckpt = torch.load(latest, map_location="cpu", weights_only=False)
    source = "ema_network" if ckpt.get("ema_network") else "network"
    state = {k.removeprefix("module."): v for k, v in ckpt[source].items() if k != "n_averaged"}
    kept: list[str] = []
    if base is not None:
        base_state = torch.load(base, map_location="cpu", weights_only=True)["model"]
        kept = [k for k in base_state if k not in state]
        state.update({k: base_state[k] for k in kept})
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    torch.save({"model": state}, tmp)
    tmp.replace(output)
    trainer = ckpt.get("trainer", ckpt.get("engine"))
    return {"source": source, "trainer": trainer, "tensors": len(state), "kept_from_base": len(kept)}


def main(argv: list[str] | None = None) -> dict:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("latest", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--base", type=Path, default=None, help="shipped checkpoint whose other tensors are kept")
    args = p.parse_args(argv)
    info = ship(args.latest, args.output, args.base)
    print(f"{args.output}: {info}")
    return info


if __name__ == "__main__":
    main()
