"""Where a study keeps its files. Every other module of the study finds them here."""

from __future__ import annotations

from pathlib import Path

from salclass.study.config import Experiment, StudyConfig

STUDY_YAML = "study.yaml"
PARAMS_JSON = "params.json"
SALIENCY_JSON = "saliency_eval.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"

PARAMS_TYPE = "salclass.study_params"
SALIENCY_TYPE = "salclass.study_saliency_eval"


class StudyLayout:
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

    def run(self, e: Experiment, seed: int) -> Path:
        return self.runs / e.slug / f"seed{seed}"

    def run_folder(self, e: Experiment, seed: int):
        """The run folder of experiment `e` with `seed`, through its owner in salclass.training."""
        from salclass.training.run_folder import RunFolder

        return RunFolder(self.run(e, seed))

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
