"""Small, fast training settings on the shared `tiny_store` (72 train / 36 val
images of 3 classes at 144px, so crop 128), and one reference run that several
tests read."""

from __future__ import annotations

from pathlib import Path

import pytest

# Three batches of 24 per epoch; one thread so in-process and subprocess runs
# compute bit-identically and parallel tests do not fight over the two cores.
SMALL = {"batch_size": 24, "threads": 1, "progress": False, "tensorboard": False, "epochs": 2, "milestones": [2]}


def _small_sets(store: Path, out: Path, **overrides) -> list[str]:
    """`--set` arguments of a small run (values written as YAML)."""
    import yaml

    values = {**SMALL, "store": str(store), "out": str(out), **overrides}
    return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in values.items()]


def _small_config(store: Path, out: Path, **overrides):
    from salclass.settings import load_settings
    from salclass.training import TrainConfig

    return load_settings(TrainConfig, None, _small_sets(store, out, **overrides))


@pytest.fixture(scope="session")
def small_sets():
    """small_sets(store, out, **overrides) -> ["key=value", ...] for `salclass train --set`."""
    return _small_sets


@pytest.fixture(scope="session")
def small_config():
    """small_config(store, out, **overrides) -> TrainConfig of a small run."""
    return _small_config


# The reference run's settings; the resume test repeats them exactly.
RGB_RUN = {"epochs": 3, "tensorboard": True}


@pytest.fixture(scope="session")
def rgb_run(tmp_path_factory, tiny_store) -> Path:
    """RGB trained 3 epochs (lr 0.01, then 0.001 in epoch 3), with TensorBoard. Read only."""
    from salclass.training import train

    out = tmp_path_factory.mktemp("rgb_run") / "rgb"
    return train(_small_config(tiny_store, out, **RGB_RUN))


@pytest.fixture(scope="session")
def rgb_run_settings() -> dict:
    return dict(RGB_RUN)
