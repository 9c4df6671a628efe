"""Atomic 'latest' checkpoint that a killed run resumes from (MONAI's CheckpointSaver writes non-atomically)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["LatestCheckpoint"]

logger = logging.getLogger(__name__)


def _unwrap(obj: Any) -> Any:
    return obj.module if isinstance(obj, torch.nn.parallel.DistributedDataParallel) else obj


class LatestCheckpoint:
    """Save ``<save_dir>/<filename>`` every ``epoch_interval`` epochs (and/or ``iteration_interval`` iterations)
    through a temporary file and ``os.replace``, so a SIGKILL never leaves a truncated checkpoint; with
    ``resume=True`` restore it when the engine starts.

    The file holds ``{name: obj.state_dict()}`` for ``save_dict`` plus ``"engine": {"epoch", "iteration"}`` of the
    engine the handler is attached to (so configs need not reference the trainer from its own handlers). On
    resume the engine continues from the saved epoch with the *configured* ``max_epochs``, so a run can also be
    extended. Only rank 0 writes in a distributed run; every rank loads.

    Args:
        save_dir: checkpoint folder.
        save_dict: objects with ``state_dict``/``load_state_dict`` (networks, optimisers, EMA models, scalers).
        filename: checkpoint file name.
        epoch_interval: save every this many epochs (0 = never at epoch end).
        iteration_interval: also save every this many iterations (0 = never).
        resume: load the checkpoint (if it exists) when the engine starts.
        strict: with False, objects the checkpoint lacks (e.g. a discriminator added for a second, adversarial
            training stage) keep their fresh state and a warning names them; with True that is an error.
        map_location: ``torch.load`` map location for resuming.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: dict[str, Any],
        filename: str = "latest.pt",
        epoch_interval: int = 1,
        iteration_interval: int = 0,
        resume: bool = False,
        map_location: Any = "cpu",
        strict: bool = False,
    ) -> None:
        self.path = Path(save_dir) / filename
        self.save_dict = {k: v for k, v in save_dict.items() if v is not None}
        self.epoch_interval = epoch_interval
        self.iteration_interval = iteration_interval
        self.resume = resume
        self.map_location = map_location
        self.strict = strict

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        if self.resume:
            engine.add_event_handler(Events.STARTED, self.load)
        if self.epoch_interval > 0:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.epoch_interval), self.save)
        if self.iteration_interval > 0:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.iteration_interval), self.save)

    def save(self, engine: Engine) -> Path | None:
        """Write the checkpoint atomically; returns its path (None on non-zero ranks)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_rank() > 0:
            return None
        state: dict[str, Any] = {name: _unwrap(obj).state_dict() for name, obj in self.save_dict.items()}
        state["engine"] = {"epoch": engine.state.epoch, "iteration": engine.state.iteration}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)
        return self.path

    def load(self, engine: Engine) -> bool:
        """Restore objects and the engine's epoch/iteration from the checkpoint; False if there is none."""
        if not self.path.exists():
            logger.warning("resume requested but %s does not exist: starting from scratch", self.path)
            return False
        state = torch.load(self.path, map_location=self.map_location, weights_only=True)
        for name, obj in self.save_dict.items():
            if name not in state:
                if self.strict:
                    raise KeyError(f"checkpoint {self.path} has no entry {name!r}; it holds {sorted(state)}")
                logger.warning("checkpoint %s has no %r: it starts fresh", self.path, name)
                continue
            _unwrap(obj).load_state_dict(state[name])
        engine.state.epoch = int(state["engine"]["epoch"])
        engine.state.iteration = int(state["engine"]["iteration"])
        logger.info("resumed from %s at epoch %d, iteration %d", self.path, engine.state.epoch, engine.state.iteration)
        return True
