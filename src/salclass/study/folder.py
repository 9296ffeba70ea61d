"""Where a study keeps its files. Every other module of the study finds them here,
and study.yaml is written and read only here (with its checksum line)."""

from __future__ import annotations

from pathlib import Path

import yaml

from salclass import checksum
from salclass.errors import UserError
from salclass.settings import read_yaml, settings_from_dict, to_dict
from salclass.study.config import REPORT_FIGURES, Experiment, StudyConfig

STUDY_YAML = "study.yaml"
PARAMS_JSON = "params.json"
SALIENCY_JSON = "saliency_eval.json"
STORE_JSON = "store.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
# Under figures/: the grid of images and maps (kept with the records), and every comparison's difference.
EXAMPLES_PNG, COMPARISONS_PNG = (f"{stem}.png" for stem in REPORT_FIGURES)

PARAMS_TYPE = "salclass.study_params"
SALIENCY_TYPE = "salclass.study_saliency_eval"
STORE_SUMMARY_TYPE = "salclass.study_store"
# The study-level files a copy of the study's records keeps (beside its runs' record files).
RECORD_FILES = (STUDY_YAML, PARAMS_JSON, SALIENCY_JSON, STORE_JSON)


def save_study_config(cfg: StudyConfig, path: str | Path) -> None:
    """study.yaml: the resolved settings, with its checksum line first."""
    checksum.write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def read_study_config(path: str | Path) -> tuple[StudyConfig, bool]:
    """(the study's settings, whether study.yaml carried a checksum); one line for
    a study.yaml that was cut short or edited."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path.parent}: not a study folder (no {STUDY_YAML}); run `salclass study` first")
    _, verified = checksum.read_text_checked(path, "restore it from a copy (the study's records keep one)")
    return settings_from_dict(StudyConfig, read_yaml(path)), verified


def load_study_config(root: str | Path) -> StudyConfig:
    """The settings of the study in folder `root` (its study.yaml)."""
    return read_study_config(Path(root) / STUDY_YAML)[0]


class StudyFolder:
    def __init__(self, root: str | Path, cfg: StudyConfig):
        self.root = Path(root)
        self.cfg = cfg

    @property
    def study_yaml(self) -> Path:
        return self.root / STUDY_YAML

    @property
    def source(self) -> Path:
        """The image folder that is packed: the configured one, or a subset of it made of links."""
        if self.cfg.data.source is None:
            raise ValueError("this study uses a prepared store, not a source folder")
        return self.root / "subset" if self.cfg.data.is_subset else self.cfg.data.source

    @property
    def store(self) -> Path:
        return self.cfg.data.store if self.cfg.data.store is not None else self.root / "store"

    @property
    def train_split(self) -> Path:
        return self.store / "train"

    @property
    def val_split(self) -> Path:
        return self.store / "val"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run_dir(self, e: Experiment, seed: int) -> Path:
        return self.runs / e.slug / f"seed{seed}"

    def run_folder(self, e: Experiment, seed: int):
        """The run folder of experiment `e` with `seed`, through its owner, salclass.run_folder."""
        from salclass.run_folder import RunFolder

        return RunFolder(self.run_dir(e, seed))

    def expected_runs(self) -> set[Path]:
        return {self.run_dir(e, s) for e in self.cfg.experiments for s in self.cfg.seeds}

    def unaccounted_runs(self) -> list[Path]:
        """Folders under runs/ that are no run of this config (a study.yaml cut
        short or edited, or seeds dropped): the report names them."""
        if not self.runs.is_dir():
            return []
        expected = self.expected_runs()
        slugs = {p.parent for p in expected}
        out = []
        for exp in sorted(p for p in self.runs.iterdir() if p.is_dir()):
            if exp not in slugs:
                out.append(exp)
                continue
            out += [r for r in sorted(exp.iterdir()) if r.is_dir() and r not in expected]
        return out

    @property
    def store_summary(self) -> Path:
        return self.root / STORE_JSON

    @property
    def params(self) -> Path:
        return self.root / PARAMS_JSON

    @property
    def saliency(self) -> Path:
        return self.root / SALIENCY_JSON

    @property
    def report_md(self) -> Path:
        return self.root / REPORT_MD

    @property
    def report_html(self) -> Path:
        return self.root / REPORT_HTML

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def examples_grid(self) -> Path:
        return self.figures / EXAMPLES_PNG

    @property
    def comparisons_figure(self) -> Path:
        return self.figures / COMPARISONS_PNG
