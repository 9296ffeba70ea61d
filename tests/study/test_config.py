"""The study config: shipped files load, schedules scale, bad configs are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from salclass.errors import UserError
from salclass.models import list_models
from salclass.study.config import load_study, scale_schedule
from salclass.study.subset import choose

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "configs" / "study").glob("*.yaml"))


def test_shipped_configs_exist():
    assert {p.name for p in SHIPPED} >= {"thesis-128.yaml", "thesis-227.yaml", "quick.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_is_valid(path: Path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_study(path)
    known = set(list_models())
    for e in cfg.experiments:
        assert e.model in known, e.model
    order = [e.name for e in cfg.order()]
    for e in cfg.experiments:
        if e.init_from:
            assert order.index(e.init_from) < order.index(e.name)
    assert cfg.data.source is not None and cfg.data.source.is_absolute()


def test_thesis_128_has_every_stage_and_control(monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_study(REPO / "configs/study/thesis-128.yaml")
    models = {e.model for e in cfg.experiments}
    assert {"RGB", "RGBS", "RGB_1S2S", "RGBS_1S2S", "RGBxS", "RGB_1xS2xS", "RGBxS_1xS2xS", "FanIn1", "FanIn2",
            "FanIn3", "FanIn3_noS", "FanIn1-const", "FanIn2-const", "FanIn3-const", "RGBS-centre", "FanIn3-centre"} <= models
    stage1 = [e for e in cfg.experiments if e.stage == "stage1"]
    assert len(stage1) == 6 and all(e.init_from == "RGB*" and cfg.schedule(e)[0] == 30 for e in stage1)
    assert any(e.attention is not None and e.attention.beta > 0 for e in cfg.experiments)
    assert cfg.experiment("FanIn3").thesis.top1 == pytest.approx(48.99)
    assert cfg.experiment("RGB").mean_subtract and not cfg.experiment("RGB*").mean_subtract


def test_quick_is_the_same_study_scaled_down(monkeypatch):
    monkeypatch.chdir(REPO)
    quick = load_study(REPO / "configs/study/quick.yaml")
    full = load_study(REPO / "configs/study/thesis-128.yaml")
    assert {e.stage for e in quick.experiments} == {e.stage for e in full.experiments}
    assert quick.data.is_subset and quick.epoch_scale < 1


def test_scale_schedule():
    assert scale_schedule(90, [24, 45, 62], 1.0) == (90, [24, 45, 62])
    assert scale_schedule(90, [24, 45, 62], 0.1) == (9, [2, 4, 6])
    # Milestones that fall on or past the last epoch, or on epoch 0, are dropped; at least one epoch runs.
    assert scale_schedule(30, [8, 15, 21], 0.01) == (1, [])
    assert scale_schedule(90, [24, 45, 62], 1 / 30) == (3, [1, 2])


def _write(tmp_path: Path, body: dict) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(body))
    return p


BASE = {"data": {"source": "/nowhere"},
        "experiments": [{"name": "A", "model": "RGB", "stage": "baselines"},
                        {"name": "B", "model": "RGBS", "stage": "stage1", "init_from": "A", "baseline": "A"}]}


@pytest.mark.parametrize("change, fragment", [
    ({"experiments": [{"name": "A", "model": "RGB", "stage": "baselines", "baseline": "Z"}]}, "baseline 'Z'"),
    ({"experiments": [{"name": "A", "model": "RGB", "stage": "nowhere"}]}, "stage"),
    ({"experiments": [{"name": "A", "model": "RGB", "stage": "baselines", "init_from": "B"},
                      {"name": "B", "model": "RGB", "stage": "baselines", "init_from": "A"}]}, "cycle"),
    ({"experiments": [{"name": "A", "model": "RGB", "stage": "baselines"},
                      {"name": "A", "model": "RGBS", "stage": "baselines"}]}, "used twice"),
    ({"seeds": []}, "at least one seed"),
    ({"epoch_scale": 0}, "epoch_scale"),
    ({"data": {"source": "/x", "size": 128}}, "144 or 256"),
    ({"data": {"source": "/x", "store": "/y"}}, "exactly one"),
    ({"comparisons": [{"variant": "A", "against": "C"}]}, "'C'"),
    ({"bogus": 1}, "unknown setting 'bogus'"),
    ({"figures": [{"name": "comparisons", "title": "t", "experiments": ["A"]}]}, "the report's own figures"),
    ({"figures": [{"name": "examples", "title": "t", "experiments": ["A"]}]}, "the report's own figures"),
    ({"figures": [{"name": "../up", "title": "t", "experiments": ["A"]}]}, "plain file stem"),
])
def test_bad_config_is_one_line_error(tmp_path, change, fragment):
    body = dict(BASE, **change)
    with pytest.raises(UserError) as e:
        load_study(_write(tmp_path, body))
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_cli_reports_bad_config(tmp_path, run_cli):
    code, _, err = run_cli("study", "--config", _write(tmp_path, dict(BASE, seeds=[])), "--out", tmp_path / "o")
    assert code == 2 and "seed" in err


def test_subset_choice_is_seeded_and_per_class(imagenette_root):
    cfg = load_study(None, [f"data.source={imagenette_root}", "data.num_classes=2", "data.train_per_class=5",
                            "data.val_per_class=3",
                            "experiments=[{name: A, model: RGB, stage: baselines}]"])
    a = choose(cfg.data)
    assert sorted(a) == ["train", "val"]
    assert list(a["train"]) == sorted(p.name for p in (imagenette_root / "train").iterdir())[:2]
    assert all(len(v) == 5 for v in a["train"].values()) and all(len(v) == 3 for v in a["val"].values())
    assert choose(cfg.data) == a
    cfg.data.seed = 1
    assert choose(cfg.data) != a
