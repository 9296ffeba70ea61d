"""The study's report: DIR/report.md, figures under DIR/figures/, and a
self-contained DIR/report.html, built only from files inside the study folder.

The report is assembled as a list of blocks (salclass.study.render), section by
section (salclass.study.sections), and ends with a conclusion generated from the
comparisons' numbers by fixed rules (salclass.study.conclusion and
salclass.study.claims); no finding is written in advance.
"""

from __future__ import annotations

from pathlib import Path

from salclass.io import atomic_write_text
from salclass.say import warn
from salclass.study.conclusion import conclusions
from salclass.study.config import StudyConfig
from salclass.study.figures import draw_figures
from salclass.study.folder import STUDY_YAML, StudyFolder, load_study_config
from salclass.study.render import Block, to_html, to_markdown
from salclass.study.results import collect
from salclass.study.sections import (class_table, comparisons_section, extra_table, figures_section, method,
                                     params_table, results_table, saliency_section, setup, store_summary)


def build_report(root: str | Path, cfg: StudyConfig | None = None, out: str | Path | None = None) -> Path:
    """Write report.md, report.html and figures/*.png into `out` (default: the
    study folder `root`) from the files of `root` alone; returns the Markdown
    path. `root` may be a copy of the study's records (no checkpoints, no store)."""
    root = Path(root)
    cfg = cfg if cfg is not None else load_study_config(root)
    res = collect(root, cfg)
    dest = StudyFolder(out if out is not None else root, cfg)
    # Everything read or drawn from outside the run files comes first; the sections only lay it out.
    store_txt = store_summary(res.study)
    drawn = draw_figures(res, dest)
    blocks = [Block("h1", f"Study report: {cfg.name}"),
              Block("p", "Built by `salclass report` from the files in this study folder only.")]
    blocks += setup(res, store_txt)
    blocks += results_table(res)
    blocks += extra_table(res)
    blocks += comparisons_section(drawn)
    blocks += class_table(res)
    blocks += params_table(res.study)
    blocks += figures_section(res, drawn)
    blocks += saliency_section(res, drawn)
    blocks += conclusions(res)
    blocks += method(cfg, next((p.result.prior for p in res.pairs if p.result and p.result.prior), None))
    atomic_write_text(dest.report_md, to_markdown(blocks, dest.root))
    atomic_write_text(dest.report_html, to_html(blocks, f"Study report: {cfg.name}"))
    for p in res.unaccounted:
        warn(f"{p}: not a run of {root / STUDY_YAML}, left out of the report")
    return dest.report_md


def report_cli(root: str, out: str | None = None) -> int:
    path = build_report(Path(root), out=out)
    print(f"report: {path} (and {path.with_suffix('.html').name})")
    return 0
