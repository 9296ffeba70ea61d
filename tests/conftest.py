"""Shared fixtures: where the real data lives, and running the CLI in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SALCLASS_SHARED_DATA", REPO.parent / "shared" / "data"))

# Tests share two cores with everything else on this machine; one intra-op
# thread per process keeps parallel work (loaders, DDP ranks) from thrashing.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def imagenette_root() -> Path:
    root = SHARED_DATA / "imagenette"
    assert (root / "train").is_dir(), f"shared Imagenette not found at {root}"
    return root


@pytest.fixture(scope="session")
def osie_root() -> Path:
    root = SHARED_DATA / "osie"
    assert (root / "fixations.mat").is_file(), f"shared OSIE not found at {root}"
    return root


@pytest.fixture(scope="session")
def scene_root() -> Path:
    root = SHARED_DATA / "scene"
    assert (root / "tidy" / "fixations.mat").is_file(), f"shared scene data not found at {root}"
    return root


@pytest.fixture
def run_cli(capsys):
    """Run `salclass ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from salclass.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse errors
            code = e.code if isinstance(e.code, int) else 2
        out, err = capsys.readouterr()
        return code, out, err

    return run


# --- data stage: tiny stores shared by every stage's tests -----------------

TINY_CLASSES = ("n01440764", "n02102040", "n02979186")  # tench, English springer, cassette player
TINY_PER_CLASS = {"train": 24, "val": 12}


def contrast_maps(images):
    """A deterministic, image-dependent stand-in for predicted saliency: blurred
    local contrast of the grey image, uint8 with each map's maximum at 255."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    from salclass.data import maps_to_uint8

    gray = np.asarray(images, dtype=np.float32).mean(axis=-1)
    contrast = np.abs(gray - gaussian_filter(gray, sigma=(0, 4, 4)))
    return maps_to_uint8(gaussian_filter(contrast, sigma=(0, 6, 6)))


def _tiny_source(imagenette_root: Path, dest: Path) -> Path:
    import shutil

    for split, n in TINY_PER_CLASS.items():
        for wnid in TINY_CLASSES:
            (dest / split / wnid).mkdir(parents=True)
            for f in sorted((imagenette_root / split / wnid).iterdir())[:n]:
                shutil.copyfile(f, dest / split / wnid / f.name)
    shutil.copyfile(imagenette_root / "classes.tsv", dest / "classes.tsv")
    return dest


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory, imagenette_root) -> Path:
    """An ImageNet-layout folder: 3 Imagenette classes, 24 train + 12 val images each."""
    return _tiny_source(imagenette_root, tmp_path_factory.mktemp("tiny_source") / "imagenette3")


@pytest.fixture(scope="session")
def tiny_store_no_saliency(tmp_path_factory, tiny_source) -> Path:
    """Store root (train/ 72 images, val/ 36 images) at S=144 without maps. Read only."""
    from salclass.data.prepare import prepare

    root = tmp_path_factory.mktemp("tiny_store_no_saliency") / "store"
    prepare(tiny_source, root, 144, seed=0, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory, tiny_source) -> Path:
    """Like tiny_store_no_saliency, with complete maps (model "contrast", see
    `contrast_maps`) in both splits. Read only: copy it before changing it."""
    from salclass.data import SaliencyMapWriter
    from salclass.data.prepare import prepare

    root = tmp_path_factory.mktemp("tiny_store") / "store"
    prepare(tiny_source, root, 144, seed=0, workers=1, progress=False)
    for split in ("train", "val"):
        writer = SaliencyMapWriter(root / split, "contrast")
        images = writer.store.images
        for start in range(0, writer.count, 32):
            writer.write(start, contrast_maps(images[start:start + 32]))
        writer.finish()
    return root
