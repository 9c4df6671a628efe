"""Atomic, non-destructive output paths whose permissions follow the umask."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_write", "check_not_input", "OutputCollisionError", "umask_mode"]


class OutputCollisionError(ValueError):
    """An output path equals (or is) one of the input files."""


def check_not_input(out_path: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Raise :class:`OutputCollisionError` if ``out_path`` is any of ``inputs`` (same file, links resolved)."""
    out = Path(out_path).resolve()
    for src in inputs:
        src_p = Path(src)
        if out == src_p.resolve() or (out.exists() and src_p.exists() and os.path.samefile(out, src_p)):
            raise OutputCollisionError(f"{out_path}: output path is an input file; refusing to overwrite it")


def umask_mode() -> int:
    """``0o666 & ~umask``: the mode ``open()`` would give a new file (0o644 under umask 022).

    The umask is read from ``/proc/self/status`` where there is one (reading it with ``os.umask`` means setting it,
    which races with other threads creating files).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_write(out_path: str | os.PathLike):
    """Yield a temporary path next to ``out_path``; on success rename it onto ``out_path`` (``os.replace``).

    On any exception the temporary file is removed, so no partial output is left behind. The temporary name
    keeps the final suffix (``.nii.gz``, ``.png``...) so writers that infer the format from it still work.
    ``tempfile.mkstemp`` creates the file 0600; before the rename it gets ``0o666 & ~umask`` like any new file.
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(out.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=suffix, dir=out.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomically(out_path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and atomically move the result to ``out_path``; returns ``out_path``."""
    with atomic_write(out_path) as tmp:
        writer(tmp)
    return Path(out_path)
