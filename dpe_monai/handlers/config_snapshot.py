"""Record what a bundle run executed: its config files and the command line with its overrides."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

__all__ = ["snapshot_configs"]


def snapshot_configs(bundle_root: str | os.PathLike, output_dir: str | os.PathLike) -> list[str]:
    """Copy ``<bundle_root>/configs/*.json|yaml`` into ``<output_dir>/executed_config/`` and write the command line.

    Returns the list of written files (to pass to ``MLFlowHandler(artifacts=...)``). Rank > 0 processes of a
    distributed run write nothing.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_rank() > 0:
        return []
    dst = Path(output_dir) / "executed_config"
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sorted((Path(bundle_root) / "configs").glob("*")):
        if src.suffix in (".json", ".yaml", ".yml", ".conf"):
            shutil.copy2(src, dst / src.name)
            written.append(str(dst / src.name))
    cmd = dst / "command.txt"
    cmd.write_text(" ".join(sys.argv) + "\n")
    written.append(str(cmd))
    return written
