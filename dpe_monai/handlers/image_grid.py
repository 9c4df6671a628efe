"""Save (and log to MLflow) a PNG grid of input / enhanced / clean samples after each validation run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.utils import CommonKeys as Keys

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["ImageGridSaver", "make_grid"]


def make_grid(rows: list[list[torch.Tensor]], pad: int = 2) -> np.ndarray:
    """Tile images into a uint8 RGB grid.

    Args:
        rows: ``rows[i][j]`` is a ``(C, H, W)`` tensor in [0, 1] (C = 1 or 3); images in a row may differ in size
            (each cell is padded to the largest image).
        pad: white border in pixels.

    Returns:
        ``(H_total, W_total, 3)`` uint8 array.
    """
    cells = [[_to_rgb_uint8(img) for img in row] for row in rows]
    h = max(c.shape[0] for row in cells for c in row)
    w = max(c.shape[1] for row in cells for c in row)
    n_cols = max(len(row) for row in cells)
    grid = np.full((len(cells) * (h + pad) + pad, n_cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, row in enumerate(cells):
        for j, cell in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y : y + cell.shape[0], x : x + cell.shape[1]] = cell
    return grid


def _to_rgb_uint8(img: torch.Tensor) -> np.ndarray:
    arr = torch.as_tensor(img).detach().float().cpu().clamp(0, 1).numpy()
    if arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    return (np.moveaxis(arr[:3], 0, -1) * 255.0 + 0.5).astype(np.uint8)


class ImageGridSaver:
    """Ignite handler for an evaluator: keeps the first ``max_samples`` items of each run and, when the run
    completes, writes ``<output_dir>/grid_epoch_<NNN>.png`` (columns: input, enhanced, clean) and logs it to the
    MLflow run of ``mlflow_handler`` (a MONAI ``MLFlowHandler``) if given.

    Args:
        output_dir: folder for the PNG files.
        max_samples: number of rows.
        mlflow_handler: the run to log the grid to (uses its ``client`` and ``cur_run``), or None.
        epoch_source: an engine whose ``state.epoch`` numbers the grid (e.g. the trainer); default: the evaluator.
        max_side: crop each sample to at most this many pixels per side (keeps grids small).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        max_samples: int = 4,
        mlflow_handler: Any | None = None,
        epoch_source: Engine | None = None,
        max_side: int = 256,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.max_samples = max_samples
        self.mlflow_handler = mlflow_handler
        self.epoch_source = epoch_source
        self.max_side = max_side
        self._rows: list[list[torch.Tensor]] = []
        self.last_path: Path | None = None

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self._rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _collect(self, engine: Engine) -> None:
        out = engine.state.output
        items = out if isinstance(out, list) else [out]
        for item in items:
            if len(self._rows) >= self.max_samples:
                return
            batch = [item.get(k) for k in (Keys.IMAGE, Keys.PRED, Keys.LABEL)]
            if batch[0] is None or batch[1] is None:
                return
            imgs = [b for b in batch if b is not None]
            if imgs[0].ndim == 4:  # not decollated: (B, C, H, W)
                for b in range(imgs[0].shape[0]):
                    if len(self._rows) < self.max_samples:
                        self._rows.append([self._crop(x[b]) for x in imgs])
            else:
                self._rows.append([self._crop(x) for x in imgs])

    def _crop(self, img: torch.Tensor) -> torch.Tensor:
        return img[..., : self.max_side, : self.max_side]

    def _write(self, engine: Engine) -> None:
        if not self._rows:
            return
        from PIL import Image

        epoch = (self.epoch_source or engine).state.epoch
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / f"grid_epoch_{epoch:03d}.png"
        tmp = path.with_suffix(".tmp.png")
        Image.fromarray(make_grid(self._rows)).save(tmp)
        os.replace(tmp, path)
        self.last_path = path
        handler = self.mlflow_handler
        if handler is not None and getattr(handler, "cur_run", None) is not None:
            handler.client.log_artifact(handler.cur_run.info.run_id, str(path), artifact_path="validation_grids")
