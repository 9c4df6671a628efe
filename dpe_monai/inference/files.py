"""Enhance files on disk: read in the file's format, window to [0, 1], enhance, map back, write the same format."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dpe_monai.contract import from_unit, is_scan, to_unit, window_bounds
from dpe_monai.io import (
    BadImageError,
    InputJob,
    NativeImage,
    OutputCollisionError,
    check_values,
    describe_error,
    discover,
    output_paths,
    read_image,
    write_image,
)
from dpe_monai.transforms.preprocess import is_near_grey

__all__ = ["discover_inputs", "enhance_native", "enhance_files", "EnhanceSummary", "native_window"]

logger = logging.getLogger(__name__)


def _dataset_window(ds: object) -> tuple[float, float] | None:
    """The first (WindowCenter, WindowWidth) of a pydicom dataset, or None."""
    values = []
    for name in ("WindowCenter", "WindowWidth"):
        v = getattr(ds, name, None)
        if v is None:
            return None
        try:
            v = float(v[0]) if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else float(v)
        except (TypeError, ValueError, IndexError):
            return None
        values.append(v)
    return (values[0], values[1]) if values[1] >= 1 else None


def native_window(image: NativeImage, window: str = "auto") -> tuple[float, float, str]:
    """``(lo, hi, rule)``: the intensity contract's window (:mod:`dpe_monai.contract`) for a file read from disk."""
    dicom_window = image.info.get("dicom_window") if isinstance(image.info, dict) else None
    if dicom_window is None and image.kind == "dicom":
        headers = image.info.get("headers") or [None]
        dicom_window = _dataset_window(headers[0])
    try:
        container = image.container_range()
    except Exception:  # noqa: BLE001 - a container range is only needed by mode "container"
        container = None
    return window_bounds(
        image.array, image.dtype, window, dicom_window=dicom_window, container=container, fmt=image.kind
    )


def enhance_native(
    image: NativeImage, enhancer: Callable[[torch.Tensor], torch.Tensor], window: str = "auto"
) -> np.ndarray:
    """Enhance a :class:`NativeImage`; returns values in the file's units, same layout as ``image.array``.

    The image is mapped to [0, 1] by the intensity contract (:mod:`dpe_monai.contract`; ``window`` is one of its
    modes, default ``"auto"``: 0..255 for 8-bit data, else the 0.5-99.5 % percentiles over the body), enhanced
    (2-D directly, 3-D slice by slice through the enhancer's 5-D path; a scan, i.e. a grey image or one windowed
    relative to itself, with the flag :func:`~dpe_monai.contract.is_scan` that routes it), and the network's
    change is applied back in the file's units (values outside the window keep their distance from it) and
    clipped to the scan's own range. The window used is recorded in ``image.info["window"]`` (``(lo, hi)``) so
    writers can add a display preset (DICOM WindowCenter/WindowWidth) that shows the result as the network made it.
    """
    try:
        lo, hi, rule = native_window(image, window)
    except ValueError as e:  # a window this file cannot have (e.g. "dicom" without window tags)
        raise BadImageError(image.name, str(e)) from None
    x = to_unit(image.array, lo, hi)
    t = torch.from_numpy(np.ascontiguousarray(x))[None]
    if getattr(enhancer, "uses_convention", False):
        y = enhancer(t, relative=is_scan(rule, is_near_grey(x)))[0].numpy()
    else:
        y = enhancer(t)[0].numpy()
    try:
        container = image.container_range()
    except Exception:  # noqa: BLE001
        container = None
    image.info["window"] = (lo, hi)
    return from_unit(y, image.array, lo, hi, rule, container)


def discover_inputs(
    inputs: Sequence[str | Path], output_dir: str | Path, postfix: str = "_dpe"
) -> tuple[list[InputJob], list]:
    """:func:`~dpe_monai.io.discover` the inputs, leaving out everything inside ``output_dir``.

    Earlier outputs are never read as inputs, even when the output folder lies inside an input folder (a file
    named explicitly is still taken). Two inputs whose outputs would have the same path (``a/x.png`` and
    ``b/x.png`` given together) cannot both be written: the one given first on the command line keeps it (within
    one folder argument, the first in path order), each later one becomes a problem that names the other, so
    nothing is lost silently and ``--overwrite`` never replaces one result by another.

    Returns:
        ``(jobs, problems)`` as :func:`~dpe_monai.io.discover`.
    """
    out = Path(output_dir).resolve()
    jobs, problems = discover(list(inputs))
    named = {Path(p).resolve() for p in inputs if Path(p).is_file()}  # files named explicitly are always taken

    def inside(p: Path) -> bool:
        r = p.resolve()
        return r not in named and (r == out or out in r.parents)

    args = [Path(p).resolve() for p in inputs]

    def given_at(job: InputJob) -> int:  # the first argument that names the job's file or a folder above it
        first = job.paths[0].resolve()
        return next((i for i, a in enumerate(args) if a == first or a in first.parents), len(args))

    kept, claimed = [], {}
    for job in sorted((j for j in jobs if not any(inside(p) for p in j.paths)), key=given_at):  # stable: path order
        targets = [t.resolve() for t in output_paths(job, output_dir, postfix)]
        taken = next((t for t in targets if t in claimed), None)
        if taken is None:
            claimed.update((t, job_name(job)) for t in targets)
            kept.append(job)
        else:
            problems.append(
                (
                    job.paths[0],
                    f"its output {taken} is also the output of {claimed[taken]}; enhance "
                    "inputs with the same name into separate output folders (nothing written for this one)",
                )
            )
    kept.sort(key=lambda j: str(j.paths[0]))
    return kept, [pr for pr in problems if not inside(Path(pr[0]))]


@dataclass
class EnhanceSummary:
    """What a batch run did: outputs per input, skipped and failed files with their messages."""

    done: list[tuple[str, list[str]]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 when everything succeeded, 2 when anything failed."""
        return 2 if self.failed else 0

    def table(self, dry_run: bool = False) -> str:
        """A small plain-text summary table: inputs (a DICOM series is one) by outcome, then the files written.

        Args:
            dry_run: the run only planned its outputs: ``planned`` and ``would write`` instead of ``done`` and
                ``written``.
        """
        rows = [("planned" if dry_run else "done", len(self.done)), ("skipped", len(self.skipped))]
        rows.append(("failed", len(self.failed)))
        lines = ["status   inputs", "-------  ------"] + [f"{k:<7}  {v:>5}" for k, v in rows]
        files = sum(len(outs) for _, outs in self.done)
        lines.append(f"{'would write' if dry_run else 'written':<7}  {files:>5} file{'s' if files != 1 else ''}")
        lines.append(f"time     {self.seconds:.1f} s")
        return "\n".join(lines)


def job_name(job: InputJob) -> str:
    """How reports name a job: its file, or its folder and size for a DICOM series."""
    return str(job.paths[0]) if len(job.paths) == 1 else f"{job.paths[0].parent} (series of {len(job.paths)})"


def enhance_job(
    job: InputJob,
    output_dir: str | Path,
    enhancer: Callable[[torch.Tensor], torch.Tensor] | None,
    summary: EnhanceSummary,
    inputs: Set[Path] = frozenset(),
    postfix: str = "_dpe",
    overwrite: bool = False,
    dry_run: bool = False,
    max_pixels: int | None = 64_000_000,
    window: str = "auto",
) -> dict[str, Any]:
    """Enhance one discovered file or series into ``output_dir`` and record the outcome in ``summary``.

    The per-file rules shared by :func:`enhance_files` and the bundle's file evaluator: never write over an input
    (``inputs``: every input of the batch, resolved), skip existing outputs unless ``overwrite``, read, check,
    enhance in the scan's own units (:func:`enhance_native`) and write atomically; any error becomes one line
    naming the file. A file of a DICOM series that cannot be read (e.g. truncated) is a failure of its own, named
    in one line, and the series' other files are still enhanced.

    Returns:
        ``{"name", "status": "done" | "skipped" | "failed", "outputs" | "message", "dropped"}``; ``dropped``: the
        series files left out, as ``(path, message)`` (already in ``summary.failed``).
    """
    name = job_name(job)
    outs = output_paths(job, output_dir, postfix)
    dropped: list[tuple[str, str]] = []
    try:
        for out in outs:
            if any(out.resolve() == p.resolve() for p in job.paths):
                raise OutputCollisionError(f"{out}: output path is an input file; refusing to overwrite it")
        existing = [o for o in outs if o.exists()]
        if existing and not overwrite:
            message = f"{existing[0]}: output exists (use --overwrite to replace it)"
            summary.skipped.append((name, message))
            return {"name": name, "status": "skipped", "message": message}
        for out in outs:  # another job's input (e.g. an earlier result enhanced again into the same folder)
            if out.resolve() in inputs:
                raise OutputCollisionError(f"{out}: output path is an input file; refusing to overwrite it")
        if not dry_run:
            image = read_image(job.paths, job.kind, partial=True)
            dropped = list(image.info.get("dropped", [])) if isinstance(image.info, dict) else []
            if dropped:  # the series' unreadable files: each its own failure; the rest are still enhanced
                name = job_name(InputJob(job.kind, list(image.sources), job.root))
                summary.failed.extend(dropped)
                outs = [o for p, o in zip(job.paths, outs) if p in image.sources]
            check_values(image.name, image.array, max_pixels)
            write_image(image, enhance_native(image, enhancer, window), outs)
    except (BadImageError, OutputCollisionError) as e:
        message = str(e)
    except Exception as e:  # one bad file must not stop the batch: report it with its name, on one line
        message = f"{name}: {describe_error(e, limit=400)}"
    else:
        summary.done.append((name, [str(o) for o in outs]))
        return {"name": name, "status": "done", "outputs": [str(o) for o in outs], "dropped": dropped}
    summary.failed.append((name, message))
    return {"name": name, "status": "failed", "message": message, "dropped": dropped}


def enhance_files(
    inputs: Sequence[str | Path],
    output_dir: str | Path,
    enhancer: Callable[[torch.Tensor], torch.Tensor] | None,
    postfix: str = "_dpe",
    overwrite: bool = False,
    dry_run: bool = False,
    max_pixels: int | None = 64_000_000,
    progress: bool = False,
    on_error: Callable[[str, str], None] | None = None,
    window: str = "auto",
) -> EnhanceSummary:
    """Enhance every supported file under ``inputs`` into ``output_dir``; one bad file never stops the batch.

    Args:
        inputs: files and/or folders (recursive).
        output_dir: outputs mirror each input's path relative to its root, named ``<stem><postfix><ext>``.
        enhancer: ``(B, C, H, W[, D]) [0,1] -> same`` callable (e.g. :class:`~dpe_monai.inference.Enhancer`); may be
            None with ``dry_run``.
        postfix: added to each output's stem.
        overwrite: replace existing outputs. Inputs are never replaced: an output path equal to its own input
            fails, and with ``overwrite`` so does one equal to any other input (without it, it is skipped as an
            existing output).
        dry_run: list what would be written without reading pixels or writing anything.
        max_pixels: refuse images with more spatial elements than this (None = no limit).
        progress: show a tqdm progress bar.
        on_error: called as ``on_error(name, message)`` for each failure (e.g. to print it at once).
        window: intensity window mode of the contract, see :func:`enhance_native`.

    Returns:
        An :class:`EnhanceSummary`.
    """
    start = time.perf_counter()
    summary = EnhanceSummary()
    jobs, problems = discover_inputs(inputs, output_dir, postfix)
    for path, msg in problems:
        summary.failed.append((str(path), f"{path}: {msg}"))
        if on_error:
            on_error(str(path), f"{path}: {msg}")
    all_inputs = {p.resolve() for job in jobs for p in job.paths}
    iterator: Sequence[InputJob] = jobs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(jobs, desc="enhancing", unit="image")
    for job in iterator:
        record = enhance_job(
            job, output_dir, enhancer, summary, all_inputs, postfix, overwrite, dry_run, max_pixels, window
        )
        if on_error:
            for path, message in record.get("dropped", []):
                on_error(path, message)
            if record["status"] == "failed":
                on_error(record["name"], record["message"])
    summary.seconds = time.perf_counter() - start
    return summary


def report_and_track(
    summary: EnhanceSummary,
    output_dir: str | Path,
    tracking_uri: str | None = None,
    experiment_name: str = "dpe_enhancement",
    run_name: str = "inference",
    params: dict | None = None,
) -> EnhanceSummary:
    """Print the summary table and failures, write ``<output_dir>/summary.json`` and log the run to MLflow."""
    import json

    from dpe_monai.tracking import default_tracking_uri, log_run

    for _, message in summary.failed:
        print(f"FAILED {message}")
    print(summary.table())
    report = Path(output_dir) / "summary.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(
        json.dumps(
            {"done": summary.done, "skipped": summary.skipped, "failed": summary.failed, "seconds": summary.seconds},
            indent=1,
        )
    )
    metrics = {"n_done": len(summary.done), "n_skipped": len(summary.skipped), "n_failed": len(summary.failed)}
    metrics["seconds"] = summary.seconds
    log_run(tracking_uri or default_tracking_uri(output_dir), experiment_name, run_name, params, metrics, [report])
    return summary
