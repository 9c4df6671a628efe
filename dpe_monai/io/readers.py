"""The image-file layer's decoders as a MONAI ``ImageReader``, so ``LoadImage(d)`` reads files exactly as the CLI does.

Use it in code as ``LoadImaged(keys="image", reader=DPEImageReader())`` and in a bundle config as
``{"_target_": "LoadImaged", "keys": "image", "reader": "dpe_monai.io.readers.DPEImageReader"}`` (MONAI resolves the
dotted name).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ImageReader

from dpe_monai.io.dicom import read_dicom_header, slice_sort_key
from dpe_monai.io.formats import detect_kind
from dpe_monai.io.image import NativeImage, monai_layout, native_values

__all__ = ["DPEImageReader", "monai_layout", "native_values"]


class DPEImageReader(ImageReader):
    """MONAI ``ImageReader`` on top of :func:`dpe_monai.io.read_image`: the CLI's decoders, values and refusals.

    Values are the CLI's (:class:`~dpe_monai.io.NativeImage`): DICOM rescale slope/intercept applied, MONOCHROME1
    inverted, JPEG lossless / JPEG-LS / JPEG 2000 decoded; NIfTI scaling applied. They are returned in the stored
    sample type when that is exact (see :func:`native_values`; ``uint16`` as ``int32``, which torch handles
    everywhere), else float64. The channel axis is first (``original_channel_dim = 0``), C = 1 or 3. Spatial axes
    follow MONAI (see :func:`monai_layout`), so the reader is a drop-in for ``PILReader``/``PydicomReader``; pass
    ``layout="native"`` to get the CLI's ``(C, rows, cols[, depth])`` instead.

    Meta: ``affine`` (NIfTI's own, else identity), ``spatial_shape``, ``source_format`` (the kind), ``bit_depth``
    (bits per stored sample), ``stored_dtype``; for DICOM also ``WindowCenter``/``WindowWidth`` when present,
    ``Modality``, ``PhotometricInterpretation``, ``PatientID``, ``SeriesInstanceUID``.

    Args:
        strict: as :func:`~dpe_monai.io.read_image`: False (default) decodes palette/alpha/PALETTE COLOR to grey/RGB,
            True refuses them as the enhancement command does.
        layout: ``"monai"`` (default) or ``"native"``.
    """

    def __init__(self, strict: bool = False, layout: str = "monai", **kwargs: Any) -> None:
        super().__init__()
        if layout not in ("monai", "native"):
            raise ValueError(f"layout must be 'monai' or 'native', got {layout!r}")
        self.strict, self.layout, self.kwargs = strict, layout, kwargs

    def verify_suffix(self, filename: Sequence[str | Path] | str | Path) -> bool:
        """Whether every file is one the image-file layer reads (by name, or by the DICOM signature)."""
        names = [filename] if isinstance(filename, (str, Path)) else list(filename)
        return bool(names) and all(Path(n).is_dir() or detect_kind(n) is not None for n in names)

    def read(self, data: Sequence[str | Path] | str | Path, **kwargs: Any) -> NativeImage | list[NativeImage]:
        """Read a file, or a DICOM series given as several files or as its folder (ordered along the slice normal)."""
        from dpe_monai.io import read_image

        names = [Path(data)] if isinstance(data, (str, Path)) else [Path(n) for n in data]
        if len(names) == 1 and names[0].is_dir():
            names = sorted(p for p in names[0].iterdir() if p.is_file() and detect_kind(p) == "dicom")
        if len(names) > 1:
            names = sorted(names, key=lambda p: slice_sort_key(read_dicom_header(p), p))
            return read_image(names, "dicom", strict=self.strict)
        return read_image(names[0], strict=self.strict)

    def get_data(self, img: NativeImage | list[NativeImage]) -> tuple[np.ndarray, dict]:
        """``(array, meta)`` with the channel axis first."""
        image = img[0] if isinstance(img, list) else img
        arr = native_values(image)
        if arr.dtype == np.uint16:
            arr = arr.astype(np.int32)
        if self.layout == "monai":
            arr = monai_layout(image, arr)
        spatial = arr.shape[1:]
        affine = np.asarray(image.info["affine"], float) if image.kind == "nifti" else np.eye(len(spatial) + 1)
        if affine.shape[0] != len(spatial) + 1:  # a 2-D NIfTI: MONAI wants a (spatial + 1)^2 affine
            affine = np.eye(len(spatial) + 1)
        meta: dict = {
            "affine": affine,
            "original_affine": affine.copy(),
            "spatial_shape": np.asarray(spatial),
            "original_channel_dim": 0,
            "source_format": image.kind,
            "bit_depth": 8 * np.dtype(image.dtype).itemsize,
            "stored_dtype": str(np.dtype(image.dtype)),
        }
        if image.kind == "dicom":
            ds = image.info["headers"][0]
            for key in ("WindowCenter", "WindowWidth", "Modality", "PhotometricInterpretation", "PatientID",
                        "SeriesInstanceUID"):  # fmt: skip
                value = ds.get(key, None)
                if value in (None, ""):
                    continue
                if not key.startswith("Window"):
                    meta[key] = str(value)
                else:
                    meta[key] = float(value) if isinstance(value, (int, float)) else [float(v) for v in value]
        return np.ascontiguousarray(arr), meta
