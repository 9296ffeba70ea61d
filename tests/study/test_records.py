"""A study's records: what the report needs and nothing more (no checkpoints, no
store). Copied with `salclass records`, reported from alone, reused by a study,
and checked: an edited or cut record file stops the report in one line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from salclass.lock import folder_lock
from salclass.study.config import load_study
from salclass.study.folder import StudyFolder
from salclass.study.plan import drop_checkpoints
from salclass.study.runner import run_study

EXPERIMENTS = [
    {"name": "RGB*", "model": "RGB", "stage": "baselines"},
    {"name": "RGBS-ft", "model": "RGBS", "stage": "stage1", "init_from": "RGB*", "baseline": "RGB*"},
    {"name": "FanIn1", "model": "FanIn1", "stage": "stage3", "baseline": "RGB*"},
]
SLUGS = ("RGBstar", "RGBS-ft", "FanIn1")


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_source):
    """A finished study run with --drop-checkpoints: (config file, study folder)."""
    cfg_path = tmp_path_factory.mktemp("cfg") / "records.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "name": "records",
        "data": {"source": str(tiny_source), "size": 144, "num_classes": 2, "train_per_class": 8,
                 "val_per_class": 6, "workers": 1},
        "saliency": {"model": "centre_bias"},
        "seeds": [0], "epochs": 1, "milestones": [],
        "train": {"batch_size": 8, "device": "cpu", "tensorboard": False, "progress": False, "workers": 0,
                  "precision": "fp32"},
        "experiments": EXPERIMENTS, "bootstrap": 200, "examples": 2,
    }))
    root = tmp_path_factory.mktemp("study") / "s"
    run_study(load_study(cfg_path), root, drop_checkpoints=True)
    return cfg_path, root


@pytest.fixture(scope="module")
def records(study, tmp_path_factory):
    """`salclass records` of the study (read only: copy it before changing it)."""
    from salclass.cli import main

    out = tmp_path_factory.mktemp("records") / "r"
    assert main(["records", str(study[1]), str(out)]) == 0
    return out


def _tables(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("|")]


def _copy(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".salclass.lock")))


def _one_line(code: int, err: str) -> str:
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    return err


def test_the_study_dropped_every_checkpoint_after_the_fine_tune_started(study):
    _, root = study
    layout = StudyFolder(root, load_study(study[0]))
    for slug in SLUGS:
        run = root / "runs" / slug / "seed0"
        assert (run / "done.json").is_file() and (run / "eval" / "predictions.npz").is_file()
        assert not (run / "checkpoint.pt").exists()
    # The fine-tune started from RGB*'s checkpoint: it was kept until then.
    assert (root / "runs" / "RGBS-ft" / "seed0" / "init.txt").is_file()
    assert "Precision: fp32, one for every run." in (root / "report.md").read_text()
    assert yaml.safe_load(layout.study_yaml.read_text())["train"]["precision"] == "fp32"


def test_records_rebuild_the_reports_tables(study, records, tmp_path, run_cli):
    _, root = study
    files = [p for p in records.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name == "checkpoint.pt" or "store" in p.relative_to(records).parts]
    assert sum(p.stat().st_size for p in files) < 100_000 * len(SLUGS) + 200_000
    code, out, err = run_cli("report", records, "--out", tmp_path / "rep")
    assert code == 0, err
    full, rebuilt = (root / "report.md").read_text(), (tmp_path / "rep" / "report.md").read_text()
    assert _tables(rebuilt) == _tables(full) and len(_tables(full)) > 8
    assert "Data: 2 classes, 16 train / 12 val images" in rebuilt
    assert (tmp_path / "rep" / "figures" / "examples.png").is_file()  # the grid the records kept
    assert not (records / "report.md").exists()  # --out: the records are left as they are
    # Without the kept grid, the report says why it is missing.
    bare = _copy(records, tmp_path / "bare")
    (bare / "figures" / "examples.png").unlink()
    code, _, err = run_cli("report", bare)
    assert code == 0, err
    assert "grid of validation images with their maps is left out" in (bare / "report.md").read_text()


def test_the_report_states_the_compute_the_runs_logged(records, tmp_path):
    logged = [json.loads(line) for path in sorted(records.glob("runs/*/seed*/metrics.jsonl"))
              for line in path.read_text().splitlines() if line.strip()]
    expected = sum(row[part]["seconds"] for row in logged for part in ("train", "val"))
    assert len(logged) == len(SLUGS) and expected > 0
    found = re.search(r"Compute: (\d+) seconds of training and validation over the (\d+) finished runs",
                      _report_of(records, tmp_path))
    assert found and int(found.group(2)) == len(SLUGS), found
    assert abs(int(found.group(1)) - expected) <= 0.5 + 1e-9


def test_the_comparisons_figure_shows_only_finished_comparisons(records, tmp_path):
    r = _copy(records, tmp_path / "r")
    md = _report_of(r, tmp_path)
    figure = tmp_path / "fresh" / "figures" / "comparisons.png"
    assert "## Every comparison at a glance" in md and figure.read_bytes()[:4] == b"\x89PNG"
    for slug in ("RGBstar", "FanIn1"):   # no comparison has both of its sides any more
        shutil.rmtree(r / "runs" / slug)
    md = _report_of(r, tmp_path)
    assert "at a glance" not in md and "comparisons.png" not in md and not figure.exists()


def test_durations_read_in_the_unit_a_person_would_use():
    from salclass.study.render import fmt_duration

    assert [fmt_duration(s) for s in (12.4, 600, 13 * 3600 + 1800)] == ["12 seconds", "10 minutes", "13.5 hours"]


def test_a_second_export_writes_only_what_changed(study, records, tmp_path, run_cli):
    out = _copy(records, tmp_path / "again")
    code, stdout, err = run_cli("records", study[1], out)
    assert code == 0 and "0 KB written" in stdout, (stdout, err)
    code, _, err = run_cli("records", study[1], study[1])
    _one_line(code, err)


def test_one_digit_of_top1_in_eval_json_stops_the_report(records, tmp_path, run_cli):
    for keep_checksum in (True, False):
        r = _copy(records, tmp_path / f"r{keep_checksum}")
        path = r / "runs" / "FanIn1" / "seed0" / "eval" / "eval.json"
        ev = json.loads(path.read_text())
        if not keep_checksum:  # an evaluation from before checksums: its predictions still decide
            ev.pop("content_sha256")
        text = json.dumps(ev, indent=2)
        m = re.search(r'"top1": 0\.(\d)', text)
        path.write_text(text[:m.start(1)] + str((int(m.group(1)) + 1) % 10) + text[m.start(1) + 1:])
        code, _, err = run_cli("report", r, "--out", tmp_path / "rep")
        _one_line(code, err)
        assert str(path) in err, err
        assert ("edited or damaged" if keep_checksum else "disagrees with the per-image predictions") in err


def test_a_study_yaml_cut_in_half_stops_or_names_the_runs(records, tmp_path, run_cli):
    r = _copy(records, tmp_path / "cut")
    path = r / "study.yaml"
    text = path.read_text()
    path.write_text(text[: len(text) // 2].rsplit("\n", 1)[0] + "\n")
    code, _, err = run_cli("report", r)
    assert "study.yaml" in _one_line(code, err)
    # A study.yaml from before checksums that lost an experiment: the report names its run folder.
    old = yaml.safe_load(text)
    old["experiments"] = [e for e in old["experiments"] if e["name"] != "FanIn1"]
    path.write_text(yaml.safe_dump(old, sort_keys=False))
    code, _, err = run_cli("report", r)
    assert code == 0 and "runs/FanIn1: not a run of" in err, err
    md = (r / "report.md").read_text()
    assert "**Not in this report**: 1 folder under runs/ is no run" in md and "`runs/FanIn1`" in md


def test_old_records_without_checksums_still_load(records, tmp_path, run_cli):
    r = _copy(records, tmp_path / "old")
    for path in r.rglob("*.json"):
        data = json.loads(path.read_text())
        data.pop("content_sha256", None)
        path.write_text(json.dumps(data))
    for path in r.rglob("metrics.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({k: v for k, v in row.items() if k != "content_sha256"}) + "\n"
                                for row in rows))
    (r / "study.yaml").write_text((r / "study.yaml").read_text().split("\n", 1)[1])
    code, _, err = run_cli("report", r, "--out", tmp_path / "rep")
    assert code == 0, err
    md = (tmp_path / "rep" / "report.md").read_text()
    assert _tables(md) == _tables(_report_of(records, tmp_path))
    assert "record files carry no checksum" in md and "`runs/FanIn1/seed0/done.json`" in md


def _report_of(records: Path, tmp_path: Path) -> str:
    from salclass.study.report import build_report

    return build_report(records, out=tmp_path / "fresh").read_text()


def test_the_checkpoint_dropping_rule_keeps_what_a_fine_tune_needs(study, records, tmp_path):
    r = _copy(records, tmp_path / "drop")
    cfg = load_study(study[0])
    layout = StudyFolder(r, cfg)
    runs = {slug: r / "runs" / slug / "seed0" for slug in SLUGS}
    for run in runs.values():
        (run / "checkpoint.pt").write_bytes(b"weights")
    done = runs["RGBS-ft"] / "done.json"
    saved = done.read_bytes()
    done.unlink()  # the fine-tune has not finished: it may still have to start from RGB*
    assert drop_checkpoints(cfg, layout) == 1
    assert (runs["RGBstar"] / "checkpoint.pt").is_file() and (runs["RGBS-ft"] / "checkpoint.pt").is_file()
    assert not (runs["FanIn1"] / "checkpoint.pt").exists()
    done.write_bytes(saved)
    assert drop_checkpoints(cfg, layout) == 2
    assert not any((run / "checkpoint.pt").exists() for run in runs.values())


def test_a_study_reuses_records_and_trains_only_what_is_missing(study, records, tmp_path, run_cli):
    cfg_path, _ = study
    new = _copy(records, tmp_path / "resumed")
    kept = {slug: (new / "runs" / slug / "seed0" / "metrics.jsonl").read_bytes() for slug in SLUGS}
    shutil.rmtree(new / "runs" / "FanIn1")
    ft = new / "runs" / "RGBS-ft"
    shutil.move(ft, tmp_path / "ft")
    # The fine-tune would have to start from RGB*, whose record keeps no checkpoint.
    code, _, err = run_cli("study", "--config", cfg_path, "--out", new)
    assert "RGBS-ft seed 0 starts from RGB* seed 0" in _one_line(code, err) and "no checkpoint" in err
    shutil.move(tmp_path / "ft", ft)
    code, _, err = run_cli("study", "--config", cfg_path, "--out", new)
    assert code == 0, err
    assert "2 of 3 runs were already finished and reused" in err
    for slug in ("RGBstar", "RGBS-ft"):
        run = new / "runs" / slug / "seed0"
        assert run.joinpath("metrics.jsonl").read_bytes() == kept[slug] and not (run / "checkpoint.pt").exists()
    trained = new / "runs" / "FanIn1" / "seed0"
    assert (trained / "checkpoint.pt").is_file() and (trained / "done.json").is_file()

    # An evaluation that names another checkpoint than the run's final one is made again.
    ev_path = trained / "eval" / "eval.json"
    from salclass import checksum

    ev = json.loads(ev_path.read_text())
    checksum.write_json(ev_path, {**ev, "checkpoint_sha256": "0" * 64})
    code, _, err = run_cli("study", "--config", cfg_path, "--out", new)
    assert code == 0 and "FanIn1 seed 0: evaluating its final checkpoint" in err, err
    assert json.loads(ev_path.read_text())["checkpoint_sha256"] == ev["checkpoint_sha256"]
    # ... and a record without its checkpoint cannot be: one line.
    rgb = new / "runs" / "RGBstar" / "seed0" / "eval" / "eval.json"
    checksum.write_json(rgb, {**json.loads(rgb.read_text()), "checkpoint_sha256": "0" * 64})
    code, _, err = run_cli("study", "--config", cfg_path, "--out", new)
    assert "its checkpoint is gone" in _one_line(code, err)


def test_a_resume_with_another_precision_is_refused(study, records, tmp_path, run_cli, monkeypatch):
    cfg_path, _ = study
    new = _copy(records, tmp_path / "precision")
    code, _, err = run_cli("study", "--config", cfg_path, "--out", new, "--set", "train.precision=bf16")
    assert "one precision per study" in _one_line(code, err) and "fp32" in err
    # `auto` on a machine that computes bf16 natively resolves to bf16: refused alike.
    import salclass.precision

    monkeypatch.setattr(salclass.precision, "cpu_has_native_bf16", lambda: True)
    code, _, err = run_cli("study", "--config", cfg_path, "--out", new, "--set", "train.precision=auto")
    assert "one precision per study" in _one_line(code, err)
    # A folder whose study.yaml predates the rule: its runs' own settings decide.
    (new / "study.yaml").write_text(re.sub(r"precision: fp32", "precision: auto",
                                           (new / "study.yaml").read_text().split("\n", 1)[1]))
    code, _, err = run_cli("study", "--config", cfg_path, "--out", new, "--set", "train.precision=bf16")
    assert "was trained in fp32" in _one_line(code, err)


def test_evaluate_refuses_a_run_folder_another_process_holds(records, tmp_path, run_cli):
    run = _copy(records, tmp_path / "held") / "runs" / "FanIn1" / "seed0"
    (run / "checkpoint.pt").write_bytes(b"not read: the lock comes first")
    with folder_lock(run, exclusive=True):
        code, _, err = run_cli("evaluate", run, "--store", tmp_path / "nowhere")
    assert str(run) in _one_line(code, err) and "is writing it since" in err or "in use" in err


def test_the_report_states_the_training_schedule_from_the_runs_configs(records, tmp_path, run_cli):
    def training(folder: Path, out: str) -> str:
        return next(x for x in _report_of(folder, tmp_path / out).splitlines() if x.startswith("Training: "))

    line = training(records, "as-is")
    assert line.startswith("Training: SGD with momentum 0.9, learning rate 0.01; weight decay 0.001 on the weights "
                           "of convolutions and linear layers; batches of 8; dropout 0.5; random 128 px crops"), line
    r = _copy(records, tmp_path / "r")
    configs = sorted(r.glob("runs/*/seed0/config.yaml"))
    originals = {path: path.read_text() for path in configs}
    assert len(configs) == len(SLUGS) and all("decay_on: kernels\n" in t for t in originals.values())

    def edit(paths, old: str, new: str) -> None:
        for path in configs:
            path.write_text(originals[path].replace(old, new) if path in paths else originals[path])

    # One run trained otherwise: the report names the setting and both values instead of one schedule.
    edit(configs[:1], "lr: 0.01\n", "lr: 0.02\n")
    assert training(r, "lr").startswith("Training: the finished runs differ in lr (lr: 0.01, 0.02); ")
    # Runs from before a setting was recorded: the report says what is not recorded rather than guess it.
    edit(configs, "decay_on: kernels\n", "")
    assert training(r, "old").startswith("Training: the finished runs' config.yaml files do not record decay_on ")
    # A hand-edited setting of the wrong type: one line naming the file, as for any damaged record.
    edit(configs, "dropout: 0.5\n", "dropout: lots\n")
    code, _, err = run_cli("report", r, "--out", tmp_path / "bad")
    assert "config.yaml holds a training setting of the wrong type" in _one_line(code, err)
