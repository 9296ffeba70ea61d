"""The run folder: the one module that knows its file names and how each is
written and read (docs/ARCHITECTURE.md, section 4). Training writes through it;
evaluation, plots, the study, its report and its estimate read through it.

Reading is strict for what a run cannot do without (its settings) and tolerant
where a crash can leave a trace that means nothing: the last metrics line cut
short by a kill mid-append is dropped, since its epoch never reached the
checkpoint and resuming computes it again. Any other damaged line is an error
naming the file.

Record files carry checksums (salclass.checksum): done.json, eval.json and
each metrics line. A mismatch is one line naming the file; a file from before
checksums is read as it is and listed in `unverified`. done.json names the
final checkpoint by its content checksum and eval.json the checkpoint it was
made from, so an evaluation of another epoch's weights is told apart
(`evaluation_matches`) even when the checkpoint itself is gone (a record).

Metrics come before the checkpoint: an epoch's line is appended (and fsynced)
before the checkpoint of that epoch replaces the previous one, so the files
never claim an epoch the checkpoint cannot reproduce; resuming truncates the
metrics back to the checkpoint's epoch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from salclass import checksum
from salclass.errors import UserError
from salclass.io import append_line_durably, atomic_write_bytes, atomic_write_text, file_sha256, read_json
from salclass.say import say
from salclass.settings import read_yaml

CONFIG_NAME = "config.yaml"
CHECKPOINT_NAME = "checkpoint.pt"
# A saliency run's model of its best validation epoch (salclass.saliency.trainer).
BEST_NAME = "best.pt"
# A trunk pre-training's result (salclass.saliency.pretrain).
TRUNK_NAME = "trunk.pt"
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
EVAL_TYPE = "salclass.eval"
PREDICTIONS_TYPE = "salclass.predictions"
PREDICTION_ARRAYS = ("index", "label", "top5", "correct1", "correct5")
# What a run's record is: everything a report reads, nothing it does not (no
# checkpoint, no TensorBoard events, no log). Paths relative to the run folder.
RECORD_FILES = (CONFIG_NAME, METRICS_NAME, DONE_NAME, START_NAME, INIT_NAME, f"{EVAL_DIR}/{EVAL_NAME}",
                f"{EVAL_DIR}/{PREDICTIONS_NAME}")
# A summary accuracy in eval.json may differ from the mean of its predictions by rounding only.
_SUMMARY_TOLERANCE = 1e-9

# The one rule for "is this the same run?" compares every saved setting except these, the
# ones that may differ between a run and a command that continues or reuses it:
# - how fast or where it computes (`precision` changes the rounding, not the method; a resumed
#   run keeps the one in its checkpoint; `amp` is in configs of older runs);
# - how long it goes on (`epochs`: a finished run is continued to more);
# - where things are, so run folders and stores can be moved: the run is where it is,
#   `init_from` (and a saliency run's `init_trunk`) matters only before epoch 1, and the store
#   is compared by what it holds (the checkpoint's store identity).
RUNTIME_FIELDS = frozenset(
    {"device", "precision", "amp", "channels_last", "compile", "sync_bn", "workers", "threads", "progress",
     "tensorboard", "epochs"}
)
MAY_DIFFER = RUNTIME_FIELDS | {"out", "store", "init_from", "init_trunk"}
# A study reuses a finished run only if it ran exactly as long as the study asks.
MAY_DIFFER_IN_A_STUDY = MAY_DIFFER - {"epochs"}


def settings_difference(saved: dict, now: dict, may_differ: frozenset = MAY_DIFFER) -> str | None:
    """The first setting, other than those in `may_differ`, where `now` differs from a
    run's saved settings, as 'key: saved in the run, now', or None when they agree."""
    a = {k: v for k, v in saved.items() if k not in may_differ}
    b = {k: v for k, v in now.items() if k not in may_differ}
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return f"{key}: {a.get(key)!r} in the run, {b.get(key)!r} now"
    return None


def run_precision(setting: str, trained: str | None, device, where: str) -> str:
    """The precision a run computes in: a new run's (`trained` None) from its
    setting; a resumed run's is the one it trained in, which an explicit other
    setting may not change. `where` names the run in the refusal."""
    # Imported here: readers of run folders (the report) need no torch.
    from salclass.precision import resolve_precision

    if trained is None:
        return resolve_precision(setting, device, say=say)
    if setting not in ("auto", trained):
        raise UserError(f"precision: {where} was trained in {trained}; resume it with precision {trained} or auto "
                        "(a run mixing precisions would match neither)")
    return resolve_precision(trained, device, say=say)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch metrics of a run folder, which must have begun its first epoch's line."""
    return RunFolder(run_dir).read_metrics(required=True)


class RunFolder:
    """The files of one run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        # Record files read so far that carry no checksum (written before checksums were).
        self.unverified: list[Path] = []

    def _checked(self, obj, path: Path, remedy: str = ""):
        obj, verified = checksum.check(obj, path, remedy)
        if not verified and path not in self.unverified:
            self.unverified.append(path)
        return obj

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
    def best(self) -> Path:
        return self.path / BEST_NAME

    @property
    def trunk(self) -> Path:
        return self.path / TRUNK_NAME

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

    def is_record(self) -> bool:
        """Finished and evaluated: all a report needs, with or without its checkpoint."""
        return self.is_finished() and self.is_evaluated()

    def settings_base(self, config: str | None, resume: bool) -> str | None:
        """The settings file a command starts from: the one it was given, else
        when resuming the run's own saved settings (if there are any)."""
        if config is None and resume and self.config.is_file():
            return str(self.config)
        return config

    def read_config(self) -> dict:
        """The run's saved settings (UserError if missing or not a mapping)."""
        if not self.config.is_file():
            raise UserError(f"{self.path}: no {CONFIG_NAME} (not a training run)")
        return read_yaml(self.config)

    def read_done(self) -> dict:
        data = read_json(self.done)
        if not isinstance(data, dict) or data.get("type") != DONE_TYPE:
            raise UserError(f"{self.done}: not a salclass run's {DONE_NAME}")
        return self._checked(data, self.done, f"restore it, or delete {self.path} to train the run again")

    def read_metrics(self, required: bool = False) -> list[dict]:
        """Every epoch's metrics line (see the module doc); without the file [],
        or with `required` a UserError."""
        path = self.metrics
        if not path.is_file():
            if required:
                raise UserError(f"{self.path}: no {METRICS_NAME} (not a training run, or no epoch finished yet)")
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
            if checksum.KEY in record:
                record, _ = checksum.check(record, f"{path}, line {n}",
                                           f"restore the file, or delete {self.path} to train the run again")
            else:
                record = self._checked(record, path)
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

    def logged_seconds(self) -> float:
        """Training and validation seconds summed over the logged epochs (an epoch cut
        short by a stop is not logged, so its time is not counted)."""
        total = 0.0
        for row in self.read_metrics():
            for part in ("train", "val"):
                seconds = (row.get(part) or {}).get("seconds")
                if isinstance(seconds, (int, float)):
                    total += float(seconds)
        return total

    def read_evaluation(self) -> tuple[dict, dict]:
        """(eval.json, the per-image predictions as arrays), checked: a damaged or
        hand-edited file is one line naming it (re-run `salclass evaluate` on the
        run). The predictions are the truth: eval.json's count, top-1 and top-5
        must agree with them, and the file must be the one eval.json names."""
        import zipfile

        import numpy as np

        again = f"re-run salclass evaluate {self.path}"
        ev = read_json(self.eval)
        if isinstance(ev, dict):
            ev = self._checked(ev, self.eval, again)
        bad = [k for k in ("top1", "top5") if not isinstance(ev.get(k) if isinstance(ev, dict) else None,
                                                             (int, float))]
        if bad:
            raise UserError(f"{self.eval}: not an evaluation ('{bad[0]}' missing or not a number); {again}")
        recorded = ev.get("predictions_sha256")
        if recorded is not None and self.predictions.is_file() and file_sha256(self.predictions) != recorded:
            raise UserError(f"{self.predictions}: not the predictions {self.eval} was written with "
                            f"(its sha256 differs); {again}")
        try:
            with np.load(self.predictions) as z:
                pred = {k: np.asarray(z[k]) for k in PREDICTION_ARRAYS}
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise UserError(f"{self.predictions}: unreadable predictions ({type(e).__name__}); {again}") from None
        n = pred["index"].shape[0]
        if any(a.shape[:1] != (n,) for a in pred.values()) or pred["top5"].ndim != 2:
            raise UserError(f"{self.predictions}: arrays of different lengths; {again}")
        if isinstance(ev.get("count"), int) and ev["count"] != n:
            raise UserError(f"{self.eval}: count {ev['count']} disagrees with the {n} predictions beside it; "
                            f"{again}")
        for key, hits in (("top1", pred["correct1"]), ("top5", pred["correct5"])):
            truth = float(np.mean(hits.astype(bool))) if n else 0.0
            if n and abs(float(ev[key]) - truth) > _SUMMARY_TOLERANCE:
                raise UserError(f"{self.eval}: {key} {ev[key]!r} disagrees with the per-image predictions "
                                f"beside it ({truth!r}); {again}")
        return ev, pred

    def evaluation_matches(self) -> bool:
        """Whether eval.json was made from the run's final checkpoint: the
        checkpoint checksum both record, else (files from before that) the epoch."""
        done = self.read_done()
        ev = read_json(self.eval)
        ev = self._checked(ev, self.eval, f"re-run salclass evaluate {self.path}") if isinstance(ev, dict) else {}
        final, made_from = done.get("checkpoint_sha256"), ev.get("checkpoint_sha256")
        if final is not None and made_from is not None:
            return final == made_from
        return ev.get("epoch") == done.get("epochs")

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
        append_line_durably(self.metrics, checksum.line(record))

    def truncate_metrics(self, epoch: int) -> None:
        """Keep the lines of epochs 1..epoch (the checkpoint's), atomically."""
        kept = [m for m in self.read_metrics() if m["epoch"] <= epoch]
        atomic_write_text(self.metrics, "".join(checksum.line(m) + "\n" for m in kept))

    def write_done(self, data: dict) -> None:
        """The finished marker, last of a run's files."""
        checksum.write_json(self.done, {"type": DONE_TYPE, "version": 1, **data})


def write_evaluation(out_dir: str | Path, summary: dict, pred: dict) -> dict:
    """An evaluation: predictions.npz (one row per image, arrays PREDICTION_ARRAYS),
    then eval.json (`summary` with its type, the predictions' sha256 and a
    checksum), each atomically; eval.json last, so it never names predictions
    that are not there. Returns what eval.json holds."""
    import io

    import numpy as np

    out_dir = Path(out_dir)
    buf = io.BytesIO()
    np.savez(buf, type=np.array(PREDICTIONS_TYPE), version=np.array(1), **{k: pred[k] for k in PREDICTION_ARRAYS})
    data = buf.getvalue()
    atomic_write_bytes(out_dir / PREDICTIONS_NAME, data)
    result = {"type": EVAL_TYPE, "version": 1, **summary, "predictions_sha256": hashlib.sha256(data).hexdigest()}
    checksum.write_json(out_dir / EVAL_NAME, result)
    return result
