"""Do no harm on edge images: flat, near-white, black and nearly empty files through the CLI's path.

    python -m benchmarks.edge_images [--bundle DIR] [--output JSON]

Each image is written as a file, read back, enhanced as ``dpe-monai enhance`` does (:func:`enhance_native`, the
intensity contract in and out, fp32) and scored against itself: PSNR(output, input) in the contract's [0, 1], and
the output's range in the file's units. A good edge image should come back nearly unchanged (>= 35 dB):

- ``near_white_field``: an 8-bit grey field at 244 +/- 1 (seeded);
- ``specks_on_white``: 244 with 20 specks at 240;
- ``black_nine_dim_pixels``: black with a 3x3 patch at 5 (a nearly empty slice);
- ``dark_field``: 10 +/- 1, a stated limit: a darkened low-contrast image looks the same, so it is stretched;
- ``SC_jpeg_no_color_transform.dcm``: pydicom-data's near-white RGB secondary capture.

Writes ``benchmarks/results/edge_images.json`` by default (not read by the report).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import numpy as np

from dpe_monai.inference.files import enhance_native, native_window


def _images(folder: Path) -> dict[str, Path]:
    from PIL import Image
    from pydicom.data import get_testdata_file

    rng = np.random.default_rng(3)
    planes = {
        "near_white_field": (244 + rng.integers(-1, 2, (128, 128))).astype(np.uint8),
        "specks_on_white": np.full((128, 128), 244, np.uint8),
        "black_nine_dim_pixels": np.zeros((96, 96), np.uint8),
        "dark_field": (10 + rng.integers(-1, 2, (128, 128))).astype(np.uint8),
    }
    planes["specks_on_white"][rng.integers(0, 128, 20), rng.integers(0, 128, 20)] = 240
    planes["black_nine_dim_pixels"][40:43, 40:43] = 5
    paths = {}
    for name, plane in planes.items():
        paths[name] = folder / f"{name}.png"
        Image.fromarray(plane).save(paths[name])
    dicom = get_testdata_file("SC_jpeg_no_color_transform.dcm", download=False)
    if dicom is not None:
        paths["SC_jpeg_no_color_transform.dcm"] = Path(dicom)
    return paths


def main(argv: list[str] | None = None) -> int:
    from dpe_monai.cli import default_bundle
    from dpe_monai.contract import to_unit
    from dpe_monai.inference import Enhancer
    from dpe_monai.io import read_image

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "edge_images.json")
    args = ap.parse_args(argv)
    enhancer = Enhancer.from_bundle(args.bundle or default_bundle(), device="cpu", precision="fp32")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in _images(Path(tmp)).items():
            image = read_image(path)
            out = enhance_native(image, enhancer)
            lo, hi, _ = native_window(image)
            a, b = to_unit(image.array, lo, hi), to_unit(out, lo, hi)
            mse = float(np.mean((a.astype(np.float64) - b) ** 2))
            rows[name] = {
                "psnr_db": 100.0 if mse <= 1e-10 else 10 * math.log10(1.0 / mse),
                "input_range": [float(image.array.min()), float(image.array.max())],
                "output_range": [float(out.min()), float(out.max())],
            }
            row = rows[name]
            print(f"{name:32s} {row['psnr_db']:6.1f} dB  {row['input_range']} -> {row['output_range']}")
    command = "python -m benchmarks.edge_images" + (f" --bundle {args.bundle}" if args.bundle else "")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"command": command, "precision": "fp32", "images": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
