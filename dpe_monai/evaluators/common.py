"""Shared pieces of the evaluators: datalists, the clean/degraded loading protocol, enhancement callables."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dpe_monai.contract import is_scan
from dpe_monai.transforms.preprocess import is_near_grey

__all__ = [
    "EnhanceFn",
    "load_datalist",
    "clean_transforms",
    "load_clean",
    "degrade",
    "enhance",
    "item_id",
    "timed",
    "save_json",
]

#: an enhancement callable: ``(B, C, H, W)`` float tensor in [0, 1] -> same shape in [0, 1].
EnhanceFn = Callable[[torch.Tensor], torch.Tensor]


def load_datalist(
    datalist: str | os.PathLike | Mapping[str, Any] | Sequence[Mapping[str, Any]],
    split: str = "test",
    base_dir: str | os.PathLike | None = None,
) -> list[dict]:
    """Items of one split of any MONAI datalist.

    Args:
        datalist: a MONAI datalist JSON path (paths resolved against its folder, or ``base_dir``), a dict of splits,
            or a ready list of items.
        split: key of the split (``"training"``, ``"validation"``, ``"test"``...); ignored for a list.
        base_dir: folder that relative paths in a dict datalist are resolved against.
    """
    from monai.data import load_decathlon_datalist

    if isinstance(datalist, (str, os.PathLike)):
        return [dict(i) for i in load_decathlon_datalist(str(datalist), False, split, base_dir=base_dir)]
    if isinstance(datalist, Mapping):
        items = [dict(i) for i in datalist[split]]
    else:
        items = [dict(i) for i in datalist]
    if base_dir is not None:
        for it in items:
            for key in ("image", "label"):
                if isinstance(it.get(key), str) and not os.path.isabs(it[key]):
                    it[key] = str(Path(base_dir) / it[key])
    return items


def item_id(item: Mapping[str, Any]) -> str:
    """A stable identifier: the image path's last three parts (or ``item["id"]``)."""
    if "id" in item:
        return str(item["id"])
    return "/".join(Path(str(item["image"])).parts[-3:])


def clean_transforms(keys: str | Sequence[str] = "image", max_side: int | None = None) -> list:
    """The evaluation loading protocol as MONAI transforms (``keys[0]`` is the image, any others labels).

    ``LoadImaged`` (channel first, file dtype), ``IntensityWindowd(mode="auto")`` (the contract: 8-bit /255,
    otherwise the percentile window), ``ToRGBd`` and, with ``max_side``, a centre crop of every key. Shared by
    :func:`load_clean`, the quality protocol (:func:`dpe_monai.evaluators.quality.pair_transforms`) and the
    bundle's ``evaluate.json``.
    """
    from monai.transforms import CenterSpatialCropd, LoadImaged

    from dpe_monai.transforms import IntensityWindowd, ToRGBd

    keys = [keys] if isinstance(keys, str) else list(keys)
    tfs: list = [
        LoadImaged(keys=keys, image_only=True, ensure_channel_first=True, dtype=None),
        IntensityWindowd(keys=keys[0], mode="auto", params_postfix="window"),
        ToRGBd(keys=keys[0]),
    ]
    if max_side:
        tfs.append(CenterSpatialCropd(keys=keys, roi_size=(max_side, max_side)))
    return tfs


def load_clean(item: Mapping[str, Any], label: bool = False, max_side: int | None = None) -> dict[str, Any]:
    """Load an item the way the bundle's ``evaluate.json`` does: ``(3, H, W)`` float32 in [0, 1].

    ``LoadImaged`` (so 2-D files come as ``(C, W, H)``, MONAI's convention, matching the datalist's
    ``[x0, y0, x1, y1]`` boxes with x the first spatial axis), ``IntensityWindowd(mode="auto")`` (8-bit: /255,
    otherwise the contract's percentile window), ``ToRGBd``, and a centre crop to ``max_side``. With ``label`` the
    item's ``"label"`` is loaded too, as ``(H, W)`` int64 (same crop).

    Returns:
        ``{"image": Tensor, "label": Tensor | None, "rule": str | None, "relative": bool}``; ``rule`` is the
        contract's window rule, ``relative`` the network's route flag (:func:`~dpe_monai.contract.is_scan`), decided
        from the clean values as the CLI decides it from the file.
    """
    from monai.transforms import Compose

    keys = ["image", "label"] if label else ["image"]
    tfs = clean_transforms(keys, max_side)
    data = Compose(tfs)({k: item[k] for k in keys})
    img = torch.as_tensor(data["image"]).float().as_subclass(torch.Tensor)
    rule = data.get("image_window", {}).get("rule")
    lab = None
    if label:
        lab = torch.as_tensor(data["label"]).as_subclass(torch.Tensor)[0].round().long()
    return {"image": img, "label": lab, "rule": rule, "relative": is_scan(rule, is_near_grey(img))}


def degrade(
    image: torch.Tensor, seed: int, identifier: str, mode: str = "paper", **kwargs: Any
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Degrade ``image`` ``(C, H, W)`` in [0, 1] with the simulator, seeded per item by ``SeededLowQualityd``.

    Args:
        image: clean image.
        seed: global seed.
        identifier: the item's stable id (mixed into the seed).
        mode: simulator mode: ``"paper"``, ``"reference_code"`` or a realistic mode (``"mri_bias_rician"``,
            ``"lowdose_ct"``, ``"xray_underexposed"``; :mod:`dpe_monai.transforms.realistic`).
        kwargs: forwarded to :class:`~dpe_monai.transforms.RandLowQuality` (e.g. ``brightness_threshold=None`` to
            degrade dark images the paper's gate would skip).

    Returns:
        ``(low_quality, params)``; ``params["applied"]`` is False when the luminance gate skipped the image.
    """
    from dpe_monai.transforms import SeededLowQualityd

    sim = SeededLowQualityd(
        keys="image", lq_keys="lq", params_key="lq_params", seed=seed, id_key="id", mode=mode, **kwargs
    )
    out = sim({"image": np.asarray(image, dtype=np.float32), "id": identifier})
    return torch.as_tensor(np.asarray(out["lq"], dtype=np.float32)), dict(out["lq_params"])


def for_item(fn: EnhanceFn, relative: bool | None = None, lq_params: Mapping[str, Any] | None = None) -> EnhanceFn:
    """``fn`` bound to what one item may tell it: the true degradation for the oracle ceiling (``uses_params``),
    else the network's route flag (``uses_convention``: ``relative=True`` for scans, i.e. grey images and
    percentile/DICOM-windowed ones, :func:`~dpe_monai.contract.is_scan`, as the CLI passes it). Other callables are
    returned as they are."""
    if getattr(fn, "uses_params", False):
        return lambda x: fn(x, lq_params)
    if getattr(fn, "uses_convention", False):
        return lambda x: fn(x, relative=relative)
    return fn


def enhance(fn: EnhanceFn, x: torch.Tensor, where: str = "") -> torch.Tensor:
    """Apply an enhancement callable to ``(C, H, W)`` or ``(B, C, H, W)``; returns float32 CPU in [0, 1].

    Small excursions past [0, 1] are clipped; an output of another shape, with NaN/inf, or far outside [0, 1]
    (outside [-1, 2]: e.g. 0..255 units) is an error naming ``where`` (the enhancer and the item).
    """
    single = x.ndim == 3
    with torch.inference_mode():
        y = fn(x[None] if single else x)
    y = torch.as_tensor(y).detach().float().cpu()
    shape = (1, *x.shape) if single else tuple(x.shape)
    at = f"{where}: " if where else ""
    if y.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"{at}enhancement changed the image size: {tuple(x.shape)} -> {tuple(y.shape)}")
    if tuple(y.shape) != shape:
        raise ValueError(f"{at}enhancement returned shape {tuple(y.shape)} for an input of shape {shape}")
    if not torch.isfinite(y).all():
        raise ValueError(f"{at}enhancement returned {int((~torch.isfinite(y)).sum())} NaN/inf values")
    lo, hi = float(y.min()), float(y.max())
    if lo < -1.0 or hi > 2.0:
        raise ValueError(f"{at}enhancement returned values in [{lo:.4g}, {hi:.4g}]; it must return [0, 1] units")
    y = y.clamp(0.0, 1.0)
    return y[0] if single else y


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)``."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _plain(obj: Any) -> Any:
    """NaN/inf -> None, tensors -> lists, paths -> str (standard JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, torch.Tensor):
        return _plain(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_json(path: str | os.PathLike, payload: Any, indent: int = 1) -> Path:
    """Write an evaluator result as standard JSON (NaN -> null) with a final newline; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(payload), indent=indent, ensure_ascii=False) + "\n")
    return path
