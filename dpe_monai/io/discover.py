"""Find enhanceable inputs: files and folders (recursive), DICOM files grouped into series."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom

from dpe_monai.io.dicom import group_series, read_dicom_header
from dpe_monai.io.formats import NIFTI_SUFFIXES, detect_kind

__all__ = ["InputJob", "discover", "detect_kind", "NIFTI_SUFFIXES"]


@dataclass
class InputJob:
    """One unit of work: a file, or the files of one DICOM series, with the root it was found under."""

    kind: str
    paths: list[Path]
    root: Path

    @property
    def relative(self) -> Path:
        """Path of the (first) file relative to the root it was found under."""
        first = self.paths[0]
        return first.relative_to(self.root) if first.is_relative_to(self.root) else Path(first.name)


def discover(inputs: list[str | Path]) -> tuple[list[InputJob], list[tuple[Path, str]]]:
    """Expand files and folders into jobs.

    Args:
        inputs: files and/or folders (searched recursively; hidden files are skipped).

    Returns:
        ``(jobs, problems)``: jobs sorted by path; problems as ``(path, message)`` for missing inputs and empty
        folders. DICOM files are grouped into series within each folder, and across the files given one by one.
        Files of unknown type inside folders are ignored silently; given explicitly they are problems.
    """
    jobs: list[InputJob] = []
    problems: list[tuple[Path, str]] = []
    named: list[tuple[str, pydicom.Dataset]] = []  # DICOM files given one by one (a shell glob of a series)
    for item in map(Path, inputs):
        if not item.exists():
            problems.append((item, "no such file or directory"))
            continue
        root = item if item.is_dir() else item.parent
        files = (
            sorted(p for p in item.rglob("*") if p.is_file() and not p.name.startswith("."))
            if item.is_dir()
            else [item]
        )
        if item.is_dir() and not files:
            problems.append((item, "folder is empty: no files to enhance"))
            continue
        dicoms: list[tuple[str, pydicom.Dataset]] = []
        for path in files:
            kind = detect_kind(path)
            if kind is None:
                if not item.is_dir():
                    problems.append((path, f"unsupported file type {path.suffix or '(no extension)'!r}"))
                continue
            if kind != "dicom":
                jobs.append(InputJob(kind, [path], root))
                continue
            try:
                (dicoms if item.is_dir() else named).append((str(path), read_dicom_header(path)))
            except Exception:  # unreadable: let the reader report it as a single-file job
                jobs.append(InputJob("dicom", [path], root))
        for group in group_series(dicoms):
            jobs.append(InputJob("dicom", [Path(p) for p in group], root))
    for group in group_series(named):  # grouped across the arguments, as the folder holding them would be
        jobs.append(InputJob("dicom", [Path(p) for p in group], Path(group[0]).parent))
    jobs.sort(key=lambda j: str(j.paths[0]))
    return jobs, problems
