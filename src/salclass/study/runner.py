"""`salclass study`: from an image folder to a report, every step resumable.

Steps, each skipped when its result is already complete in DIR:
  1. pack the store (a subset of links first, when the config asks for one);
  2. predict a saliency map for every image;
  3. record the parameter table and the saliency model's metrics;
  4. train and evaluate every experiment x seed as its own run folder, each
     fine-tune after the run it starts from (same seed);
  5. write the report.
A finished run (done.json and its evaluation) is reused; a half-finished one is
resumed from its checkpoint; a run folder made with other settings is an error,
never silently reused or overwritten.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from salclass.errors import UserError
from salclass.lock import folder_lock
from salclass.settings import load_settings, save_settings, to_dict
from salclass.study import stages
from salclass.study.config import Experiment, StudyConfig, load_study, merge
from salclass.study.layout import StudyLayout
from salclass.study.report import build_report


def _say(msg: str) -> None:
    print(f"[study] {msg}", file=sys.stderr, flush=True)


def _check_same_study(layout: StudyLayout, cfg: StudyConfig) -> None:
    """A folder holds one study's data: refuse to mix in a different data set or saliency model."""
    if not layout.study_yaml.is_file():
        return
    old = load_settings(StudyConfig, layout.study_yaml)
    for key in ("data", "saliency"):
        a, b = to_dict(getattr(old, key)), to_dict(getattr(cfg, key))
        if key == "saliency":  # how maps are scored or batched does not change the maps
            a, b = a["model"], b["model"]
        else:  # nor does the number of decoding processes change the images
            a.pop("workers"), b.pop("workers")
        if a != b:
            raise UserError(f"{layout.root} holds a study with other {key} settings; use another --out "
                            f"(or delete {layout.root})")


def train_settings(cfg: StudyConfig, layout: StudyLayout, e: Experiment, seed: int) -> dict:
    """The training settings of one run, as a plain mapping for TrainConfig."""
    epochs, milestones = cfg.schedule(e)
    fixed = {
        "store": str(layout.store), "out": str(layout.run(e, seed)), "model": e.model, "seed": seed,
        "epochs": epochs, "milestones": milestones, "mean_subtract": e.mean_subtract, "block_order": cfg.block_order,
    }
    if e.init_from is not None:
        fixed["init_from"] = str(layout.run_folder(cfg.experiment(e.init_from), seed).checkpoint)
        fixed["init_new"] = e.init
    if e.attention is not None:
        fixed["attention"] = {"beta": e.attention.beta, "layer": e.attention.layer}
    return merge(merge(cfg.train, e.train), fixed)


class _Progress:
    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.monotonic()

    def line(self, what: str) -> None:
        el = time.monotonic() - self.start
        _say(f"run {self.done + 1}/{self.total} ({self.done} done, {el / 60:.1f} min elapsed): {what}")


def run_experiments(cfg: StudyConfig, layout: StudyLayout) -> None:
    jobs = [(e, s) for e in cfg.order() for s in cfg.seeds]
    prog = _Progress(len(jobs))
    reused = 0
    for e, seed in jobs:
        run_dir = layout.run(e, seed)
        folder = layout.run_folder(e, seed)
        settings = train_settings(cfg, layout, e, seed)
        if folder.is_finished():
            stages.check_run_settings(run_dir, settings)
            if not folder.is_evaluated():
                prog.line(f"{e.name} seed {seed}: evaluating")
                stages.evaluate(run_dir, layout.val_split, settings.get("device", "auto"))
            else:
                reused += 1
            prog.done += 1
            continue
        if e.init_from is not None:
            if not layout.run_folder(cfg.experiment(e.init_from), seed).is_finished():
                raise UserError(f"{e.name} seed {seed} starts from {e.init_from}, whose run did not finish")
        # An unfinished run resumes; training itself refuses a checkpoint made with other settings.
        resume = folder.checkpoint.is_file()
        prog.line(f"{e.name} seed {seed} ({e.stage}): {'resuming' if resume else 'training'} {e.model}")
        stages.train(settings)
        stages.evaluate(run_dir, layout.val_split, settings.get("device", "auto"))
        prog.done += 1
    if reused:
        _say(f"{reused} of {len(jobs)} runs were already finished and reused")


def run_study(cfg: StudyConfig, root: str | Path, jobs: int = 1, ray_address: str | None = None) -> Path:
    """With `jobs` 1 and no Ray address the runs go one after another in this
    process; otherwise they are Ray tasks (salclass.study.parallel)."""
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    layout = StudyLayout(root, cfg)
    with folder_lock(layout.root, exclusive=True):
        return _run_study_locked(cfg, layout, jobs, ray_address)


def _check_runs(cfg: StudyConfig, layout: StudyLayout) -> None:
    """Build every run's training settings now: a wrong key, value or model
    name is found before hours of packing and predicting, not after."""
    for e in cfg.order():
        for seed in cfg.seeds:
            try:
                stages.train_config(train_settings(cfg, layout, e, seed))
            except UserError as err:
                raise UserError(f"experiment {e.name}: {err}") from None


def _run_study_locked(cfg: StudyConfig, layout: StudyLayout, jobs: int, ray_address: str | None) -> Path:
    _check_same_study(layout, cfg)
    _check_runs(cfg, layout)
    t0 = time.monotonic()
    if jobs == 1 and ray_address is None:
        _prepare_data(cfg, layout, t0)
        run_experiments(cfg, layout)
    else:
        from salclass.study.parallel import check_local, joined, run_parallel

        if ray_address is None:
            check_local(cfg, layout)
        with joined(ray_address):
            _prepare_data(cfg, layout, t0)
            run_parallel(cfg, layout, jobs)
    report = build_report(layout.root, cfg)
    _say(f"report: {report} ({time.monotonic() - t0:.0f} s in all)")
    return report


def _prepare_data(cfg: StudyConfig, layout: StudyLayout, t0: float) -> None:
    stages.ensure_store(cfg, layout, _say)
    # Saved once the data exist, so a config that named a wrong folder does not lock the study folder.
    save_settings(cfg, layout.study_yaml)
    stages.ensure_maps(cfg, layout, _say)
    stages.record_params(cfg, layout)
    stages.record_saliency_metrics(cfg, layout, _say)
    _say(f"data ready in {time.monotonic() - t0:.0f} s")


def study_cli(config: str, out: str, sets: list[str] | None = None, estimate_from: str | None = None,
              jobs: int = 1, ray_address: str | None = None) -> int:
    cfg = load_study(config, sets or [])
    if estimate_from is not None:
        from salclass.study.estimate import estimate_cli

        return estimate_cli(cfg, estimate_from)
    try:
        path = run_study(cfg, Path(out), jobs, ray_address)
    except KeyboardInterrupt:
        _say("stopped; finished runs are kept and the run in progress saved its last epoch. "
             "Run the same command again to resume.")
        raise
    print(path)
    return 0
