"""How long would a study take? Its runs' epochs times the images per second that
the runs of another, finished study measured on the same machine for the same
networks (metrics.jsonl records train and validation images/s every epoch).

    salclass study --config configs/study/thesis-128.yaml --out X --estimate-from out/quick
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from salclass.errors import UserError
from salclass.study.config import StudyConfig
from salclass.study.layout import run_files
from salclass.study.report import load_study_config
from salclass.study.subset import choose


def measured_speeds(root: Path) -> dict[str, tuple[float, float]]:
    """model -> (median train images/s, median validation images/s) over every epoch of every run."""
    cfg = load_study_config(root)
    from salclass.study.layout import StudyLayout

    layout = StudyLayout(root, cfg)
    seen: dict[str, tuple[list[float], list[float]]] = {}
    for e in cfg.experiments:
        for seed in cfg.seeds:
            path = run_files(layout.run(e, seed))["metrics"]
            if not path.is_file():
                continue
            tr, va = seen.setdefault(e.model, ([], []))
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                tr.append(float(row["train"]["images_per_s"]))
                va.append(float(row["val"]["images_per_s"]))
    return {m: (statistics.median(t), statistics.median(v)) for m, (t, v) in seen.items() if t and v}


def image_counts(cfg: StudyConfig) -> tuple[int, int]:
    """Train and validation images the study would use (before any the store rejects)."""
    if cfg.data.store is not None:
        from salclass.data import Store

        return Store.open(cfg.data.store / "train").count, Store.open(cfg.data.store / "val").count
    chosen = choose(cfg.data)
    return tuple(sum(len(f) for f in chosen.get(split, {}).values()) for split in ("train", "val"))


def estimate(cfg: StudyConfig, speeds: dict[str, tuple[float, float]]) -> tuple[list[list[str]], float, int, int]:
    n_train, n_val = image_counts(cfg)
    rows, total = [], 0.0
    for e in cfg.experiments:
        if e.model not in speeds:
            raise UserError(f"no measured speed for model {e.model} (experiment {e.name}); "
                            "run a study that trains it first, e.g. the quick study")
        tr, va = speeds[e.model]
        epochs, _ = cfg.schedule(e)
        evals = epochs + 1 + (1 if e.init_from else 0)  # every epoch, the final evaluation, a fine-tune's start
        seconds = len(cfg.seeds) * (epochs * n_train / tr + evals * n_val / va)
        total += seconds
        rows.append([e.name, e.model, str(epochs), str(len(cfg.seeds)), f"{tr:.1f}", f"{va:.1f}",
                     f"{seconds / 3600:.1f}"])
    return rows, total, n_train, n_val


def estimate_cli(cfg: StudyConfig, speeds_root: str) -> int:
    speeds = measured_speeds(Path(speeds_root))
    rows, total, n_train, n_val = estimate(cfg, speeds)
    header = ["experiment", "model", "epochs", "seeds", "train img/s", "val img/s", "hours"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"{cfg.name}: {n_train} train / {n_val} val images, speeds measured in {speeds_root}")
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(f"total: {total / 3600:.1f} hours ({total / 86400:.1f} days) of training and evaluation, "
          "not counting packing and saliency prediction")
    return 0
