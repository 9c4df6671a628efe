"""``dpe-monai enhance`` over the committed bad-input corpus: every message, every good output, inputs untouched."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from dpe_monai.cli import main
from dpe_monai.io import read_image
from tests.make_bad_inputs import main as make_corpus
from tests.tiny_bundle import make_tiny_bundle

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
EXPECTED = json.loads((CORPUS / "EXPECTED.json").read_text())


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _out_path(rel: str, out: Path) -> Path:
    name = Path(rel).name
    ext = ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix
    return out / Path(rel).parent / (name[: -len(ext)] + "_dpe" + ext)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Run the command once over the whole corpus; returns (output dir, exit code, stdout, stderr, digests before)."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("corpus_run")
    bundle = make_tiny_bundle(tmp / "bundle")
    before = _digests(CORPUS)
    out = tmp / "out"
    argv = [
        "enhance",
        str(CORPUS),
        "--output",
        str(out),
        "--bundle",
        str(bundle),
        "--device",
        "cpu",
        "--precision",
        "fp32",
    ]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv + ["--max-pixels", str(EXPECTED["max_pixels"])])
    return out, code, stdout.getvalue(), stderr.getvalue(), before


def _same_content(a: Path, b: Path) -> bool:
    """Same bytes, or (for files whose compressor may differ between zlib builds) the same decoded content."""
    if a.read_bytes() == b.read_bytes():
        return True
    if a.name.endswith(".gz"):
        return gzip.decompress(a.read_bytes()) == gzip.decompress(b.read_bytes())
    if a.suffix == ".png":
        with Image.open(a) as x, Image.open(b) as y:
            return x.mode == y.mode and np.array_equal(np.asarray(x), np.asarray(y))
    return False


def test_corpus_is_reproducible(tmp_path):
    """The committed corpus is what the script makes (so it can be regenerated and reviewed)."""
    fresh = make_corpus([str(tmp_path / "corpus")])
    assert sorted(_digests(fresh)) == sorted(_digests(CORPUS))
    for rel in _digests(CORPUS):
        assert _same_content(CORPUS / rel, fresh / rel), rel


def test_every_bad_file_reported_once_on_one_line(run):
    out, code, stdout, stderr, _ = run
    assert code == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(EXPECTED["bad"]), stderr
    for rel, fragment in EXPECTED["bad"].items():
        path = str(CORPUS / rel)
        mine = [line for line in errors if line.startswith(f"error: {path}: ")]
        assert len(mine) == 1, (rel, errors)
        assert fragment in mine[0], (rel, mine[0])
        assert not _out_path(rel, out).exists(), rel


def test_summary_table_counts(run):
    _, _, stdout, _, _ = run
    table = dict(line.split()[:2] for line in stdout.splitlines() if line.split()[:1] in (["done"], ["failed"]))
    assert table == {"done": str(len(EXPECTED["good"]) - 2), "failed": str(len(EXPECTED["bad"]))}  # series = 1 job


def test_inputs_unchanged_and_every_good_output_written(run):
    out, _, _, _, before = run
    assert _digests(CORPUS) == before  # no input byte changed
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporaries left behind
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(str(_out_path(rel, Path())) for rel in EXPECTED["good"])

    for rel in EXPECTED["good"]:
        src, dst = read_image(CORPUS / rel), read_image(_out_path(rel, out))
        assert (dst.kind, dst.dtype, dst.array.shape) == (src.kind, src.dtype, src.array.shape), rel
        assert np.isfinite(dst.array).all() and not np.array_equal(dst.array, src.array), rel


def test_good_outputs_keep_format_details(run):
    out = run[0]
    good = CORPUS / "good"
    a, b = nib.load(good / "volume.nii.gz"), nib.load(out / "good" / "volume_dpe.nii.gz")
    assert np.array_equal(a.affine, b.affine) and a.shape == b.shape and b.get_data_dtype() == a.get_data_dtype()
    assert a.header.binaryblock == b.header.binaryblock
    series_src = [pydicom.dcmread(good / "series" / f"slice{i}.dcm") for i in range(3)]
    series_out = [pydicom.dcmread(out / "good" / "series" / f"slice{i}_dpe.dcm") for i in range(3)]
    assert len({d.SeriesInstanceUID for d in series_out}) == 1
    for s, o in zip(series_src, series_out):
        assert o.SeriesInstanceUID != s.SeriesInstanceUID and o.SOPInstanceUID != s.SOPInstanceUID
        assert list(o.ImageType)[:2] == ["DERIVED", "SECONDARY"] and o.SeriesDescription.endswith("DPE enhanced")
        for tag in ("Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation", "ImagePositionPatient"):
            assert o.get(tag) == s.get(tag), tag
