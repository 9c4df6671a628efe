"""MONAI Label infer task that runs the DPE bundle and returns the enhanced image in the input's own format.

MONAI Label has no "enhancement" task type, so the task registers as ``InferType.OTHERS`` (``"others"``), its
generic type. The result is an **image**, not a label: it has the input's format, dtype, geometry and units
(NIfTI header and affine, DICOM derived-series headers, PNG/TIFF bit depth), so clients should open it as a
volume or image, not as a segmentation.

The task reuses the project's file path end to end: :func:`dpe_monai.io.read_image` and
:func:`~dpe_monai.io.check_values` (bad inputs fail with a one-line message), :func:`dpe_monai.inference.enhance_native`
through the shared :class:`~dpe_monai.inference.Enhancer` built from the bundle (tiled, precision-checked, 3-D volumes
slice by slice), and :func:`dpe_monai.io.write_image` (atomic, format-preserving).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from dpe_monai.inference import Enhancer, enhance_native
from dpe_monai.io import BadImageError, NativeImage, check_values, discover, read_image, write_image

__all__ = ["EnhanceInfer", "LoadNatived", "SERIES_AS_FOLDER"]

logger = logging.getLogger(__name__)

NATIVE_KEY = "dpe_native"
SERIES_AS_FOLDER = "dpe_series_as_folder"  # request flag: return a DICOM series result as a folder, not a zip


def read_native(path: str | os.PathLike) -> NativeImage:
    """Read an image file, or a folder holding one DICOM series (how MONAI Label passes DICOM studies)."""
    path = Path(path)
    if not path.is_dir():
        return read_image(path)
    jobs, problems = discover([path])
    if problems:
        raise BadImageError(*problems[0])
    if len(jobs) != 1 or jobs[0].kind != "dicom":
        raise BadImageError(path, f"a folder input must hold exactly one DICOM series; found {len(jobs)} images")
    return read_image(jobs[0].paths, "dicom")


class LoadNatived:
    """Pre-transform: read ``data[key]`` (a path) as a :class:`~dpe_monai.io.NativeImage` and validate it.

    The image is stored under ``"dpe_native"``; ``data[key]`` becomes its ``(C, *spatial)`` array, so MONAI
    Label's logging shows the shape.

    Args:
        key: the request key holding the image path.
        max_pixels: refuse images with more spatial elements than this (None: no limit).
    """

    def __init__(self, key: str = "image", max_pixels: int | None = None) -> None:
        self.key = key
        self.max_pixels = max_pixels

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        d = dict(data)
        native = read_native(d[self.key])
        check_values(native.name, native.array, self.max_pixels)
        d[NATIVE_KEY] = native
        d[self.key] = native.array
        return d


class EnhanceInfer(BasicInferTask):
    """Enhance an image with the DPE bundle (``configs/inference.json`` ``network_def`` + ``models/model.pt``).

    Request options (MONAI Label passes them with the image): ``device`` (``"cpu"``/``"cuda"``), ``precision``,
    ``tile_size``, ``overlap``, ``axis`` (slicing axis of volumes). The result file has the input's extension;
    a DICOM series folder comes back as a zip of the derived series (or as a folder, for pipelines, when the
    request sets ``dpe_series_as_folder``).

    Args:
        bundle: the DPE bundle folder.
        weights: weights file (default ``<bundle>/models/model.pt``).
        precision, tile_size, overlap, axis: defaults for :class:`~dpe_monai.inference.Enhancer`.
        max_pixels: refuse larger images (spatial elements; None: no limit).
        dimension: what MONAI Label clients are told (3: volumes, enhanced slice by slice; 2-D images work too).
        description: shown by MONAI Label clients.
    """

    def __init__(
        self,
        bundle: str | os.PathLike,
        weights: str | os.PathLike | None = None,
        precision: str = "auto",
        tile_size: int = 1024,
        overlap: float = 0.25,
        axis: int = 2,
        max_pixels: int | None = 256 * 2**20,
        dimension: int = 3,
        description: str = "Deep Perceptual Enhancement (DPE): returns the enhanced image in the input's format",
    ) -> None:
        self.bundle = Path(bundle)
        weights = Path(weights) if weights else self.bundle / "models" / "model.pt"
        self.max_pixels = max_pixels
        options = {"precision": precision, "tile_size": int(tile_size), "overlap": float(overlap), "axis": int(axis)}
        super().__init__(
            path=str(weights),
            network=None,
            type=InferType.OTHERS,  # MONAI Label has no enhancement type: "others" is its generic type
            labels=None,
            dimension=dimension,
            description=description,
            config=options,
        )
        self._enhancers: dict[tuple, Enhancer] = {}

    def is_valid(self) -> bool:
        """Valid when the bundle has its inference config and weights."""
        return (self.bundle / "configs" / "inference.json").is_file() and Path(self.path[0]).is_file()

    def pre_transforms(self, data: dict[str, Any] | None = None) -> list:
        return [LoadNatived(self.input_key, self.max_pixels)]

    def post_transforms(self, data: dict[str, Any] | None = None) -> list:
        return []

    def enhancer(self, device: str, options: dict[str, Any]) -> Enhancer:
        """The bundle's :class:`~dpe_monai.inference.Enhancer` for ``device`` and options, cached (reloaded when
        the weights file changes)."""
        weights = Path(self.path[0])
        opts = {k: options.get(k, self._config[k]) for k in ("precision", "tile_size", "overlap", "axis")}
        opts = {
            "precision": str(opts["precision"]),
            "tile_size": int(opts["tile_size"]),
            "overlap": float(opts["overlap"]),
            "axis": int(opts["axis"]),
        }  # REST clients may send strings
        key = (str(device), weights.stat().st_mtime_ns, *sorted(opts.items()))
        if key not in self._enhancers:
            logger.info(f"Loading DPE bundle {self.bundle} on {device} with {opts}")
            self._enhancers = {key: Enhancer.from_bundle(self.bundle, weights=weights, device=device, **opts)}
        return self._enhancers[key]

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda") -> dict:
        """Enhance ``data["dpe_native"]`` through the shared file path; the result (file units) goes to ``pred``."""
        enhancer = self.enhancer(device, data)
        data[self.output_label_key] = enhance_native(data[NATIVE_KEY], enhancer)
        data["dpe_precision"] = enhancer.precision
        return data

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[str, dict]:
        """Write the result in the input's format to a temporary file (MONAI Label sends it and removes it)."""
        native: NativeImage = data[NATIVE_KEY]
        values = data[self.output_label_key]
        info = {
            "format": native.kind,
            "dtype": str(native.dtype),
            "shape": list(native.array.shape),
            "precision": data.get("dpe_precision"),
            "result": "image",
        }
        if len(native.sources) == 1:
            name = native.sources[0].name.lower()
            suffix = ".nii.gz" if name.endswith(".nii.gz") else native.sources[0].suffix or ".dcm"
            fd, out = tempfile.mkstemp(prefix="dpe_enhanced_", suffix=suffix)
            os.close(fd)
            write_image(native, values, [Path(out)])
            return out, info
        folder = Path(tempfile.mkdtemp(prefix="dpe_enhanced_series_"))
        outs = [folder / (p.name if p.suffix else f"{p.name}.dcm") for p in native.sources]
        write_image(native, values, outs)
        if data.get(SERIES_AS_FOLDER):
            return str(folder), info
        archive = shutil.make_archive(str(folder), "zip", folder)
        shutil.rmtree(folder, ignore_errors=True)
        return archive, info
