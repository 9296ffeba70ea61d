"""A tiny study through every stage: packing a subset, saliency maps, runs (one a
fine-tune, one a constant-map control), evaluation and the report; then the
report's tables are checked against the runs' own files, and a rerun reuses them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from salclass.study import steps, stats
from salclass.study.config import load_study
from salclass.study.runner import run_study

EXPERIMENTS = [
    {"name": "RGB*", "model": "RGB", "stage": "baselines", "thesis": {"top1": 36.6, "top5": 60.91}},
    {"name": "RGBS-ft", "model": "RGBS", "stage": "stage1", "init_from": "RGB*", "baseline": "RGB*"},
    {"name": "FanIn1", "model": "FanIn1", "stage": "stage3", "baseline": "RGB*", "thesis": {"top1": 38.32}},
    {"name": "FanIn1-const", "model": "FanIn1-const", "stage": "controls", "baseline": "RGB*"},
]


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_source, osie_root):
    cfg_path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "name": "tiny",
        "data": {"source": str(tiny_source), "size": 144, "num_classes": 2, "train_per_class": 8,
                 "val_per_class": 6, "workers": 1},
        "saliency": {"model": "centre_bias", "eval_data": str(osie_root), "eval_images": 2},
        "seeds": [0],
        "epochs": 1, "milestones": [],
        "train": {"batch_size": 8, "device": "cpu", "tensorboard": False, "progress": False, "workers": 0},
        "experiments": EXPERIMENTS,
        "comparisons": [{"variant": "FanIn1", "against": "FanIn1-const",
                         "question": "Do real maps help FanIn1 more than a constant map?"}],
        "figures": [{"name": "fanin", "title": "fan-in", "experiments": ["RGB*", "FanIn1", "FanIn1-const"]}],
        "bootstrap": 200,
        "examples": 3,
    }))
    root = tmp_path_factory.mktemp("study") / "tiny"
    cfg = load_study(cfg_path)
    report = run_study(cfg, root)
    yield cfg_path, root, report
    shutil.rmtree(root.parent)


def _table_rows(md: str, first_header: str) -> list[list[str]]:
    """Rows of every Markdown table whose first header cell is `first_header`."""
    rows, inside = [], False
    for line in md.splitlines():
        if line.startswith("| "):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if cells[0] == first_header:
                inside = True
                continue
            if inside:
                rows.append(cells)
        elif not line.startswith("|---"):
            inside = False
    return rows


def _eval(root: Path, slug: str) -> dict:
    return json.loads((root / "runs" / slug / "seed0" / "eval" / "eval.json").read_text())


def _pred(root: Path, slug: str) -> dict:
    with np.load(root / "runs" / slug / "seed0" / "eval" / "predictions.npz") as z:
        return {k: z[k] for k in z.files}


def test_every_run_finished_and_saved_settings(study):
    _, root, report = study
    assert report == root / "report.md"
    assert (root / "study.yaml").is_file()
    for slug in ("RGBstar", "RGBS-ft", "FanIn1", "FanIn1-const"):
        run = root / "runs" / slug / "seed0"
        assert (run / "done.json").is_file() and (run / "eval" / "predictions.npz").is_file()
    ft = yaml.safe_load((root / "runs" / "RGBS-ft" / "seed0" / "config.yaml").read_text())
    assert Path(ft["init_from"]) == root / "runs" / "RGBstar" / "seed0" / "checkpoint.pt"
    # The store is the configured subset: 2 classes, 8 train and 6 val images each.
    meta = json.loads((root / "store" / "val" / "meta.json").read_text())
    assert meta["count"] == 12 and len(meta["classes"]) == 2


def test_results_table_matches_eval_files(study):
    _, root, _ = study
    md = (root / "report.md").read_text()
    rows = {r[0]: r for r in _table_rows(md, "Experiment") if len(r) == 14}
    assert set(rows) == {"RGB*", "RGBS-ft", "FanIn1", "FanIn1-const"}
    base = _eval(root, "RGBstar")
    for name, slug in (("RGB*", "RGBstar"), ("RGBS-ft", "RGBS-ft"), ("FanIn1", "FanIn1"),
                       ("FanIn1-const", "FanIn1-const")):
        ev = _eval(root, slug)
        row = rows[name]
        assert row[4] == f"{100 * ev['top1']:.2f}", name
        assert row[5] == f"{100 * ev['top5']:.2f}", name
        if name != "RGB*":
            diff = 100 * (ev["top1"] - base["top1"])
            assert row[7].startswith(f"{diff:+.2f} ["), (name, row[7])
            # One seed: p is McNemar's, from the discordant counts of the two prediction files; no verdict.
            a, b = _pred(root, slug)["correct1"], _pred(root, "RGBstar")["correct1"]
            p = stats.mcnemar_from_counts(int(np.sum(a & ~b)), int(np.sum(~a & b))).p
            assert row[9] == ("1" if p >= 0.9995 else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"), (name, row[9])
            assert float(row[10]) >= float(row[9])  # Holm never lowers a p
            assert row[11] == stats.NO_VERDICT
    assert rows["RGB*"][12] == "36.60" and rows["FanIn1"][12] == "38.32"
    # the family is stated, and why one seed gives no verdict
    assert "This study makes 4 comparisons" in md and "Holm" in md
    assert "training noise was not measured" in md


def test_class_table_matches_predictions(study):
    _, root, _ = study
    md = (root / "report.md").read_text()
    rows = _table_rows(md, "Experiment")
    class_rows = [r for r in rows if len(r) == 6]
    assert class_rows, "no per-class table"
    names = {c["name"]: c["index"] for c in _eval(root, "RGBstar")["per_class"]}
    base = _pred(root, "RGBstar")
    current = None
    for r in class_rows:
        current = r[0] or current
        slug = current.replace("*", "star")
        var = _pred(root, slug)
        k = names[r[2]]
        mine = base["label"] == k
        assert r[3] == f"{int(base['correct1'][mine].sum())}/{int(mine.sum())}"
        assert r[4] == f"{int(var['correct1'][var['label'] == k].sum())}/{int(mine.sum())}"


def test_report_has_every_section_and_figures(study):
    _, root, _ = study
    md = (root / "report.md").read_text()
    for heading in ("Results (the analogue of table 4.1)", "Controls and further comparisons",
                    "Classes that improved most (the analogue of table 4.2)", "Parameters", "Validation curves",
                    "The saliency model", "Conclusion (generated from the numbers above)"):
        assert f"## {heading}" in md, heading
    for img in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (root / img).is_file() and (root / img).read_bytes()[:4] == b"\x89PNG"
    assert "figures/fanin.png" in md and "figures/examples.png" in md
    assert "## Every comparison at a glance" in md and "figures/comparisons.png" in md
    assert "Do real maps help FanIn1 more than a constant map?" in md
    html = (root / "report.html").read_text()
    assert html.count("data:image/png;base64,") == md.count("![")
    # Parameter table: the counts come from the models stage.
    params = json.loads((root / "params.json").read_text())
    from salclass.models.params import params_report

    rep = params_report(128, 2)
    assert params["models"]["FanIn1"]["total"] == rep["variants"]["FanIn1"]["total"]
    assert f"{rep['variants']['FanIn1']['total']:,}" in md
    sal = json.loads((root / "saliency_eval.json").read_text())
    assert sal["images"] == 2 and any(r["model"] == "centre_bias" for r in sal["rows"])
    # The maps' model against the centre bias, image by image, in the file and in the report.
    versus = {r["model"]: r for r in sal["versus_centre_bias"]}
    assert "centre_bias" not in versus and set(versus) == {r["model"] for r in sal["rows"]} - {
        "centre_bias", "inter-observer (half vs half)"}
    nss = versus["image_signature"]["NSS"]
    assert nss["low"] <= nss["difference"] <= nss["high"]
    line = next(x for x in md.splitlines() if x.startswith("| image_signature |") and " to " in x)
    assert f"| {nss['difference']:+.3f} ({nss['low']:+.3f} to {nss['high']:+.3f}) |" in line


def test_rerun_reuses_every_run_and_report_rebuilds(study, monkeypatch, run_cli):
    cfg_path, root, _ = study
    ckpt = root / "runs" / "FanIn1" / "seed0" / "checkpoint.pt"
    before = ckpt.stat().st_mtime_ns

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(steps, "train", no_training)
    run_study(load_study(cfg_path), root)
    assert ckpt.stat().st_mtime_ns == before
    (root / "report.md").unlink()
    code, out, _ = run_cli("report", root)
    assert code == 0 and (root / "report.md").is_file()


def test_half_finished_run_is_resumed_not_restarted(study):
    cfg_path, root, _ = study
    run = root / "runs" / "FanIn1-const" / "seed0"
    (run / "done.json").unlink()
    shutil.rmtree(run / "eval")
    first_metrics = (run / "metrics.jsonl").read_text()
    ckpt = (run / "checkpoint.pt").stat().st_mtime_ns
    run_study(load_study(cfg_path), root)
    assert (run / "done.json").is_file() and (run / "eval" / "eval.json").is_file()
    # Resumed after its last saved epoch: no epoch trained again.
    assert (run / "metrics.jsonl").read_text() == first_metrics
    assert (run / "checkpoint.pt").stat().st_mtime_ns == ckpt


def test_finished_study_can_be_moved(study, tmp_path, monkeypatch, linked_copy):
    cfg_path, root, _ = study
    moved = tmp_path / "moved"
    linked_copy(root, moved)
    monkeypatch.setattr(steps, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    run_study(load_study(cfg_path), moved)
    assert (moved / "report.md").read_text().count("| RGBS-ft |") >= 1


def test_changed_settings_are_refused(study, tmp_path):
    from salclass.errors import UserError

    cfg_path, root, _ = study
    with pytest.raises(UserError, match="other data settings"):
        run_study(load_study(cfg_path, ["data.train_per_class=7"]), root)
    with pytest.raises(UserError, match="other settings"):
        run_study(load_study(cfg_path, ["train.batch_size=4"]), root)


def test_estimate_from_a_finished_study(study, run_cli):
    cfg_path, root, _ = study
    code, out, _ = run_cli("study", "--config", cfg_path, "--out", root / "unused", "--estimate-from", root)
    assert code == 0 and not (root / "unused").exists()
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:-1]}
    assert set(rows) == {"RGB*", "RGBS-ft", "FanIn1", "FanIn1-const"}
    # FanIn1 carries a saliency branch: more work per image than the baseline, never less.
    assert float(rows["FanIn1"][4]) > float(rows["RGB*"][4])
    assert "hours" in out.splitlines()[-1]
    pooled, low, high = re.search(r"training ([\d.]+) GFLOP/s \(runs from ([\d.]+) to ([\d.]+)\)", out).groups()
    assert float(low) <= float(pooled) <= float(high)


def test_estimate_warns_when_the_runs_rates_say_the_machine_was_shared(study, tmp_path, run_cli, linked_copy):
    cfg_path, root, _ = study
    copy = linked_copy(root, tmp_path / "study")
    metrics = copy / "runs" / "FanIn1" / "seed0" / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    for row in rows:   # as if another job had taken most of the machine during this run
        row["train"]["seconds"] *= 10
        row.pop("content_sha256")  # an edited line with its checksum would be refused: as a line from before them
    metrics.write_text("".join(json.dumps(row) + "\n" for row in rows))
    code, out, err = run_cli("study", "--config", cfg_path, "--out", tmp_path / "unused", "--estimate-from", copy)
    assert code == 0 and "probably shared" in err, err
    for run in (copy / "runs").iterdir():   # one run left: nothing to compare its rate with
        if run.name != "RGBstar":
            shutil.rmtree(run)
    code, _, err = run_cli("study", "--config", cfg_path, "--out", tmp_path / "unused", "--estimate-from", copy)
    assert code == 0 and "probably shared" not in err, err


def test_a_garbled_config_of_a_finished_run_is_one_line(study, tmp_path, run_cli, linked_copy):
    cfg_path, root, _ = study
    moved = tmp_path / "copy"
    linked_copy(root, moved)
    config = moved / "runs" / "RGBstar" / "seed0" / "config.yaml"
    config.write_text("model: RGB\nbatch_size: [8\n")
    code, _, err = run_cli("study", "--config", cfg_path, "--out", moved)
    assert code == 2 and f"{config}: not valid YAML" in err.strip().splitlines()[-1]
    assert "Traceback" not in err


def test_report_and_plot_into_read_only_folders_are_one_line(study, tmp_path, run_cli, make_readonly, linked_copy):
    _, root, _ = study
    copy = linked_copy(root, tmp_path / "ro" / "study")
    make_readonly(tmp_path / "ro")
    before = (copy / "report.md").read_bytes()
    code, _, err = run_cli("report", copy)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert str(copy) in err
    assert (copy / "report.md").read_bytes() == before   # nothing lost
    run = copy / "runs" / "FanIn1" / "seed0"
    code, _, err = run_cli("plot", run, "--out", tmp_path / "ro" / "curves.png")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "curves.png" in err
    code, _, err = run_cli("plot", run, "--out", tmp_path / "curves.png")   # reading a read-only run is fine
    assert code == 0 and (tmp_path / "curves.png").is_file(), err
