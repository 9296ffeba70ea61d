"""The fixed train/val/test split of fixation data: OSIE's recorded one, a `split.json`, or a seeded rule."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

from salclass.errors import UserError

SPLITS = ("train", "val", "test")

# The published OSIE protocol: 500 train / 200 test from a RandomState(42)
# shuffle of the sorted names; validation is carved from the 500 with its own seed.
TEST_SEED = 42
VAL_SEED = 1


def make_split(names: list[str], test_count: int, val_count: int) -> dict[str, list[str]]:
    """Seeded split: test = the `test_count` names after the first
    len - test_count of a RandomState(42) shuffle of the sorted names; val is
    `val_count` of the rest drawn with RandomState(1); train the remainder.
    Each list is sorted."""
    ordered = sorted(names)
    if test_count + val_count >= len(ordered):
        raise UserError(f"{len(ordered)} images are too few for {test_count} test and {val_count} validation images")
    perm = np.random.RandomState(TEST_SEED).permutation(len(ordered))
    n_trainval = len(ordered) - test_count
    trainval = [ordered[j] for j in perm[:n_trainval]]
    test = [ordered[j] for j in perm[n_trainval:]]
    vperm = np.random.RandomState(VAL_SEED).permutation(len(trainval))
    val = [trainval[j] for j in vperm[:val_count]]
    train = [trainval[j] for j in vperm[val_count:]]
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def osie_split() -> dict[str, list[str]]:
    """The OSIE split recorded in the package (resources/osie_split.json)."""
    ref = resources.files("salclass").joinpath("resources", "osie_split.json")
    with resources.as_file(ref) as p:
        return read_split(Path(p))


def read_split(path: Path) -> dict[str, list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a readable split file ({e})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in SPLITS):
        raise UserError(f"{path}: a split file needs lists 'train', 'val' and 'test'")
    return {k: [str(n) for n in data[k]] for k in SPLITS}
