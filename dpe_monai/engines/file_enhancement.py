"""The bundle's inference workflow: a dataset of the files under a folder and an evaluator that enhances them.

``configs/inference.json`` builds :class:`EnhanceFileDataset` (one item per image file or DICOM series, found by
:func:`dpe_monai.io.discover`) and runs :class:`FileEnhancementEvaluator` over it. Each iteration reads one item in
its own format, enhances it through the bundle's inferer (:class:`~dpe_monai.inference.EnhancerInferer`, the one
fast path) with :func:`~dpe_monai.inference.enhance_native`, and writes the result in the same format, with the
rules of :func:`~dpe_monai.inference.enhance_files`: outputs mirror each file's path under ``dataset_dir`` as
``<stem><postfix><ext>``, inputs are never overwritten, existing outputs are skipped unless ``overwrite``, and one bad
file never stops the run. :meth:`FileEnhancementEvaluator.raise_on_failure` ends a bundle run with an error naming
every failed file.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from monai.engines import Evaluator

from dpe_monai.inference.enhancer import EnhancerInferer
from dpe_monai.inference.files import EnhanceSummary, discover_inputs, enhance_job, job_name
from dpe_monai.io import (
    InputJob,
)

__all__ = ["EnhanceFileDataset", "FileEnhancementEvaluator", "FailedFilesError", "collate_items", "require_folder"]


class FailedFilesError(RuntimeError):
    """Raised at the end of a bundle inference run when any file failed; the message names every one."""


def require_folder(path: str | Path | None, option: str = "dataset_dir") -> Path:
    """``path`` as an existing folder, else a ``ValueError`` naming the bundle option to set."""
    if path is None or str(path).strip() == "":
        raise ValueError(f"`{option}` is required: run the bundle with --{option} DIR")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ValueError(f"`{option}` {folder}: no such folder")
    return folder


class EnhanceFileDataset(torch.utils.data.Dataset):
    """One item per image file (or DICOM series) under ``dataset_dir``, in path order.

    Each item is ``{"name": str, "job": InputJob}``. Paths that cannot be used at all (an empty folder) are kept in
    ``self.problems`` as ``(path, message)`` and reported as failures by the evaluator.

    Args:
        dataset_dir: the input folder (required; searched recursively, hidden files skipped).
        output_dir: the run's output folder: nothing inside it is read as input (earlier outputs are not enhanced
            again when it lies inside ``dataset_dir``).
    """

    def __init__(self, dataset_dir: str | Path | None, output_dir: str | Path) -> None:
        self.dataset_dir = require_folder(dataset_dir, "dataset_dir")
        if Path(output_dir).expanduser().resolve() == self.dataset_dir.resolve():
            raise ValueError(
                f"`output_dir` {output_dir}: is the input folder `dataset_dir`; choose another folder (a new "
                "subfolder works: earlier outputs inside the input folder are never read as inputs)"
            )
        jobs, problems = discover_inputs([self.dataset_dir], output_dir)
        self.jobs: list[InputJob] = jobs
        self.problems: list[tuple[str, str]] = [(str(p), f"{p}: {msg}") for p, msg in problems]
        if not jobs and not problems:
            self.problems.append((str(self.dataset_dir), f"{self.dataset_dir}: no supported image files"))
        self.inputs = {p.resolve() for job in jobs for p in job.paths}

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        job = self.jobs[index]
        return {"name": job_name(job), "job": job}


def collate_items(batch: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``DataLoader`` collate function for :class:`EnhanceFileDataset`: keep the items as a list."""
    return list(batch)


class FileEnhancementEvaluator(Evaluator):
    """Enhance every item of an :class:`EnhanceFileDataset` into ``output_dir``, in the files' own formats.

    The summary of the last run is ``self.summary`` (an :class:`~dpe_monai.inference.EnhanceSummary`); each
    iteration's output is ``[{"name", "status", "outputs" | "message"}]``.

    Args:
        device: device of the network.
        val_data_loader: a ``DataLoader`` over an :class:`EnhanceFileDataset` with ``collate_fn=collate_items``.
        network: the enhancement network.
        inferer: ``inferer(x, network)`` for ``(B, C, H, W[, D])`` tensors in [0, 1], e.g.
            :class:`~dpe_monai.inference.EnhancerInferer`.
        output_dir: where outputs are written (mirroring each input's path under ``dataset_dir``).
        postfix: added to each output's stem.
        overwrite: replace existing outputs (never an input).
        max_pixels: refuse images with more spatial elements than this (None = no limit).
        window: intensity window, see :func:`~dpe_monai.inference.enhance_native`.
        progress: show a progress bar.
        val_handlers: Ignite handlers attached to the evaluator.
    """

    def __init__(
        self,
        device: torch.device | str,
        val_data_loader: torch.utils.data.DataLoader,
        network: torch.nn.Module,
        inferer: Any,
        output_dir: str | Path,
        postfix: str = "_dpe",
        overwrite: bool = False,
        max_pixels: int | None = 64_000_000,
        window: str = "container",
        progress: bool = False,
        val_handlers: Sequence | None = None,
    ) -> None:
        super().__init__(device=device, val_data_loader=val_data_loader, val_handlers=val_handlers, decollate=False)
        self.network = network
        self.inferer = inferer
        self.output_dir = Path(output_dir)
        self.postfix = postfix
        self.overwrite = bool(overwrite)
        self.max_pixels = max_pixels
        self.window = window
        self.summary = EnhanceSummary()
        if progress:
            from ignite.handlers import ProgressBar

            ProgressBar(desc="enhancing").attach(self)

    @property
    def precision(self) -> str | None:
        """The precision the inferer chose for the network (after the first image), else None."""
        enhancer = getattr(self.inferer, "_cache", {}).get(id(self.network))
        return getattr(enhancer, "precision", None)

    def enhance(self, x: torch.Tensor, relative: bool | None = None) -> torch.Tensor:
        """``(B, C, H, W[, D])`` in [0, 1] -> same, through the inferer; ``relative``: the intensity contract's flag
        (:func:`~dpe_monai.inference.enhance_native` passes it), forwarded when the inferer takes it."""
        if isinstance(self.inferer, EnhancerInferer):
            return self.inferer(x, self.network, relative=relative)
        return self.inferer(x, self.network)

    enhance.uses_convention = True  # type: ignore[attr-defined]  # enhance_native passes ``relative=``

    def run(self, global_epoch: int = 1) -> None:  # type: ignore[override]
        """Enhance the whole dataset; ``self.summary`` holds what happened (also for an empty folder)."""
        start = time.perf_counter()
        dataset = getattr(self.data_loader, "dataset", None)
        self.summary = EnhanceSummary(failed=list(getattr(dataset, "problems", [])))
        self.network.eval()
        if len(self.data_loader) > 0:
            super().run(global_epoch)
        self.summary.seconds = time.perf_counter() - start

    def _iteration(self, engine: Any, batchdata: list[dict[str, Any]]) -> list[dict[str, Any]]:  # type: ignore[override]
        inputs = getattr(self.data_loader.dataset, "inputs", set())
        return [self._enhance_item(item["name"], item["job"], inputs) for item in batchdata]

    def _enhance_item(self, name: str, job: InputJob, inputs: set[Path]) -> dict[str, Any]:
        return enhance_job(
            job,
            self.output_dir,
            self.enhance,
            self.summary,
            inputs,
            self.postfix,
            self.overwrite,
            False,
            self.max_pixels,
            self.window,
        )

    def raise_on_failure(self) -> EnhanceSummary:
        """Raise :class:`FailedFilesError` naming every failed file; otherwise return the summary."""
        if self.summary.failed:
            lines = "\n".join(f"  {message}" for _, message in self.summary.failed)
            raise FailedFilesError(f"{len(self.summary.failed)} file(s) failed:\n{lines}")
        return self.summary
