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
