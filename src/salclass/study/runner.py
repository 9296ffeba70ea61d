"""`salclass study`: from an image folder to a report, every step resumable.

Steps, each skipped when its result is already complete in DIR:
  1. pack the store (a subset of links first, when the config asks for one);
  2. predict a saliency map for every image;
  3. record the parameter table and the saliency model's metrics;
  4. train and evaluate every experiment x seed as its own run folder, each
     fine-tune after the run it starts from (same seed);
  5. write the report.
A finished run (done.json and an evaluation of its final checkpoint) is reused,
with or without its checkpoint (a record); a half-finished one is resumed from
its checkpoint; a run folder made with other settings is an error, never
silently reused or overwritten.

One precision per study: `train.precision` is resolved once (auto: what this
machine computes in natively), written into study.yaml, and given to every run;
a folder whose runs or study.yaml say another is refused.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from salclass.errors import UserError
from salclass.lock import folder_lock
from salclass.settings import to_dict
from salclass.study import steps
from salclass.study.config import Experiment, StudyConfig, load_study, merge
from salclass.study.folder import StudyFolder, read_study_config, save_study_config
from salclass.study.report import build_report


def _say(msg: str) -> None:
    print(f"[study] {msg}", file=sys.stderr, flush=True)


def _check_same_study(study: StudyFolder, cfg: StudyConfig) -> None:
    """A folder holds one study's data: refuse to mix in a different data set or saliency model."""
    if not study.study_yaml.is_file():
        return
    old, _ = read_study_config(study.study_yaml)
    was, now = old.train.get("precision"), cfg.train.get("precision")
    if was in ("fp32", "bf16") and was != now:
        raise _other_precision(f"{study.root} holds a study computed in {was} (its study.yaml), this one would "
                               f"compute in {now}", was)
    for key in ("data", "saliency"):
        a, b = to_dict(getattr(old, key)), to_dict(getattr(cfg, key))
        if key == "saliency":  # how maps are scored or batched does not change the maps
            a, b = a["model"], b["model"]
        else:  # nor does the number of decoding processes change the images
            a.pop("workers"), b.pop("workers")
        if a != b:
            raise UserError(f"{study.root} holds a study with other {key} settings; use another --out "
                            f"(or delete {study.root})")


def train_settings(cfg: StudyConfig, study: StudyFolder, e: Experiment, seed: int) -> dict:
    """The training settings of one run, as a plain mapping for TrainConfig."""
    epochs, milestones = cfg.schedule(e)
    fixed = {
        "store": str(study.store), "out": str(study.run_dir(e, seed)), "model": e.model, "seed": seed,
        "epochs": epochs, "milestones": milestones, "mean_subtract": e.mean_subtract, "block_order": cfg.block_order,
    }
    if e.init_from is not None:
        fixed["init_from"] = str(study.run_folder(cfg.experiment(e.init_from), seed).checkpoint)
        fixed["init_new"] = e.init
    if e.attention is not None:
        fixed["attention"] = {"beta": e.attention.beta, "layer": e.attention.layer}
    return merge(merge(cfg.train, e.train), fixed)


def _other_precision(what: str, was: str) -> UserError:
    return UserError(f"{what}: one precision per study; resume with --set train.precision={was}, or use another --out")


def resolve_study_precision(cfg: StudyConfig) -> list[str]:
    """Turn the study's `train.precision` into the concrete one of this machine
    (in place), once, so every run gets the same and study.yaml records it. An
    experiment may name fp32 or bf16 itself (a study comparing precisions);
    its `auto` means the study's. Returns the notes on how it was resolved, to
    be said once the folder accepted it."""
    from salclass.precision import resolve_precision
    from salclass.training.distributed import World
    from salclass.training.main import resolve_device

    setting = cfg.train.get("precision", "auto")
    if setting not in ("auto", "fp32", "bf16"):
        raise UserError(f"train.precision must be auto, fp32 or bf16, got {setting!r}")
    device = resolve_device(str(cfg.train.get("device", "auto")), World())
    notes: list[str] = []
    cfg.train["precision"] = resolve_precision(setting, device, say=notes.append)
    for e in cfg.experiments:
        if e.train.get("precision") == "auto":
            e.train["precision"] = cfg.train["precision"]
    return notes


def _check_run_precisions(cfg: StudyConfig, study: StudyFolder) -> None:
    """Every run already in the folder computed in the precision it gets now."""
    for e in cfg.order():
        for seed in cfg.seeds:
            folder = study.run_folder(e, seed)
            if not folder.config.is_file():
                continue
            was = folder.read_config().get("precision")
            now = train_settings(cfg, study, e, seed).get("precision")
            if was in ("fp32", "bf16") and was != now:
                raise _other_precision(f"{folder.path}: was trained in {was}, this study would now compute in {now}",
                                       was)


def _check_start_points(cfg: StudyConfig, study: StudyFolder) -> None:
    """Before any data work: a finished run is one this study can use as it is
    or evaluate, and a fine-tune still to start has its start run's checkpoint,
    which a record does not keep. Refused now, not after hours of other runs."""
    for e in cfg.order():
        for seed in cfg.seeds:
            folder = study.run_folder(e, seed)
            if folder.is_finished():
                steps.check_run_settings(folder.path, train_settings(cfg, study, e, seed))
                needs_evaluation(folder)
    for e in cfg.order():
        if e.init_from is None:
            continue
        for seed in cfg.seeds:
            folder = study.run_folder(e, seed)
            if folder.is_finished() or folder.checkpoint.is_file():
                continue
            parent = study.run_folder(cfg.experiment(e.init_from), seed)
            if parent.is_finished() and not parent.checkpoint.is_file():
                raise UserError(f"{e.name} seed {seed} starts from {e.init_from} seed {seed}, whose run "
                                f"{parent.path} has no checkpoint (a record, or dropped); put its checkpoint.pt "
                                "back, or delete that run folder to train it again")


def needs_evaluation(folder) -> bool:
    """A finished run without an evaluation of its final checkpoint, which can
    be made; UserError where it cannot (a record without its checkpoint)."""
    if folder.is_evaluated() and folder.evaluation_matches():
        return False
    if not folder.checkpoint.is_file():
        what = "was made from another checkpoint" if folder.is_evaluated() else "is missing"
        raise UserError(f"{folder.path}: finished, but its evaluation {what} and its checkpoint is gone, so it "
                        "cannot be evaluated again; delete the folder to train the run again")
    return True


def drop_checkpoints(cfg: StudyConfig, study: StudyFolder) -> int:
    """Delete the checkpoint of every finished run evaluated from it, unless a
    run of the study still has to start from it (a fine-tune not finished).
    Returns how many were deleted."""
    dropped = 0
    for e in cfg.order():
        children = [c for c in cfg.experiments if c.init_from == e.name]
        for seed in cfg.seeds:
            folder = study.run_folder(e, seed)
            if not (folder.checkpoint.is_file() and folder.is_record() and folder.evaluation_matches()):
                continue
            if any(not study.run_folder(c, seed).is_finished() for c in children):
                continue
            folder.checkpoint.unlink()
            dropped += 1
    return dropped


class _Progress:
    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.monotonic()

    def line(self, what: str) -> None:
        el = time.monotonic() - self.start
        _say(f"run {self.done + 1}/{self.total} ({self.done} done, {el / 60:.1f} min elapsed): {what}")


def run_experiments(cfg: StudyConfig, study: StudyFolder, drop: bool = False) -> None:
    jobs = [(e, s) for e in cfg.order() for s in cfg.seeds]
    prog = _Progress(len(jobs))
    reused = 0
    for e, seed in jobs:
        run_dir = study.run_dir(e, seed)
        folder = study.run_folder(e, seed)
        settings = train_settings(cfg, study, e, seed)
        if folder.is_finished():
            steps.check_run_settings(run_dir, settings)
            if needs_evaluation(folder):
                prog.line(f"{e.name} seed {seed}: evaluating its final checkpoint")
                steps.evaluate(run_dir, study.val_split, settings.get("device", "auto"))
            else:
                reused += 1
            prog.done += 1
            _drop(cfg, study, drop)
            continue
        if e.init_from is not None:
            if not study.run_folder(cfg.experiment(e.init_from), seed).is_finished():
                raise UserError(f"{e.name} seed {seed} starts from {e.init_from}, whose run did not finish")
        # An unfinished run resumes; training itself refuses a checkpoint made with other settings.
        resume = folder.checkpoint.is_file()
        prog.line(f"{e.name} seed {seed} ({e.stage}): {'resuming' if resume else 'training'} {e.model}")
        steps.train(settings)
        steps.evaluate(run_dir, study.val_split, settings.get("device", "auto"))
        prog.done += 1
        _drop(cfg, study, drop)
    if reused:
        _say(f"{reused} of {len(jobs)} runs were already finished and reused")


def _drop(cfg: StudyConfig, study: StudyFolder, drop: bool) -> None:
    if drop:
        n = drop_checkpoints(cfg, study)
        if n:
            _say(f"dropped {n} checkpoint(s) of finished, evaluated runs no fine-tune still starts from")


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


def _check_runs(cfg: StudyConfig, study: StudyFolder) -> None:
    """Build every run's training settings now: a wrong key, value or model
    name is found before hours of packing and predicting, not after."""
    for e in cfg.order():
        for seed in cfg.seeds:
            try:
                steps.train_config(train_settings(cfg, study, e, seed))
            except UserError as err:
                raise UserError(f"experiment {e.name}: {err}") from None


def _run_study_locked(cfg: StudyConfig, study: StudyFolder, jobs: int, ray_address: str | None,
                      drop: bool, notes: list[str]) -> Path:
    _check_same_study(study, cfg)
    _check_runs(cfg, study)
    _check_run_precisions(cfg, study)
    _check_start_points(cfg, study)
    parallel = not (jobs == 1 and ray_address is None)
    if parallel and ray_address is None:
        from salclass.study.parallel import check_local

        check_local(cfg, study)
    # Said only once every check passed: a refused study prints its one line and nothing else.
    for note in notes:
        _say(note)
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
    _say(f"report: {report} ({time.monotonic() - t0:.0f} s in all)")
    return report


def _prepare_data(cfg: StudyConfig, study: StudyFolder, t0: float) -> None:
    steps.ensure_store(cfg, study, _say)
    # Saved once the data exist, so a config that named a wrong folder does not lock the study folder.
    save_study_config(cfg, study.study_yaml)
    steps.ensure_maps(cfg, study, _say)
    steps.record_store(study)
    steps.record_params(cfg, study)
    steps.record_saliency_metrics(cfg, study, _say)
    _say(f"data ready in {time.monotonic() - t0:.0f} s")


def study_cli(config: str, out: str, sets: list[str] | None = None, estimate_from: str | None = None,
              jobs: int = 1, ray_address: str | None = None, drop_checkpoints: bool = False) -> int:
    cfg = load_study(config, sets or [])
    if estimate_from is not None:
        from salclass.study.estimate import estimate_cli

        return estimate_cli(cfg, estimate_from)
    try:
        path = run_study(cfg, Path(out), jobs, ray_address, drop_checkpoints)
    except KeyboardInterrupt:
        _say("stopped; finished runs are kept and the run in progress saved its last epoch. "
             "Run the same command again to resume.")
        raise
    print(path)
    return 0
