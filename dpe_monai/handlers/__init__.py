"""Ignite handlers used by the bundle: atomic resumable checkpoints, validation image grids, config snapshots."""

from dpe_monai.handlers.config_snapshot import snapshot_configs
from dpe_monai.handlers.image_grid import ImageGridSaver, make_grid
from dpe_monai.handlers.latest_checkpoint import BestSoFar, LatestCheckpoint

__all__ = ["BestSoFar", "ImageGridSaver", "LatestCheckpoint", "make_grid", "snapshot_configs"]
