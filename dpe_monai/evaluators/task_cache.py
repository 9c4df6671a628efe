"""Trained task models kept on disk, so a downstream rerun with a new enhancer does not retrain them.

A task model (U-Net, RetinaNet) depends only on its clean training items, its training settings, the seed and the
code that trains it, not on the enhancers it later scores. :func:`load_or_train` keys the saved state dict by exactly
those (a SHA-256 of the sorted image and label files' names and contents, the settings, the seed and the source of
the training functions) and retrains on any change, so a model trained by older code is never reused.
Files are written atomically (:func:`dpe_monai.io.atomic.write_atomically`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["load_or_train", "training_key"]


def training_key(
    items: Sequence[Mapping[str, Any]], settings: Mapping[str, Any], seed: int, code: Sequence[Any] = ()
) -> str:
    """SHA-256 over the items' image/label files (name and content), boxes, ``settings``, ``seed`` and the source
    of ``code`` (the functions or modules that build and train the model)."""
    h = hashlib.sha256()
    for item in sorted(items, key=lambda it: str(it.get("image"))):
        for key in ("image", "label"):
            value = item.get(key)
            if isinstance(value, (str, os.PathLike)) and Path(value).is_file():
                h.update(Path(value).name.encode())
                h.update(hashlib.sha256(Path(value).read_bytes()).digest())
        for key in ("boxes", "labels"):
            if key in item:
                h.update(json.dumps(item[key], default=str).encode())
    h.update(json.dumps(dict(settings), sort_keys=True, default=str).encode())
    h.update(str(seed).encode())
    for obj in code:
        h.update(inspect.getsource(obj).encode())
    return h.hexdigest()


def load_or_train(
    path: str | os.PathLike | None,
    key: str,
    build: Callable[[], torch.nn.Module],
    train: Callable[[], tuple[torch.nn.Module, dict[str, Any]]],
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model saved at ``path`` under ``key``, else ``train()``'s, saved there (state dict + ``.json`` log).

    Args:
        path: the state-dict file; None disables the cache.
        key: :func:`training_key` of the training run.
        build: an untrained model of the same architecture (to load the state dict into).
        train: trains and returns ``(model, log)``.

    Returns:
        ``(model in eval mode, log)``; the log says ``"cached": True`` when loaded.
    """
    from dpe_monai.io.atomic import write_atomically

    if path is None:
        return train()
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            model = build()
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model.eval(), {**meta.get("log", {}), "cached": True, "cache": str(path)}
    model, log = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: torch.save(model.state_dict(), tmp))
    payload = json.dumps({"key": key, "log": log}, default=str)
    write_atomically(meta_path, lambda tmp: Path(tmp).write_text(payload))
    return model.eval(), {**log, "cached": False, "cache": str(path)}
