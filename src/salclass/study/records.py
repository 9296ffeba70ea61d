"""`salclass records DIR OUT`: a study's records, small enough to commit.

A record is what the report reads and nothing else: the study's own files
(salclass.study.folder.RECORD_FILES: its settings, parameter table, saliency
metrics and store summary) and the grid of maps it drew, and for every
finished, evaluated run its run folder's RECORD_FILES (settings, metrics, done
marker, evaluation with the per-image predictions), in the study folder's own
arrangement. No checkpoint, no store: tens
of KB a run. `salclass report OUT` rebuilds the report from them, and
`salclass study --out` on a copy of OUT reuses every run in it and trains only
what is missing.

Only runs whose files pass their checks (checksums, evaluation of the final
checkpoint, summary against predictions) are copied, each file atomically and
only when it changed, so a copy under git changes where the study did. Runs
not finished are left out, and a run already in OUT is never removed. DIR is
read without its lock, so a study may run there meanwhile: a finished run's
files are no longer rewritten, and every file is replaced in one rename.
"""

from __future__ import annotations

from pathlib import Path

from salclass.errors import UserError
from salclass.io import atomic_write_bytes
from salclass.lock import LOCK_NAME, folder_lock
from salclass.say import say
from salclass.settings import to_dict
from salclass.study.folder import RECORD_FILES, STUDY_YAML, StudyFolder, read_study_config
from salclass.run_folder import RECORD_FILES as RUN_RECORD_FILES
from salclass.say import counted


def _copy(src: Path, dst: Path) -> int:
    """Copy one file if its content differs; returns the bytes written (0: unchanged)."""
    data = src.read_bytes()
    if dst.is_file() and dst.read_bytes() == data:
        return 0
    atomic_write_bytes(dst, data)
    return len(data)


def _images(cfg) -> dict:
    """Which images a study uses, wherever its data lie (records move between machines)."""
    data = to_dict(cfg.data)
    for key in ("source", "store", "workers"):
        data.pop(key)
    return data


def _check_out(out: Path, source_cfg) -> None:
    """OUT is new, empty, or the records of the same study (same name and data)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if (out / STUDY_YAML).is_file():
        cfg, _ = read_study_config(out / STUDY_YAML)
        if cfg.name != source_cfg.name or _images(cfg) != _images(source_cfg):
            raise UserError(f"{out}: holds the records of another study ({cfg.name}); choose another folder")
        return
    if any(p.name != LOCK_NAME for p in out.iterdir()):
        raise UserError(f"{out}: not empty and not a study's records; choose another folder")


def export_records(study_dir: str | Path, out: str | Path) -> dict:
    """Copy the records of study folder `study_dir` to `out`; returns counts."""
    src, out = Path(study_dir), Path(out)
    cfg, _ = read_study_config(src / STUDY_YAML)
    if src.resolve() == out.resolve():
        raise UserError(f"{out}: is the study folder itself; name another folder for its records")
    _check_out(out, cfg)
    out.mkdir(parents=True, exist_ok=True)
    study, dest = StudyFolder(src, cfg), StudyFolder(out, cfg)
    copied = written = 0
    unfinished = []
    with folder_lock(out, exclusive=True):
        for name in RECORD_FILES:
            if (src / name).is_file():
                written += _copy(src / name, out / name)
        grid = study.examples_grid
        if grid.is_file():
            written += _copy(grid, dest.examples_grid)
        for e in cfg.experiments:
            for seed in cfg.seeds:
                folder = study.run_folder(e, seed)
                if not folder.is_record():
                    unfinished.append(f"{e.name} seed {seed}")
                    continue
                if not folder.evaluation_matches():
                    raise UserError(f"{folder.eval}: made from another checkpoint than the run's final one; "
                                    f"re-run salclass evaluate {folder.path} (or salclass study) first")
                folder.read_evaluation()
                folder.read_metrics()
                for rel in RUN_RECORD_FILES:
                    if (folder.path / rel).is_file():
                        written += _copy(folder.path / rel, dest.run_dir(e, seed) / rel)
                copied += 1
    return {"runs": copied, "unfinished": unfinished, "bytes_written": written, "out": str(out)}


def records_cli(study_dir: str, out: str) -> int:
    r = export_records(study_dir, out)
    print(f"records: {counted(r['runs'], 'finished run')} of {study_dir} in {r['out']} "
          f"({r['bytes_written'] / 1e3:.0f} KB written; unchanged files left as they were)")
    if r["unfinished"]:
        say(f"not finished, not copied: {', '.join(r['unfinished'])}")
    return 0
