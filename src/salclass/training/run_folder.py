"""The run folder: the one module that knows its file names and how each is
written and read (docs/ARCHITECTURE.md, section 4). Training writes through it;
evaluation, plots, the study, its report and its estimate read through it.

Reading is strict for what a run cannot do without (its settings) and tolerant
where a crash can leave a trace that means nothing: the last metrics line cut
short by a kill mid-append is dropped, since its epoch never reached the
checkpoint and resuming computes it again. Any other damaged line is an error
naming the file.

Metrics come before the checkpoint: an epoch's line is appended (and fsynced)
before the checkpoint of that epoch replaces the previous one, so the files
never claim an epoch the checkpoint cannot reproduce; resuming truncates the
metrics back to the checkpoint's epoch.
"""

from __future__ import annotations

import json
from pathlib import Path

from salclass.errors import UserError
from salclass.io import append_line_durably, atomic_write_text, read_json
from salclass.settings import read_yaml
from salclass.training.checkpoint import CHECKPOINT_NAME
from salclass.training.config import RUNTIME_FIELDS

CONFIG_NAME = "config.yaml"
METRICS_NAME = "metrics.jsonl"
DONE_NAME = "done.json"
START_NAME = "val_start.json"
INIT_NAME = "init.txt"
# What a run printed when it ran as a task of a parallel study (salclass.study.parallel).
LOG_NAME = "log.txt"
EVAL_DIR = "eval"
EVAL_NAME = "eval.json"
PREDICTIONS_NAME = "predictions.npz"
DONE_TYPE = "salclass.run_done"

# Settings that may differ between a run and a command that continues or reuses it: how
# it computes (RUNTIME_FIELDS), how long it goes on (epochs, in RUNTIME_FIELDS: a finished
# run is continued to more), and where things are. Paths are left out so run folders and
# stores can be moved: the run is where it is, init_from (and a saliency run's init_trunk)
# matters only before epoch 1, and the store is compared by what it holds (the checkpoint's
# store identity).
_NOT_COMPARED = RUNTIME_FIELDS | {"out", "store", "init_from", "init_trunk"}


def settings_difference(saved: dict, now: dict) -> str | None:
    """The one rule for "is this the same run?": the first setting, other than the
    ones in _NOT_COMPARED, where `now` differs from a run's saved settings, as
    'key: saved in the run, now', or None when they agree."""
    a = {k: v for k, v in saved.items() if k not in _NOT_COMPARED}
    b = {k: v for k, v in now.items() if k not in _NOT_COMPARED}
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return f"{key}: {a.get(key)!r} in the run, {b.get(key)!r} now"
    return None


class RunFolder:
    """The files of one run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def config(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_NAME

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_NAME

    @property
    def done(self) -> Path:
        return self.path / DONE_NAME

    @property
    def start(self) -> Path:
        return self.path / START_NAME

    @property
    def init_report(self) -> Path:
        return self.path / INIT_NAME

    @property
    def log(self) -> Path:
        return self.path / LOG_NAME

    @property
    def tensorboard(self) -> Path:
        return self.path / "tb"

    @property
    def eval_dir(self) -> Path:
        return self.path / EVAL_DIR

    @property
    def eval(self) -> Path:
        return self.eval_dir / EVAL_NAME

    @property
    def predictions(self) -> Path:
        return self.eval_dir / PREDICTIONS_NAME

    # --- reading -------------------------------------------------------------

    def is_finished(self) -> bool:
        return self.done.is_file()

    def is_evaluated(self) -> bool:
        return self.eval.is_file() and self.predictions.is_file()

    def read_config(self) -> dict:
        """The run's saved settings (UserError if missing or not a mapping)."""
        if not self.config.is_file():
            raise UserError(f"{self.path}: no {CONFIG_NAME} (not a training run)")
        return read_yaml(self.config)

    def read_done(self) -> dict:
        data = read_json(self.done)
        if not isinstance(data, dict) or data.get("type") != DONE_TYPE:
            raise UserError(f"{self.done}: not a salclass run's {DONE_NAME}")
        return data

    def read_metrics(self) -> list[dict]:
        """Every epoch's metrics line ([] when there is no file yet); see the module doc."""
        path = self.metrics
        if not path.is_file():
            return []
        text = path.read_text(encoding="utf-8")
        rows = text.splitlines()
        lines = []
        for n, line in enumerate(rows, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if n == len(rows) and not text.endswith("\n"):
                    break  # an append cut short by a kill (module doc)
                raise UserError(f"{path}: line {n} is not valid JSON") from None
            if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                raise UserError(f"{path}: line {n} is not an epoch's metrics (no integer 'epoch')")
            lines.append(record)
        return lines

    def val_curve(self) -> list[tuple[int, float]]:
        """(epoch, validation top-1 as a fraction); a fine-tune's curve starts at epoch 0
        with its evaluation before training."""
        out = []
        if self.start.is_file():
            val = read_json(self.start).get("val") or {}
            if isinstance(val.get("top1"), (int, float)):
                out.append((0, float(val["top1"])))
        for row in self.read_metrics():
            val = row.get("val") or {}
            if isinstance(val.get("top1"), (int, float)):
                out.append((int(row["epoch"]), float(val["top1"])))
        return out

    def read_evaluation(self) -> tuple[dict, dict]:
        """(eval.json, the per-image predictions as arrays), checked: a damaged or
        hand-edited file is one line naming it (re-run `salclass evaluate` on the run)."""
        import zipfile

        import numpy as np

        ev = read_json(self.eval)
        bad = [k for k in ("top1", "top5") if not isinstance(ev.get(k) if isinstance(ev, dict) else None,
                                                             (int, float))]
        if bad:
            raise UserError(f"{self.eval}: not an evaluation ('{bad[0]}' missing or not a number); "
                            f"re-run salclass evaluate {self.path}")
        try:
            with np.load(self.predictions) as z:
                pred = {k: np.asarray(z[k]) for k in ("index", "label", "top5", "correct1", "correct5")}
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise UserError(f"{self.predictions}: unreadable predictions ({type(e).__name__}); "
                            f"re-run salclass evaluate {self.path}") from None
        n = pred["index"].shape[0]
        if any(a.shape[:1] != (n,) for a in pred.values()) or pred["top5"].ndim != 2:
            raise UserError(f"{self.predictions}: arrays of different lengths; re-run salclass evaluate {self.path}")
        return ev, pred

    def check_metrics_cover(self, epoch: int) -> None:
        """Resuming keeps the metrics lines up to the checkpoint's epoch and appends
        the rest; without all of them done.json and the curves would silently cover
        only the resumed epochs."""
        epochs = [m["epoch"] for m in self.read_metrics()][:epoch]
        if epochs != list(range(1, epoch + 1)):
            raise UserError(f"{self.metrics}: has lines for epochs {epochs or 'none'}, but the checkpoint beside "
                            f"it is at epoch {epoch}; restore the file, or delete {self.path} to train the run "
                            "again")

    # --- writing (training only) -------------------------------------------

    def append_metrics(self, record: dict) -> None:
        """One epoch's line, durably, before that epoch's checkpoint is written."""
        append_line_durably(self.metrics, json.dumps(record))

    def truncate_metrics(self, epoch: int) -> None:
        """Keep the lines of epochs 1..epoch (the checkpoint's), atomically."""
        kept = [m for m in self.read_metrics() if m["epoch"] <= epoch]
        atomic_write_text(self.metrics, "".join(json.dumps(m) + "\n" for m in kept))
