"""Subject-level splits: whole subjects (volumes, original images) go to one split, never single slices.

Sources with a handful of subjects get a fixed, curated split (:attr:`Subject.split`), chosen so that each
modality group has at least one whole subject in test. Sources with many subjects (the 199 PH2 dermoscopy images,
user folders) are split by a seeded hash of the subject id: stable under re-ordering and additions.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping

__all__ = ["SPLITS", "assign_split", "check_disjoint", "enough_items", "hash_fraction", "split_items"]

SPLITS = ("training", "validation", "test")

#: hash-split fractions (validation, test); the rest is training.
HASH_FRACTIONS = (0.1, 0.2)


def hash_fraction(subject: str, seed: int = 0) -> float:
    """A uniform number in [0, 1) fixed by ``(seed, subject)`` (SHA-256, independent of Python's hash seed)."""
    digest = hashlib.sha256(f"{seed}:{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(
    subject: str, fixed: str | None = None, seed: int = 0, fractions: tuple[float, float] = HASH_FRACTIONS
) -> str:
    """Split of a subject.

    Args:
        subject: globally unique subject id.
        fixed: a curated split that wins over the hash.
        seed: seed of the hash split.
        fractions: ``(validation, test)`` shares of the hash split.

    Returns:
        ``"training"``, ``"validation"`` or ``"test"``.
    """
    if fixed is not None:
        if fixed not in SPLITS:
            raise ValueError(f"unknown split {fixed!r} for {subject}; use one of {SPLITS}")
        return fixed
    u = hash_fraction(subject, seed)
    val, test = fractions
    return "test" if u < test else "validation" if u < test + val else "training"


def check_disjoint(datalist: Mapping[str, Iterable[Mapping]], key: str = "subject") -> dict[str, set[str]]:
    """Subjects seen in more than one split (empty when the splits are clean).

    Args:
        datalist: ``{"training": [...], "validation": [...], "test": [...]}`` of item dicts.
        key: the item field holding the subject id.

    Returns:
        ``{subject: {splits}}`` for every subject found in two or more splits.
    """
    seen: dict[str, set[str]] = {}
    for split in SPLITS:
        for item in datalist.get(split, []):
            seen.setdefault(str(item[key]), set()).add(split)
    return {subject: splits for subject, splits in seen.items() if len(splits) > 1}


def enough_items(items: list, split: str, batch_size: int = 1, ranks: int = 1, required: bool = True) -> list:
    """``items`` if one split of a datalist can feed its loader, else one clear line.

    A training loader with ``drop_last`` needs ``batch_size * ranks`` items for one step (fewer gave an empty epoch,
    no checkpoint and exit code 0); a distributed validation needs one item per rank. ``required=False`` (validation
    in one process) only logs a warning for an empty split: training then runs without validation or a best model.

    Args:
        items: the split's datalist items.
        split: its name, for the message.
        batch_size: items per step and rank.
        ranks: processes of a distributed run.
        required: raise (True) or warn (False) when there are too few.

    Raises:
        ValueError: too few items, naming the split, its size and what it needs.
    """
    import logging

    need = max(1, int(batch_size) * int(ranks))
    if len(items) >= need:
        return items
    message = (
        f"the {split} split has {len(items)} item(s); one step needs {need} (batch_size {batch_size} x {ranks} "
        f"process(es)): add images, lower batch_size, or check dataset_dir / datalist"
    )
    if required:
        raise ValueError(message)
    logging.getLogger(__name__).warning("%s; running without %s", message, split)
    return items


def split_items(datalist: str | os.PathLike, split: str) -> list[dict]:
    """``monai.data.load_decathlon_datalist(datalist, False, split)``, with one clear line for a missing or empty split.

    MONAI fails on an empty ``"test"`` list with an ``IndexError``; a user folder of a few subjects can have one
    (whole subjects are split about 70 / 10 / 20 % by a hash of their id).

    Raises:
        ValueError: naming the datalist, the split sizes and what to do.
    """
    from monai.data import load_decathlon_datalist

    with open(datalist, encoding="utf-8") as fh:
        data = json.load(fh)
    if not data.get(split):
        sizes = ", ".join(f"{k} {len(v)}" for k, v in data.items() if isinstance(v, list))
        raise ValueError(
            f"{datalist}: the {split!r} split is empty ({sizes}); choose a split that has items (e.g. --split "
            "training: the shipped model never saw a user's folder, so any of its splits is unseen by it) or add "
            "subjects"
        )
    return load_decathlon_datalist(datalist, False, split)
