"""Odd real files from pydicom-data and tiny images: one clear line each, never a traceback or a harmful output.

From a user sweep of every pydicom-data file through ``dpe-monai enhance``: RT Dose grids (dose values, not
intensities) were smoothed and written back (changes of up to 4,326 of 459,000); files with pixel data but no
``Rows`` failed with ``AttributeError: 'FileDataset' object has no attribute 'Rows'``; a header pydicom reads but
cannot write again failed with pydicom's traceback squeezed onto one line; a bare DICOM data set (no file header)
was called "not a DICOM file"; pydicom printed a warning about each odd
header value without naming the file; a 3x3 colour image came back white.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from dpe_monai.cli import main
from dpe_monai.inference import enhance_files

CASES = {
    "rtdose.dcm": "RT Dose Storage object (SOP class 1.2.840.10008.5.1.4.1.1.481.2) is not an image",
    "badVR.dcm": "RT Dose Storage object (SOP class 1.2.840.10008.5.1.4.1.1.481.2) is not an image",
    "meta_missing_tsyntax.dcm": "DICOM file has pixel data but no Rows or Columns: its image size is unknown",
    "SC_rgb_jpeg.dcm": "cannot write the enhanced DICOM: pydicom cannot encode this file's header again",
    "ExplVR_LitEndNoMeta.dcm": "a DICOM data set without the DICOM file header (preamble, 'DICM' prefix, file meta)",
}


def _copy(names: list[str], folder: Path) -> list[Path]:
    folder.mkdir()
    out = []
    for name in names:
        path = get_testdata_file(name, download=False)
        if path is None:
            pytest.skip(f"{name} is not in pydicom-data")
        out.append(Path(shutil.copy(path, folder / name)))
    return out


def test_odd_dicoms_fail_with_one_line_naming_the_file(tmp_path):
    files = _copy(sorted(CASES), tmp_path / "in")
    summary = enhance_files([tmp_path / "in"], tmp_path / "out", lambda x: x)
    failed = dict(summary.failed)
    assert len(failed) == len(CASES) and not summary.done
    for path in files:
        message = failed[str(path)]
        assert message.startswith(f"{path}: {CASES[path.name]}"), message
        assert "\n" not in message and "Traceback" not in message
    assert not any((tmp_path / "out").rglob("*.dcm"))  # nothing written, no temporary left


def test_pydicom_warnings_that_name_no_file_are_not_printed(tmp_path, capsys):
    _copy(["badVR.dcm"], tmp_path / "in")
    mode = pydicom.config.settings.reading_validation_mode
    pydicom.config.settings.reading_validation_mode = pydicom.config.WARN
    try:
        assert main(["enhance", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--dry-run"]) == 0
        assert main(["enhance", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--precision", "fp32"]) == 2
    finally:
        pydicom.config.settings.reading_validation_mode = mode
    captured = capsys.readouterr()
    assert "Invalid value for VR" not in captured.err + captured.out
    assert "badVR.dcm: RT Dose Storage object" in captured.err + captured.out


def test_a_tiny_image_is_refused_not_whitened(tmp_path):
    (tmp_path / "in").mkdir()
    rgb = np.array([[[52, 176, 90]] * 3] * 3, np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in" / "tiny.png")
    Image.fromarray(np.full((8, 8), 90, np.uint8) + np.eye(8, dtype=np.uint8)).save(tmp_path / "in" / "small.png")
    summary = enhance_files([tmp_path / "in"], tmp_path / "out", lambda x: x)
    ((name, message),) = summary.failed
    assert message == (
        f"{name}: image is too small to enhance (spatial size (3, 3); at least 8 pixels a side: its whole-image "
        "statistics decide how it is enhanced)"
    )
    assert [Path(n).name for n, _ in summary.done] == ["small.png"]  # 8x8 still goes through
