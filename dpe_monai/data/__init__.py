"""Data: the packaged collection of real medical images that install offline, and the user-folder loader.

* :func:`build_collection` / ``python -m dpe_monai.data.build``: MONAI datalist + 2-D image files, split by subject;
* :func:`scan_folder`: a user's NIfTI / DICOM / PNG / JPEG / TIFF files, read through the image-file layer
  :mod:`dpe_monai.io` (this package is its client; ``dpe_monai.io`` never imports ``dpe_monai.data``).

Names are imported lazily, so ``python -m dpe_monai.data.build`` and light imports stay cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_collection": "dpe_monai.data.build",
    "main": "dpe_monai.data.build",
    "scan_folder": "dpe_monai.data.folders",
    "display_array": "dpe_monai.data.folders",
    "BadFileWarning": "dpe_monai.io.image",
    "BadImageError": "dpe_monai.io.image",
    "SOURCES": "dpe_monai.data.sources",
    "assign_split": "dpe_monai.data.splits",
    "check_disjoint": "dpe_monai.data.splits",
    "enough_items": "dpe_monai.data.splits",
    "split_items": "dpe_monai.data.splits",
    "ensure_collection": "dpe_monai.data.ensure",
    "default_dataset_dir": "dpe_monai.data.ensure",
    "degradable_items": "dpe_monai.data.degradable",
    "group_balanced_weights": "dpe_monai.data.balance",
    "colour_fit_items": "dpe_monai.data.colour_fit_data",
    "write_colour_datalist": "dpe_monai.data.colour_fit_data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
