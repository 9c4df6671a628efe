"""The resumable 'latest' checkpoint: ignite's ``Checkpoint`` with an atomic ``DiskSaver``, loaded by MONAI's
``CheckpointLoader`` rules."""

from __future__ import annotations

import datetime
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from ignite.handlers import Checkpoint, DiskSaver

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ignite.engine import Engine

__all__ = ["BestSoFar", "LatestCheckpoint", "ReplaceThenRemoveSaver", "TrainerProgress", "resumable_run_name"]

logger = logging.getLogger(__name__)

_DISK_SAVER_TMP = re.compile(r"tmp[a-z0-9_]{8}")  # tempfile.NamedTemporaryFile's names, DiskSaver's partial writes


class ReplaceThenRemoveSaver(DiskSaver):
    """ignite ``DiskSaver`` (atomic: temporary file + ``os.replace``) that removes superseded files only after the
    new checkpoint is on disk.

    ignite's ``Checkpoint`` removes the file it supersedes *before* it saves the new one; with a fixed file name
    (``latest.pt``) that opens a window in which a killed run has no checkpoint at all. Here removal waits for the
    next successful save, and a file that is about to be replaced is never removed.
    """

    def __init__(self, dirname: str | os.PathLike, **kwargs: Any) -> None:
        super().__init__(dirname, atomic=True, require_empty=False, **kwargs)
        self._pending: set[str] = set()

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, filename, metadata)
        for old in self._pending - {filename}:
            if (self.dirname / old).exists():
                super().remove(old)
        self._pending.clear()

    def remove(self, filename: str) -> None:
        self._pending.add(filename)


class TrainerProgress:
    """The part of an engine's state a checkpoint needs: ``epoch``, ``iteration``, ``epoch_length``, ``max_epochs``.

    ignite's ``Engine.state_dict`` also pickles every state attribute a workflow registers as a user key (MONAI's
    GAN trainer registers its networks, optimisers and losses), which ``torch.load(weights_only=True)`` refuses.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def state_dict(self) -> dict[str, int | None]:
        s = self.engine.state
        return {"epoch": s.epoch, "iteration": s.iteration, "epoch_length": s.epoch_length, "max_epochs": s.max_epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.engine.state.epoch = int(state["epoch"])
        self.engine.state.iteration = int(state["iteration"])


class BestSoFar:
    """The best-so-far record of a MONAI ``CheckpointSaver(save_key_metric=True)``, as a checkpoint entry.

    Put it in the resumable checkpoint's ``save_dict`` so a resumed run keeps comparing against the best key metric
    of the *whole* run: without it the saver starts from nothing and overwrites ``model_best.pt`` with the first
    validation after the resume, however worse. ``saver`` None (a disabled saver, e.g. on ranks > 0): nothing.
    """

    def __init__(self, saver: Any) -> None:
        self.saver = saver

    def state_dict(self) -> dict[str, Any]:
        tracker = getattr(self.saver, "_key_metric_checkpoint", None)
        return {} if tracker is None else dict(tracker.state_dict())

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.saver is not None and state:
            self.saver.load_state_dict(dict(state))


class LatestCheckpoint:
    """Save ``<save_dir>/<filename>`` every ``epoch_interval`` epochs (and/or ``iteration_interval`` iterations) so a
    SIGKILL never leaves a truncated or missing checkpoint; with ``resume=True`` restore it when the engine starts.

    The file is ignite's ``Checkpoint`` format: ``{name: obj.state_dict()}`` for ``save_dict`` plus ``"trainer"``,
    the progress of the engine the handler is attached to (:class:`TrainerProgress`, so configs need not reference
    the trainer from its own handlers). As with MONAI's ``CheckpointLoader``, the engine continues from the saved
    epoch with the *configured* ``max_epochs``, so a run can be extended. Only rank 0 writes in a distributed run;
    every rank loads. Temporary files of a write that was killed midway are removed when the run resumes.

    Args:
        save_dir: checkpoint folder.
        save_dict: objects with ``state_dict``/``load_state_dict`` (networks, optimisers, EMA models, scalers);
            None values are skipped.
        filename: checkpoint file name.
        epoch_interval: save every this many epochs (0 = never at epoch end).
        iteration_interval: also save every this many iterations (0 = never).
        resume: load the checkpoint (if it exists) when the engine starts.
        strict: with False, objects the checkpoint lacks (e.g. a discriminator added for a second, adversarial
            training stage, or an optimiser over a different parameter set) keep their fresh state and a warning
            names them; with True that is an error.
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
        self.checkpoint: Checkpoint | None = None

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        self.checkpoint = Checkpoint(
            {**self.save_dict, "trainer": TrainerProgress(engine)},
            ReplaceThenRemoveSaver(self.path.parent),
            filename_pattern=self.path.name,
            n_saved=1,
        )
        if self.resume:
            engine.add_event_handler(Events.STARTED, self.load)
        if self.epoch_interval > 0:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.epoch_interval), self.checkpoint)
        if self.iteration_interval > 0:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.iteration_interval), self.checkpoint)

    def load(self, engine: Engine) -> bool:
        """Restore the objects and the engine's epoch/iteration from the checkpoint; False if there is none."""
        for stale in self.path.parent.glob("tmp*"):
            if stale.is_file() and _DISK_SAVER_TMP.fullmatch(stale.name):
                logger.warning("removing %s, a checkpoint write that was interrupted", stale)
                stale.unlink()
        if not self.path.exists():
            logger.warning("resume requested but %s does not exist: starting from scratch", self.path)
            return False
        state = torch.load(self.path, map_location=self.map_location, weights_only=True)
        to_load = {"trainer": TrainerProgress(engine), **self.save_dict}
        missing = sorted(set(to_load) - set(state))
        if missing and self.strict:
            raise KeyError(f"checkpoint {self.path} has no entries {missing}; it holds {sorted(state)}")
        for name in missing:
            logger.warning("checkpoint %s has no %r: it starts fresh", self.path, name)
        Checkpoint.load_objects({k: v for k, v in to_load.items() if k in state}, state)
        max_epochs = engine.state.max_epochs
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise ValueError(
                f"{self.path} is at epoch {engine.state.epoch}, beyond max_epochs={max_epochs}: raise max_epochs to "
                "train further."
            )
        logger.info("resumed from %s at epoch %d, iteration %d", self.path, engine.state.epoch, engine.state.iteration)
        return True


def resumable_run_name(
    save_dir: str | os.PathLike,
    prefix: str,
    resume: bool,
    filename: str = "run_name.txt",
    tracking_uri: str | None = None,
    experiment_name: str | None = None,
) -> str:
    """The tracking run name of a training whose checkpoints live in ``save_dir``; a resumed run reuses it.

    A fresh run gets ``<prefix>_<ISO time>`` and records it in ``<save_dir>/<filename>`` (rank 0 only, atomically).
    With ``resume`` the recorded name is returned, so MONAI's ``MLFlowHandler``, which continues an unfinished run
    of the same name, logs the resumed training into the run the killed one left open instead of a new run. Given
    ``tracking_uri`` and ``experiment_name``, a run that had already *finished* (a training extended with a larger
    ``max_epochs``) is reopened first (:func:`~dpe_monai.tracking.reopen_run`), so it too continues its own run.
    """
    import torch.distributed as dist

    rank0 = not (dist.is_available() and dist.is_initialized() and dist.get_rank() > 0)
    path = Path(save_dir) / filename
    if resume and path.is_file():
        name = path.read_text(encoding="utf-8").strip()
        if name:
            if rank0 and tracking_uri and experiment_name:
                from dpe_monai.tracking import reopen_run

                reopen_run(tracking_uri, experiment_name, name)
            return name
    name = f"{prefix}_{datetime.datetime.now().isoformat(timespec='seconds')}"
    if rank0:
        from dpe_monai.io.atomic import atomic_write

        with atomic_write(path) as tmp:
            tmp.write_text(name + "\n", encoding="utf-8")
    return name
