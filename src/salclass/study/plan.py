"""What a study runs: every run's settings, which runs are reused, evaluated,
resumed or trained, and what is refused before any work starts. Both executors
(the serial one in salclass.study.runner and the Ray one in
salclass.study.parallel) take their runs from `plan_runs` and their refusals
from `refuse`, so the two never decide differently.

A finished run (its done marker and an evaluation of its final checkpoint) is
reused, with or without its checkpoint (a record); a half-finished one is
resumed from its checkpoint; a run folder made with other settings is an error,
never silently reused or overwritten.

One precision per study: `train.precision` is resolved once (auto: what this
machine computes in natively), written into study.yaml, and given to every run;
a folder whose runs or study.yaml say another is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from salclass.errors import UserError
from salclass.run_folder import MAY_DIFFER_IN_A_STUDY, RunFolder, settings_difference
from salclass.settings import to_dict
from salclass.study import steps
from salclass.study.config import Experiment, StudyConfig, merge
from salclass.study.folder import StudyFolder, read_study_config
from salclass.say import counted

# reuse: finished and evaluated; evaluate: finished, its evaluation still to make;
# resume: a checkpoint to continue from; train: nothing there yet.
Action = Literal["reuse", "evaluate", "resume", "train"]


@dataclass
class PlannedRun:
    e: Experiment
    seed: int
    settings: dict  # the run's training settings (train_settings)
    action: Action
    parent: str | None  # the name of the run this one starts from (a fine-tune), else None

    @property
    def name(self) -> str:
        return f"{self.e.name} seed {self.seed}"


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


def plan_runs(cfg: StudyConfig, study: StudyFolder) -> list[PlannedRun]:
    """Every run of the study, parents first, with what is to be done with it.
    A finished run is checked to be the same run first (UserError if not)."""
    runs = []
    for e in cfg.order():
        for seed in cfg.seeds:
            settings = train_settings(cfg, study, e, seed)
            folder = study.run_folder(e, seed)
            if folder.is_finished():
                check_run_settings(folder.path, settings)
                action = "evaluate" if needs_evaluation(folder) else "reuse"
            else:
                action = "resume" if folder.checkpoint.is_file() else "train"
            parent = f"{e.init_from} seed {seed}" if e.init_from is not None else None
            runs.append(PlannedRun(e, seed, settings, action, parent))
    return runs


def needs_evaluation(folder: RunFolder) -> bool:
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


def drop_unneeded_checkpoints(cfg: StudyConfig, study: StudyFolder) -> None:
    """drop_checkpoints, and a notice of how many went (the executors' `--drop-checkpoints`)."""
    n = drop_checkpoints(cfg, study)
    if n:
        steps.note(f"dropped {counted(n, 'checkpoint')} of finished, evaluated runs no fine-tune still starts from")


# --- what is refused, before any data work ----------------------------------

def resolve_study_precision(cfg: StudyConfig) -> list[str]:
    """Turn the study's `train.precision` into the concrete one of this machine
    (in place), once, so every run gets the same and study.yaml records it. An
    experiment may name fp32 or bf16 itself (a study comparing precisions);
    its `auto` means the study's. Returns the notes on how it was resolved, to
    be said once the folder accepted it."""
    from salclass.precision import resolve_precision
    from salclass.training.distributed import World
    from salclass.training.distributed import resolve_device

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


def refuse(cfg: StudyConfig, study: StudyFolder) -> None:
    """Every check a study makes before it packs or predicts anything: the
    folder holds this study, every run's settings build, every run already
    there computed in this study's precision and can be reused or evaluated,
    and every fine-tune still to start has its start point."""
    _check_same_study(cfg, study)
    _check_runs(cfg, study)
    _check_run_precisions(cfg, study)
    _check_start_points(cfg, study)


def _other_precision(what: str, was: str) -> UserError:
    return UserError(f"{what}: one precision per study; resume with --set train.precision={was}, or use another --out")


def _check_same_study(cfg: StudyConfig, study: StudyFolder) -> None:
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


def _check_runs(cfg: StudyConfig, study: StudyFolder) -> None:
    """Build every run's training settings now: a wrong key, value or model
    name is found before hours of packing and predicting, not after."""
    for e in cfg.order():
        for seed in cfg.seeds:
            try:
                steps.train_config(train_settings(cfg, study, e, seed))
            except UserError as err:
                raise UserError(f"experiment {e.name}: {err}") from None


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
    """A finished run is one this study can use as it is or evaluate, and a
    fine-tune still to start has its start run's checkpoint, which a record
    does not keep. Refused now, not after hours of other runs."""
    for run in plan_runs(cfg, study):
        if run.parent is None or run.action != "train":
            continue
        parent = study.run_folder(cfg.experiment(run.e.init_from), run.seed)
        if parent.is_finished() and not parent.checkpoint.is_file():
            raise UserError(f"{run.name} starts from {run.parent}, whose run {parent.path} has no checkpoint (a "
                            f"record, or dropped); put its {parent.checkpoint.name} back, or delete that run "
                            "folder to train it again")


def check_run_settings(run_dir: Path, settings: dict) -> None:
    """A finished run is reused only if it is the same run (the run folder's rule)
    and as long as the study wants it."""
    folder = RunFolder(run_dir)
    if not folder.config.is_file():
        raise UserError(f"{run_dir}: finished run without its saved settings ({folder.config.name}); "
                        "delete the folder to rerun it")
    saved = folder.read_config()
    now = to_dict(steps.train_config(settings))
    diff = settings_difference(saved, now, MAY_DIFFER_IN_A_STUDY)
    if diff:
        raise UserError(f"{run_dir}: was trained with other settings ({diff}); delete that run folder or use "
                        "another --out")
