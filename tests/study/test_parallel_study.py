"""The tiny study's runs as Ray tasks on a local Ray of two CPU workers: the same
report as one after another, a killed worker's run resumed from its checkpoint,
a failed run failing alone, and the study folder still locked to one writer."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from salclass.study.config import load_study
from salclass.study.runner import run_study

EXPERIMENTS = [
    {"name": "RGB*", "model": "RGB", "stage": "baselines"},
    {"name": "RGBS-ft", "model": "RGBS", "stage": "stage1", "init_from": "RGB*", "baseline": "RGB*"},
    {"name": "FanIn1", "model": "FanIn1", "stage": "stage3", "baseline": "RGB*"},
]


@pytest.fixture(scope="module")
def ray_address():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 1024 ** 2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _same_report(a: Path, b: Path) -> bool:
    """The two studies' reports agree byte for byte but for the compute their runs took."""
    def without_compute(root: Path) -> str:
        text = (root / "report.md").read_text()
        assert len(re.findall(r"^Compute: .+ of training and validation over", text, flags=re.M)) == 1
        return re.sub(r"^Compute: .*\n", "", text, flags=re.M)

    return without_compute(a) == without_compute(b)


def _write_config(path: Path, tiny_source: Path, osie_root: Path, experiments: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({
        "name": "tiny",
        "data": {"source": str(tiny_source), "size": 144, "num_classes": 2, "train_per_class": 8,
                 "val_per_class": 6, "workers": 1},
        "saliency": {"model": "centre_bias", "eval_data": str(osie_root), "eval_images": 2},
        "seeds": [0],
        # Two epochs: a run killed after the first has a checkpoint to resume from.
        "epochs": 2, "milestones": [],
        "train": {"batch_size": 8, "device": "cpu", "tensorboard": False, "progress": False, "workers": 0,
                  "threads": 1},
        "experiments": experiments,
        "bootstrap": 200,
        "examples": 3,
    }))
    return path


@pytest.fixture(scope="module")
def config(tmp_path_factory, tiny_source, osie_root) -> Path:
    return _write_config(tmp_path_factory.mktemp("cfg") / "tiny.yaml", tiny_source, osie_root, EXPERIMENTS)


@pytest.fixture(scope="module")
def sequential(config, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seq") / "tiny"
    run_study(load_study(config), root)
    yield root
    shutil.rmtree(root.parent)


def _with_data_of(done: Path, root: Path) -> Path:
    """A new study folder holding the packed store and saliency table of `done`
    (reused as they are), so that only the runs are left to do."""
    root.mkdir(parents=True)
    shutil.copytree(done / "store", root / "store", symlinks=True)
    shutil.copy2(done / "saliency_eval.json", root / "saliency_eval.json")
    return root


def _sessions(run: Path) -> list[str]:
    return re.findall(r"^--- .*pid (\d+)$", (run / "log.txt").read_text(), flags=re.M)


def test_parallel_report_equals_sequential(sequential, config, ray_address, tmp_path):
    root = _with_data_of(sequential, tmp_path / "par")
    run_study(load_study(config), root, jobs=2)
    assert _same_report(root, sequential)
    for slug in ("RGBstar", "RGBS-ft", "FanIn1"):
        run = root / "runs" / slug / "seed0"
        assert len(_sessions(run)) == 1 and "finished:" in (run / "log.txt").read_text()
        assert yaml.safe_load((run / "config.yaml").read_text())["threads"] == 1


def test_dropping_checkpoints_waits_for_the_fine_tune_that_starts_from_one(sequential, config, ray_address, tmp_path):
    """--drop-checkpoints with Ray tasks: RGB*'s checkpoint goes only after RGBS-ft has started from it, and
    every run still ends finished and evaluated, with the report of the serial study."""
    root = _with_data_of(sequential, tmp_path / "drop")
    run_study(load_study(config), root, jobs=2, drop_checkpoints=True)
    assert _same_report(root, sequential)
    for slug in ("RGBstar", "RGBS-ft", "FanIn1"):
        run = root / "runs" / slug / "seed0"
        assert (run / "done.json").is_file() and (run / "eval" / "predictions.npz").is_file()
        assert not (run / "checkpoint.pt").exists(), run
    assert (root / "runs" / "RGBS-ft" / "seed0" / "init.txt").is_file()


def test_killed_worker_is_retried_and_resumes(sequential, config, ray_address, tmp_path, run_cli):
    root = _with_data_of(sequential, tmp_path / "killed")
    salclass = Path(sys.executable).parent / "salclass"
    proc = subprocess.Popen([str(salclass), "study", "--config", str(config), "--out", str(root), "--jobs", "2",
                             "--ray-address", ray_address], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = root / "runs" / "FanIn1" / "seed0"
    try:
        # Kill the worker once the first epoch is checkpointed, during the second.
        deadline = time.monotonic() + 300
        while not (run / "checkpoint.pt").is_file():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        assert not (run / "done.json").is_file(), "the run finished before it could be killed"
        os.kill(int(_sessions(run)[-1]), signal.SIGKILL)
        # Meanwhile the study folder has one writer: a second study is refused in one line.
        code, _, err = run_cli("study", "--config", config, "--out", root, "--jobs", "2")
        assert code == 2 and len(err.strip().splitlines()) == 1 and "is writing it" in err, err
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    sessions = _sessions(run)
    assert len(sessions) == 2 and sessions[0] != sessions[1]
    # The second session trained epoch 2 only: it resumed from the first epoch's checkpoint.
    assert "for epochs 2..2" in (run / "log.txt").read_text().split("--- ")[-1]
    epochs = [yaml.safe_load(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    assert _same_report(root, sequential)


def test_a_failing_run_fails_alone_and_a_rerun_completes(sequential, config, ray_address, tmp_path, tiny_source,
                                                          osie_root, run_cli):
    root = _with_data_of(sequential, tmp_path / "failing")
    bad = [dict(e) for e in EXPERIMENTS]
    bad[0]["train"] = {"lr": 1e30}  # RGB* diverges: a NaN stop, the run's own failure
    bad_config = _write_config(tmp_path / "bad.yaml", tiny_source, osie_root, bad)
    code, _, summary = run_cli("study", "--config", bad_config, "--out", root, "--jobs", "2")
    assert code == 2 and "Traceback" not in summary
    assert "- RGB* seed 0: failed: " in summary and "non-finite" in summary
    assert "- RGBS-ft seed 0: skipped: it starts from RGB* seed 0" in summary
    assert "last lines of" in summary and "FanIn1 seed 0" not in summary
    assert "runs: 0/3 done, 2 running, 1 waiting; epochs 0/6 (" in summary  # 2 epochs in each of the 3 runs
    assert (root / "runs" / "FanIn1" / "seed0" / "eval" / "eval.json").is_file()
    assert not (root / "runs" / "RGBS-ft" / "seed0").exists()
    assert not (root / "report.md").exists()
    # Fixed: the diverged run had no finished epoch, so it starts again; FanIn1 is reused.
    run_study(load_study(config), root, jobs=2)
    assert len(_sessions(root / "runs" / "FanIn1" / "seed0")) == 1
    assert _same_report(root, sequential)


def test_bad_jobs_and_unset_threads_are_one_line_before_any_work(config, tmp_path, run_cli):
    code, _, err = run_cli("study", "--config", config, "--out", tmp_path / "x", "--jobs", "0")
    assert code == 2 and err.strip() == "salclass: error: --jobs must be at least 1, got 0"
    import torch

    if torch.cuda.is_available():
        pytest.skip("with a GPU each run claims one GPU and needs no thread count")
    code, _, err = run_cli("study", "--config", config, "--out", tmp_path / "y", "--jobs", "2",
                           "--set", "train.threads=null")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "set train.threads" in err, err
    assert not (tmp_path / "y" / "store").exists()


def test_an_address_that_cannot_be_joined_is_one_line_before_any_work(config, tmp_path):
    pytest.importorskip("ray")
    salclass = Path(sys.executable).parent / "salclass"
    root = tmp_path / "x"
    proc = subprocess.run([str(salclass), "study", "--config", str(config), "--out", str(root), "--jobs", "2",
                           "--ray-address", "127.0.0.1:9"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "--ray-address 127.0.0.1:9: cannot join that Ray cluster" in proc.stderr, proc.stderr
    assert not (root / "store").exists()  # found before the data were prepared


def test_the_local_rays_token_notice_is_dropped_and_its_security_warning_kept(caplog):
    import logging

    from salclass.study.parallel import RAY_TOKEN_LOGGER, _quiet_token_notice

    _quiet_token_notice()
    log = logging.getLogger(RAY_TOKEN_LOGGER)
    with caplog.at_level(logging.WARNING, logger=RAY_TOKEN_LOGGER):
        log.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.")
        log.warning("Token authentication is disabled for this Ray cluster. Anyone with network access ...")
    assert [r.getMessage()[:33] for r in caplog.records] == ["Token authentication is disabled "]
