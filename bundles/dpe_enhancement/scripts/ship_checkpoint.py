"""Write the bundle's ``models/model.pt`` from a training run's resumable checkpoint (its EMA generator).

Usage (from the repository root)::

    .venv/bin/python bundles/dpe_enhancement/scripts/ship_checkpoint.py \
        bundles/dpe_enhancement/outputs/global_local/models/latest.pt bundles/dpe_enhancement/models/model.pt

The EMA weights (``ema_network``, BasicSR/NAFNet ``net_g_ema``) are what the bundle runs; without EMA the raw
generator (``network``) is written. The output is ``{"model": state_dict}``, what ``inference.json`` loads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def ship(latest: Path, output: Path) -> dict:
    """Extract the generator weights of ``latest`` into ``output``; returns a short description."""
    ckpt = torch.load(latest, map_location="cpu", weights_only=False)
    source = "ema_network" if ckpt.get("ema_network") else "network"
    state = {k.removeprefix("module."): v for k, v in ckpt[source].items() if k != "n_averaged"}
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    torch.save({"model": state}, tmp)
    tmp.replace(output)
    return {"source": source, "trainer": ckpt.get("trainer", ckpt.get("engine")), "tensors": len(state)}


def main(argv: list[str] | None = None) -> dict:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("latest", type=Path)
    p.add_argument("output", type=Path)
    args = p.parse_args(argv)
    info = ship(args.latest, args.output)
    print(f"{args.output}: {info}")
    return info


if __name__ == "__main__":
    main()
