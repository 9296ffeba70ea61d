"""The headline study's records committed under results/headline stay readable: every file passes its checksum,
and the report built from them alone counts exactly the runs that are there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

RECORDS = Path(__file__).resolve().parents[2] / "results" / "headline"


@pytest.mark.skipif(not (RECORDS / "study.yaml").is_file(), reason="no committed headline records")
def test_the_committed_headline_records_build_a_report(tmp_path, run_cli):
    code, out, err = run_cli("report", RECORDS, "--out", tmp_path / "report")
    assert code == 0, err
    assert "unverified" not in err and "no checksum" not in err, err
    text = (tmp_path / "report" / "report.md").read_text()
    runs = sorted(p.parent for p in RECORDS.glob("runs/*/seed*/done.json"))
    assert runs, "results/headline holds no finished run"
    finished = re.search(r"Runs finished and evaluated: (\d+) of (\d+)", text)
    assert finished and int(finished.group(1)) == len(runs), finished
