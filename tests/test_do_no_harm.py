"""Do no harm, with the shipped model on real files: good images pass through, no block grid is added.

These run the bundle's shipped ``models/model.pt`` through the CLI's path (``enhance_native``: the intensity
contract in and out) on real clinical DICOMs from pydicom-data and real images of the packaged sources.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydicom.data import get_testdata_file

from dpe_monai.cli import default_bundle
from dpe_monai.contract import to_unit
from dpe_monai.inference import Enhancer
from dpe_monai.inference.files import enhance_native, native_window
from dpe_monai.io import discover, read_image

REAL_DICOMS = ["CT_small.dcm", "MR_small.dcm", "693_UNCR.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm"]


@pytest.fixture(scope="module")
def enhancer() -> Enhancer:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return Enhancer.from_bundle(default_bundle(), device="cpu", precision="fp32")


def _read(name: str):
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not in pydicom-data")
    jobs, _ = discover([path])
    return read_image(jobs[0].paths, jobs[0].kind)


def _unit_pair(image, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi, _ = native_window(image)
    return to_unit(image.array, lo, hi), to_unit(out, lo, hi)


def grid_excess(z: np.ndarray, period: int) -> float:
    """How much the gradient energy of a 2-D image concentrates on one phase of a ``period``-pixel grid.

    Returns ``max_phase / median_phase`` of the mean squared neighbour difference, over both axes (1.0 = no grid).
    """
    worst = 0.0
    for axis in (0, 1):
        d = np.diff(z, axis=axis) ** 2
        d = np.moveaxis(d, axis, 0)
        n = (d.shape[0] // period) * period
        energy = d[:n].reshape(n // period, period, -1).mean(axis=(0, 2))
        worst = max(worst, float(energy.max() / max(np.median(energy), 1e-12)))
    return worst


@pytest.mark.parametrize(
    "name",
    [
        "MR-SIEMENS-DICOM-WithOverlays.dcm",
        "693_UNCR.dcm",
        "CT_small.dcm",
        "MR_small.dcm",
        "MR2_UNCR.dcm",
    ],
)
def test_good_real_scans_pass_through(enhancer, name):
    """A good clinical scan comes back at >= 35 dB of itself (in the contract's [0, 1]) and in its own range."""
    image = _read(name)
    out = enhance_native(image, enhancer)
    assert out.shape == image.array.shape
    assert out.min() >= image.array.min() and out.max() <= image.array.max()
    a, b = _unit_pair(image, out)
    psnr = 10 * math.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-12))
    assert psnr >= 35.0, f"{name}: output is only {psnr:.1f} dB of its input"


@pytest.mark.parametrize(
    "name",
    [
        "693_UNCR.dcm",
        "MR-SIEMENS-DICOM-WithOverlays.dcm",
        "MR2_UNCR.dcm",
        "CT_small.dcm",
        "MR_small.dcm",
    ],
)
def test_no_block_grid_on_real_dicoms(enhancer, name):
    """The output's gradient energy on every 8- and 16-pixel grid phase stays as even as the input's."""
    image = _read(name)
    out = enhance_native(image, enhancer)
    a, b = _unit_pair(image, out)
    for c in range(a.shape[0]):
        for period in (8, 16):
            before = grid_excess(a[c].astype(np.float64), period)
            after = grid_excess(b[c].astype(np.float64), period)
            assert after <= before * 1.05 + 0.05, f"{name}: period-{period} grid {before:.3f} -> {after:.3f}"


def test_grid_detector_sees_a_block_pattern():
    """The detector itself: a 16-px block offset added to a smooth image is flagged."""
    rng = np.random.default_rng(0)
    z = rng.normal(0.5, 0.02, (128, 128))
    blocks = np.kron(rng.normal(0, 0.05, (8, 8)), np.ones((16, 16)))
    assert grid_excess(z, 16) < 1.2
    assert grid_excess(z + blocks, 16) > 2.0


@pytest.mark.parametrize("name", REAL_DICOMS)
def test_good_8bit_grey_exports_pass_through(enhancer, name, tmp_path):
    """The same good scans exported as 8-bit grey PNGs (the contract's window, rounded), read back as a user's PNG
    (absolute 8-bit data), come back at >= 35 dB of themselves."""
    from PIL import Image

    image = _read(name)
    lo, hi, _ = native_window(image)
    u = to_unit(image.array, lo, hi)
    plane = u[0] if u.ndim == 3 else u
    path = tmp_path / f"{name}.png"
    Image.fromarray(np.round(np.clip(plane, 0, 1) * 255).astype(np.uint8).T).save(path)
    jobs, _ = discover([path])
    png = read_image(jobs[0].paths, jobs[0].kind)
    out = enhance_native(png, enhancer)
    a, b = png.array.astype(np.float64) / 255.0, out.astype(np.float64) / 255.0
    psnr = 10 * math.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-12))
    assert psnr >= 35.0, f"{name} as an 8-bit PNG: output is only {psnr:.1f} dB of its input"


def test_grey_files_take_the_scan_path(tmp_path):
    """The route flag comes from the file: an 8-bit grey PNG is a scan (``relative=True``), an 8-bit colour PNG is
    not, in the CLI's path (``enhance_native``) and in the benchmarks' loader (``load_clean``) alike."""
    from PIL import Image

    from dpe_monai.evaluators.common import load_clean
    from dpe_monai.transforms import is_grey

    rng = np.random.default_rng(0)
    grey = (rng.random((40, 48)) * 120).astype(np.uint8)
    colour = np.stack([grey, grey // 2, grey], axis=-1)
    # a grey scan stored in colour: channels a level or two apart (lossy colour storage), and a faint tint, which
    # is colour
    chroma = np.clip(grey[..., None].astype(int) + rng.integers(-2, 3, (40, 48, 3)), 0, 255).astype(np.uint8)
    tint = np.clip(grey[..., None].astype(int) + np.array([12, 0, -6]), 0, 255).astype(np.uint8)
    cast = np.clip(grey[..., None].astype(int) + np.array([2, 0, 1]), 0, 255).astype(np.uint8)
    images = {"grey": grey, "colour": colour, "chroma": chroma, "tint": tint, "grey_rgb_jpeg": cast}
    expect = {"grey": True, "colour": False, "chroma": True, "tint": False, "grey_rgb_jpeg": True}
    seen: dict[str, bool] = {}

    class Recorder:
        uses_convention = True

        def __init__(self, name: str) -> None:
            self.name = name

        def __call__(self, x: torch.Tensor, relative: bool | None = None) -> torch.Tensor:
            seen[self.name] = relative
            return x

    for name, arr in images.items():
        path = tmp_path / (f"{name}.jpg" if name.endswith("jpeg") else f"{name}.png")
        Image.fromarray(arr).save(path, **({"quality": 75} if name.endswith("jpeg") else {}))
        jobs, _ = discover([path])
        enhance_native(read_image(jobs[0].paths, jobs[0].kind), Recorder(name))
        loaded = load_clean({"image": str(path)})
        assert loaded["relative"] is expect[name], name
        if name in ("chroma", "grey_rgb_jpeg"):  # the near-grey rule decides, not exact greyness
            assert not is_grey(loaded["image"]), name
    assert seen == expect


def _png_roundtrip(plane: np.ndarray, path, enhancer) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    Image.fromarray(plane).save(path)
    jobs, _ = discover([path])
    png = read_image(jobs[0].paths, jobs[0].kind)
    return png.array.astype(np.float64) / 255.0, enhance_native(png, enhancer).astype(np.float64) / 255.0


def test_good_8bit_scan_that_does_not_fill_the_range_keeps_its_scale(enhancer, tmp_path):
    """A real 8-bit grey scan whose values end below 255 (MNI152's T1 from nilearn: black background, brightest
    tissue at about 235) comes back at >= 35 dB of itself (the scan path's window would otherwise stretch it, 25 dB
    before ``keep_scale``), while the same slice with its contrast and brightness cut is still stretched."""
    from dpe_monai.data.sources import mni152

    t1 = next(mni152()).load()[0].array
    plane = np.ascontiguousarray(np.rot90(t1[:, :, t1.shape[2] // 2])).astype(np.uint8)
    assert 200 < plane.max() < 250  # the source does not fill 0..255
    a, b = _png_roundtrip(plane, tmp_path / "mni.png", enhancer)
    psnr = 10 * math.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-12))
    assert psnr >= 35.0, f"a good 8-bit MNI slice comes back at only {psnr:.1f} dB of itself"
    m = plane.astype(np.float64).mean()
    dark = np.round(0.6 * (m + 0.5 * (plane - m))).astype(np.uint8)  # Algorithm 1: contrast 0.5, brightness 0.6
    a, b = _png_roundtrip(dark, tmp_path / "dark.png", enhancer)
    assert np.percentile(a, 99.5) < 0.5 and np.percentile(b, 99.5) > 0.9, "a dim, flat scan is no longer stretched"


def test_a_good_8bit_nifti_volume_is_windowed_as_a_scan(enhancer, tmp_path):
    """nibabel's real T1 (``anatomical.nii``) stored as uint8, values ending near 110: a NIfTI volume has no display
    range, so it is windowed relative to itself like its int16 twin and comes back nearly unchanged (it was read as
    a dark 8-bit photo and brightened about 2.4 times, 8 dB of itself)."""
    import os

    import nibabel as nib
    from nibabel.testing import data_path

    src = nib.load(os.path.join(data_path, "anatomical.nii"))
    vol = np.asarray(src.dataobj, dtype=np.float64)
    vol8 = np.round(np.clip(vol, 0, None) / vol.max() * 110).astype(np.uint8)
    path = tmp_path / "t1_u8.nii.gz"
    nib.save(nib.Nifti1Image(vol8, src.affine), path)
    jobs, _ = discover([path])
    image = read_image(jobs[0].paths, jobs[0].kind)
    lo, hi, rule = native_window(image)
    assert rule == "percentile" and hi <= 110
    out = enhance_native(image, enhancer)
    assert out.max() <= 110 and out.min() >= 0  # its own range
    a, b = image.array / 110.0, out / 110.0
    psnr = 10 * math.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-12))
    assert psnr >= 35.0, f"a good 8-bit NIfTI comes back at only {psnr:.1f} dB of itself"
    from monai.transforms import LoadImage

    from dpe_monai.transforms import IntensityWindow

    window = IntensityWindow(mode="auto")
    window(LoadImage(image_only=True, ensure_channel_first=True, dtype=None)(str(path)))
    assert window.last_params["rule"] == "percentile"  # the MONAI pipeline (training, MONAI Label) agrees


def test_a_near_white_image_is_not_stretched_into_texture(enhancer, tmp_path):
    """A near-uniform bright image (an 8-bit grey field at 244 +/- 1, one with faint specks, and pydicom's near-white
    RGB secondary capture ``SC_jpeg_no_color_transform.dcm``) comes back at >= 40 dB of itself: no degradation the
    enhancer was made for ends near white (``exposed``). Before, the window stretched the noise about 128x into
    cloud texture (6 dB) and the secondary capture came back with dark blobs (13 dB)."""
    rng = np.random.default_rng(3)
    flat = (244 + rng.integers(-1, 2, (128, 128))).astype(np.uint8)
    specks = np.full((128, 128), 244, np.uint8)
    specks[rng.integers(0, 128, 20), rng.integers(0, 128, 20)] = 240
    for name, plane in (("flat", flat), ("specks", specks)):
        a, b = _png_roundtrip(plane, tmp_path / f"{name}.png", enhancer)
        psnr = 10 * math.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-12))
        assert psnr >= 40.0, f"{name}: {psnr:.1f} dB"
    image = _read("SC_jpeg_no_color_transform.dcm")
    out = enhance_native(image, enhancer)
    a, b = _unit_pair(image, out)
    psnr = 10 * math.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-12))
    assert psnr >= 40.0, f"SC_jpeg_no_color_transform.dcm: {psnr:.1f} dB"


def test_a_black_or_nearly_empty_image_stays_black(enhancer, tmp_path):
    """A black 8-bit image with nine dim pixels (a nearly empty slice) comes back as it is, grey and RGB, and an all-
    black colour image stays black: there is nothing to stretch. Before, the window's width floor was centred on
    black, which came back mid-grey (128) around a white blob."""
    plane = np.zeros((96, 96), np.uint8)
    plane[40:43, 40:43] = 5
    a, b = _png_roundtrip(plane, tmp_path / "empty.png", enhancer)
    assert np.abs(a - b).max() <= 1.0 / 255.0
    a, b = _png_roundtrip(np.repeat(plane[..., None], 3, axis=-1), tmp_path / "empty_rgb.png", enhancer)
    assert np.abs(a - b).max() <= 1.0 / 255.0
    with torch.no_grad():
        black = torch.zeros(1, 3, 64, 64)
        assert float(enhancer(black, relative=False).abs().max()) == 0.0
        assert float(enhancer(black, relative=True).abs().max()) == 0.0


def test_the_window_tells_the_model_how_bright_a_scan_is(enhancer):
    """What docs/ENHANCE_CLI.md says of ``--window``: a good CT read with ``auto`` comes back nearly unchanged, while
    ``minmax`` puts its tissue low in the window and the model brightens it (soft tissue by over 100 HU): the option
    is for images that really are dark in that range."""
    image = _read("CT_small.dcm")
    hu = image.array[0]
    soft = (hu > 0) & (hu < 100)
    span = float(hu.max() - hu.min())
    for window, lowest_db, shift in (("auto", 45.0, (-10.0, 10.0)), ("minmax", 0.0, (100.0, 1000.0))):
        out = enhance_native(image, enhancer, window=window)[0]
        psnr = 10 * math.log10(span**2 / max(float(np.mean((out - hu) ** 2)), 1e-12))
        moved = float(np.mean((out - hu)[soft]))
        assert psnr >= lowest_db and shift[0] < moved < shift[1], (window, psnr, moved)


def test_saturated_colour_on_a_mid_grey_field_is_exposed_but_its_degraded_version_is_enhanced(enhancer):
    """pydicom's ``GDCMJ2K_TextGBR.dcm`` (red, green and blue text on a mid-grey field) came back white (6.6 dB of
    itself): its grey bright end (the green text) is mid-grey, so it read as a darkened image. A channel at 255 cannot
    survive Algorithm 1's brightness factor (<= 0.8, every channel), so the clean gate counts each channel's bright
    end too; the same image degraded in either noise order stays under the rule and is still enhanced."""
    from dpe_monai.networks.clean_gate import channel_top
    from dpe_monai.transforms import RandLowQuality

    image = _read("GDCMJ2K_TextGBR.dcm")
    out = enhance_native(image, enhancer)
    a, b = _unit_pair(image, out)
    psnr = 10 * math.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-12))
    assert psnr >= 40.0, f"GDCMJ2K_TextGBR.dcm: {psnr:.1f} dB"
    clean = torch.from_numpy(a.astype(np.float32))
    for order in ("before", "after"):
        sim = RandLowQuality(noise_order=order)
        sim.set_random_state(0)
        lq = sim(clean)
        assert float(channel_top(lq[None])) < 0.9
        y = enhancer(lq[None])[0]
        assert float((y - lq).abs().mean()) > 0.05, order  # enhanced, not passed through
