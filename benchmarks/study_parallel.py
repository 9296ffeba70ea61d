"""Benchmark: the quick study one run at a time and two at a time (Ray), one CPU thread per run in both.

    .venv/bin/python benchmarks/study_parallel.py [--config configs/study/quick.yaml] [--jobs 2]

The store and its saliency maps are made once, in a scratch study folder, and
copied into two fresh study folders, so that both timings cover the same work:
the runs, their evaluation and the report (and, for --jobs 2, starting and
stopping a local Ray). Then, one after the other:

    salclass study --config C --out A --jobs 1 --set train.threads=1
    salclass study --config C --out B --jobs 2 --set train.threads=1

It prints both wall times, their ratio (the target on a 2-core machine is
<= 0.7), the load average before and after each (the machine may be shared:
a figure taken under load says so), and whether the two report.md files are
byte-identical but for their "Compute" line, the time the runs took (they
should be: CPU training is deterministic at a fixed thread count).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from salclass.study import steps
from salclass.study.config import load_study
from salclass.study.folder import StudyFolder

SALCLASS = Path(sys.executable).parent / "salclass"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _prepare(config: str, sets: list[str], root: Path) -> None:
    cfg = load_study(config, sets)
    layout = StudyFolder(root, cfg)
    steps.ensure_store(cfg, layout)
    steps.ensure_maps(cfg, layout)
    steps.record_saliency_metrics(cfg, layout)


def _study(config: str, sets: list[str], out: Path, jobs: int) -> float:
    cmd = [str(SALCLASS), "study", "--config", config, "--out", str(out), "--jobs", str(jobs)]
    for s in sets:
        cmd += ["--set", s]
    print(f"load average before --jobs {jobs}: {_load()}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    print(f"--jobs {jobs}: {wall:.0f} s; load average after: {_load()}", flush=True)
    return wall


def _timeless(study: Path) -> bytes:
    """The report without its Compute line, which sums how long the runs took."""
    return re.sub(rb"(?m)^Compute: .*\n", b"", (study / "report.md").read_bytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/study/quick.yaml")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep", default=None, help="keep the study folders here instead of a temporary folder")
    a = ap.parse_args()
    sets = ["train.threads=1"]
    scratch = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="study_parallel_"))
    try:
        data = scratch / "data"
        _prepare(a.config, sets, data)
        outs = {}
        for jobs in (1, a.jobs):
            outs[jobs] = scratch / f"jobs{jobs}"
            outs[jobs].mkdir(parents=True)
            shutil.copytree(data / "store", outs[jobs] / "store", symlinks=True)
            if (data / "subset").exists():
                shutil.copytree(data / "subset", outs[jobs] / "subset", symlinks=True)
            if (data / "saliency_eval.json").is_file():
                shutil.copy2(data / "saliency_eval.json", outs[jobs] / "saliency_eval.json")
        walls = {jobs: _study(a.config, sets, out, jobs) for jobs, out in outs.items()}
        same = _timeless(outs[1]) == _timeless(outs[a.jobs])
        print(f"\ncpus {os.cpu_count()}, one thread per run")
        print(f"--jobs 1: {walls[1]:.0f} s   --jobs {a.jobs}: {walls[a.jobs]:.0f} s   "
              f"ratio {walls[a.jobs] / walls[1]:.2f} (target <= 0.7)")
        print(f"report.md byte-identical but for its Compute line: {same}")
    finally:
        if not a.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
