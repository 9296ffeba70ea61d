"""`salclass study`: from an image folder to a report, every step resumable.

Steps, each skipped when its result is already complete in DIR:
  1. pack the store (a subset of links first, when the config asks for one);
  2. predict a saliency map for every image;
  3. record the parameter table and the saliency model's metrics;
  4. train and evaluate every experiment x seed as its own run folder, each
     fine-tune after the run it starts from (same seed);
  5. write the report.
What is run, reused or refused is decided in salclass.study.plan; this module
runs the steps and picks the executor: the runs one after another in this
process, or as Ray tasks (salclass.study.parallel).
"""

from __future__ import annotations

import time
from pathlib import Path

from salclass.errors import UserError
from salclass.lock import folder_lock
from salclass.study import steps
from salclass.study.config import StudyConfig, load_study
from salclass.study.folder import StudyFolder, save_study_config
from salclass.study.plan import drop_unneeded_checkpoints, plan_runs, refuse, resolve_study_precision
from salclass.study.report import build_report
from salclass.study.steps import note


class _Progress:
    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.monotonic()

    def line(self, what: str) -> None:
        el = time.monotonic() - self.start
        note(f"run {self.done + 1}/{self.total} ({self.done} done, {el / 60:.1f} min elapsed): {what}")


def run_experiments(cfg: StudyConfig, study: StudyFolder, drop: bool = False) -> None:
    """The serial executor: every planned run in turn, parents first."""
    runs = plan_runs(cfg, study)
    prog = _Progress(len(runs))
    reused = 0
    for run in runs:
        run_dir = study.run_dir(run.e, run.seed)
        device = run.settings.get("device", "auto")
        if run.action == "reuse":
            reused += 1
        elif run.action == "evaluate":
            prog.line(f"{run.name}: evaluating its final checkpoint")
            steps.evaluate(run_dir, study.val_split, device)
        else:
            parent = study.run_folder(cfg.experiment(run.e.init_from), run.seed) if run.parent else None
            if parent is not None and not parent.is_finished():
                raise UserError(f"{run.name} starts from {run.e.init_from}, whose run did not finish")
            # Training itself refuses a checkpoint made with other settings.
            prog.line(f"{run.name} ({run.e.stage}): {'resuming' if run.action == 'resume' else 'training'} "
                      f"{run.e.model}")
            steps.train(run.settings)
            steps.evaluate(run_dir, study.val_split, device)
        prog.done += 1
        if drop:
            drop_unneeded_checkpoints(cfg, study)
    if reused:
        note(f"{reused} of {len(runs)} runs were already finished and reused")


def run_study(cfg: StudyConfig, root: str | Path, jobs: int = 1, ray_address: str | None = None,
              drop_checkpoints: bool = False) -> Path:
    """With `jobs` 1 and no Ray address the runs go one after another in this
    process; otherwise they are Ray tasks (salclass.study.parallel). With
    `drop_checkpoints`, a run's checkpoint is deleted once the run is finished
    and evaluated and no fine-tune still has to start from it."""
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    notes = resolve_study_precision(cfg)
    study = StudyFolder(root, cfg)
    with folder_lock(study.root, exclusive=True):
        return _run_study_locked(cfg, study, jobs, ray_address, drop_checkpoints, notes)


def _run_study_locked(cfg: StudyConfig, study: StudyFolder, jobs: int, ray_address: str | None,
                      drop: bool, notes: list[str]) -> Path:
    refuse(cfg, study)
    parallel = not (jobs == 1 and ray_address is None)
    if parallel and ray_address is None:
        from salclass.study.parallel import check_local

        check_local(cfg, study)
    # Said only once every check passed: a refused study prints its one line and nothing else.
    for line in notes:
        note(line)
    t0 = time.monotonic()
    if not parallel:
        _prepare_data(cfg, study, t0)
        run_experiments(cfg, study, drop)
    else:
        from salclass.study.parallel import joined, run_parallel

        with joined(ray_address):
            _prepare_data(cfg, study, t0)
            run_parallel(cfg, study, jobs, drop)
    report = build_report(study.root, cfg)
    note(f"report: {report} ({time.monotonic() - t0:.0f} s in all)")
    return report


def _prepare_data(cfg: StudyConfig, study: StudyFolder, t0: float) -> None:
    steps.ensure_store(cfg, study)
    # Saved once the data exist, so a config that named a wrong folder does not lock the study folder.
    save_study_config(cfg, study.study_yaml)
    steps.ensure_maps(cfg, study)
    steps.record_store(study)
    steps.record_params(cfg, study)
    steps.record_saliency_metrics(cfg, study)
    note(f"data ready in {time.monotonic() - t0:.0f} s")


def study_cli(config: str, out: str, sets: list[str] | None = None, estimate_from: str | None = None,
              jobs: int = 1, ray_address: str | None = None, drop_checkpoints: bool = False) -> int:
    cfg = load_study(config, sets or [])
    if estimate_from is not None:
        from salclass.study.estimate import estimate_cli

        return estimate_cli(cfg, estimate_from)
    try:
        path = run_study(cfg, Path(out), jobs, ray_address, drop_checkpoints)
    except KeyboardInterrupt:
        note("stopped; finished runs are kept and the run in progress saved its last epoch. "
             "Run the same command again to resume.")
        raise
    print(path)
    return 0
