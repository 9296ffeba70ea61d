"""A study folder has one study at a time; its settings are checked before any
data work; a stop request always stops it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml


def _config(path: Path, tiny_source: Path, **changes) -> Path:
    cfg = {
        "name": "safety",
        "data": {"source": str(tiny_source), "size": 144, "num_classes": 2, "train_per_class": 4,
                 "val_per_class": 4, "workers": 1},
        "saliency": {"model": "centre_bias"},
        "seeds": [0],
        "epochs": 1, "milestones": [],
        "train": {"batch_size": 4, "device": "cpu", "tensorboard": False, "progress": False, "workers": 0,
                  "threads": 1},
        "experiments": [{"name": "RGB", "model": "RGB", "stage": "baselines"}],
        "bootstrap": 100,
        "examples": 1,
        **changes,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_second_study_on_the_same_folder_is_refused(tiny_source, tmp_path, run_cli, blocked_command):
    cfg = _config(tmp_path / "s.yaml", tiny_source)
    out = tmp_path / "study"
    first = blocked_command("salclass.study.steps.ensure_store", "study", "--config", cfg, "--out", out)
    code, _, err = run_cli("study", "--config", cfg, "--out", out)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"pid {first.pid} is writing it" in err and "study" in err
    code, _, err = run_cli("report", out)
    assert code == 2 and f"pid {first.pid} is writing it" in err
    assert sorted(p.name for p in out.iterdir()) == [".salclass.lock"]


def test_a_read_only_study_folder_is_one_line(tiny_source, tmp_path, run_cli, make_readonly):
    cfg = _config(tmp_path / "s.yaml", tiny_source)
    (tmp_path / "ro" / "study").mkdir(parents=True)
    make_readonly(tmp_path / "ro")
    code, _, err = run_cli("study", "--config", cfg, "--out", tmp_path / "ro" / "study")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot write here" in err, err


@pytest.mark.parametrize("experiment, fragment", [
    ({"name": "X", "model": "AlexNet9", "stage": "baselines"}, "unknown model 'AlexNet9'"),
    ({"name": "X", "model": "RGB", "stage": "baselines", "train": {"lr": ".inf"}}, "lr: expected a finite number"),
    ({"name": "X", "model": "RGB", "stage": "baselines", "train": {"momentum": 2}}, "momentum must be in [0, 1)"),
    ({"name": "X", "model": "RGB", "stage": "baselines", "train": {"learning_rate": 0.1}},
     "unknown setting 'learning_rate'"),
])
def test_run_settings_are_checked_before_any_data_work(tiny_source, tmp_path, run_cli, experiment, fragment):
    path = _config(tmp_path / "s.yaml", tiny_source,
                   experiments=[{"name": "RGB", "model": "RGB", "stage": "baselines"}, experiment])
    # The YAML as a user writes it: `.inf` unquoted.
    path.write_text(path.read_text().replace("'.inf'", ".inf"))
    code, _, err = run_cli("study", "--config", path, "--out", tmp_path / "study")
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err
    assert not (tmp_path / "study").exists()


def test_exponent_numbers_reach_the_runs(tiny_source, tmp_path):
    from salclass.study.config import load_study
    from salclass.study.folder import StudyFolder
    from salclass.study.plan import train_settings

    path = _config(tmp_path / "s.yaml", tiny_source)
    cfg = load_study(path, ["train.lr=1e-3", "train.weight_decay=5e-4"])
    e = cfg.experiments[0]
    settings = train_settings(cfg, StudyFolder(tmp_path / "study", cfg), e, 0)
    assert settings["lr"] == 0.001 and settings["weight_decay"] == 0.0005


def test_a_signal_during_the_final_checkpoint_write_stops_the_study(tiny_source, tmp_path, run_cli, monkeypatch):
    import os
    import signal

    from salclass.training import loop as main

    real_save = main.atomic_torch_save

    def save_while_signalled(obj, path):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the last epoch's checkpoint is written
        real_save(obj, path)

    monkeypatch.setattr(main, "atomic_torch_save", save_while_signalled)
    cfg = _config(tmp_path / "s.yaml", tiny_source, experiments=[
        {"name": "RGB", "model": "RGB", "stage": "baselines"}, {"name": "RGB-b", "model": "RGB", "stage": "controls"}])
    out = tmp_path / "study"
    code, _, err = run_cli("study", "--config", cfg, "--out", out)
    assert code == 143 and "stopped by SIGTERM" in err, err
    first = out / "runs" / "RGB" / "seed0"
    assert (first / "checkpoint.pt").is_file() and not (first / "done.json").exists()
    assert not (out / "runs" / "RGB-b").exists() and not (out / "report.md").exists()


@pytest.mark.parametrize("hold_at", ["salclass.data.prepare._decode_chunk",
                                     "salclass.saliency.predict.predict_into_store",
                                     "salclass.training.evaluate.evaluate"],
                         ids=["packing", "maps", "evaluation"])
def test_sigterm_at_any_step_of_a_study_is_one_line(tiny_source, tmp_path, blocked_command, hold_at):
    import signal

    cfg = _config(tmp_path / "s.yaml", tiny_source)
    study = blocked_command(hold_at, "study", "--config", cfg, "--out", tmp_path / "study")
    study.proc.send_signal(signal.SIGTERM)
    code, _, err = study.release()
    assert code == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "salclass: stopped by SIGTERM", err
