"""benchmarks/verdicts.py measures the run-to-run noise its simulations use from a finished study:
here on the planted study, whose per-seed outcomes are known, against numpy's own arithmetic."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from planted import plant

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def verdicts():
    spec = importlib.util.spec_from_file_location("verdicts_benchmark", REPO / "benchmarks" / "verdicts.py")
    module = importlib.util.module_from_spec(spec)
    # its dataclasses look their module up by name
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_noise_is_pooled_over_every_network_around_its_own_mean(verdicts, tmp_path):
    planted = plant(tmp_path / "study")
    noise = verdicts.measure_noise(tmp_path / "study")

    acc = {name: planted.correct1(name).mean(axis=1) for name in planted.runs}
    # Networks differ in accuracy by many points; pooling their runs into one sample would count that as noise.
    pooled_var = sum(np.var(a, ddof=1) * (len(a) - 1) for a in acc.values()) / sum(len(a) - 1 for a in acc.values())
    assert noise["df"] == sum(len(a) - 1 for a in acc.values()) == 2 * len(acc)
    assert noise["sd"] == pytest.approx(np.sqrt(pooled_var), rel=1e-12)
    assert noise["sd"] < np.std(np.concatenate(list(acc.values())), ddof=1)
    assert noise["accuracy"] == pytest.approx(np.mean(np.concatenate(list(acc.values()))))
    pairs = [np.mean(planted.correct1(name)[i] != planted.correct1(name)[j])
             for name in acc for i in range(3) for j in range(i + 1, 3)]
    assert noise["disagreement"] == pytest.approx(np.mean(pairs))
    assert noise["images"] == planted.labels.size
    assert noise["experiments"]["RGB*"] == [round(100 * a, 2) for a in acc["RGB*"]]


def test_the_sd_interval_is_the_chi_square_one(verdicts):
    # Tabled chi-square quantiles: 2 degrees of freedom, 0.0506 and 7.378; 14 degrees, 5.629 and 26.119.
    lo, hi = verdicts.sd_range95(1.0, 2)
    assert (lo, hi) == pytest.approx((np.sqrt(2 / 7.3778), np.sqrt(2 / 0.050636)), rel=1e-3)
    lo, hi = verdicts.sd_range95(0.5, 14)
    assert (lo, hi) == pytest.approx((0.5 * np.sqrt(14 / 26.119), 0.5 * np.sqrt(14 / 5.6287)), rel=1e-3)
