"""The headline study's records committed under results/headline stay readable: every file passes its checksum,
the report built from them alone counts exactly the runs that are there, and the front page and docs/results.md
state what those records hold: no verdict while runs are missing, the report's own tables once every run is in."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECORDS = ROOT / "results" / "headline"

pytestmark = pytest.mark.skipif(not (RECORDS / "study.yaml").is_file(), reason="no committed headline records")

VERDICT_MARKS = ("| better |", "| worse |", "**holds**", "**contradicted", "**consistent")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("headline") / "report"
    done = subprocess.run([sys.executable, "-m", "salclass.cli", "report", str(RECORDS), "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return (out / "report.md").read_text(), done.stderr


def _section(text: str, heading: str) -> str:
    """The lines under `heading` up to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    lines = text.splitlines()
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith("#") and len(lines[i].split(" ")[0]) <= len(level)), len(lines))
    return "\n".join(lines[start + 1:end])


def _counts(report_md: str) -> tuple[int, int]:
    found = re.search(r"Runs finished and evaluated: (\d+) of (\d+)", report_md)
    assert found, "the report does not say how many runs finished"
    return int(found.group(1)), int(found.group(2))


def test_the_committed_headline_records_build_a_report(report):
    text, err = report
    assert "unverified" not in err and "no checksum" not in err, err
    runs = sorted(p.parent for p in RECORDS.glob("runs/*/seed*/done.json"))
    assert runs, "results/headline holds no finished run"
    assert _counts(text)[0] == len(runs)


def test_the_docs_state_what_the_committed_records_hold(report):
    text, _ = report
    finished, total = _counts(text)
    results = _section((ROOT / "docs" / "results.md").read_text(), "## The headline study")
    readme = (ROOT / "README.md").read_text()
    if finished < total:
        assert f"{finished} of its {total} runs finished" in " ".join(results.split()), \
            f"docs/results.md must say that {finished} of the headline study's {total} runs finished"
        assert "not yet answered" in results and "not yet answered" in readme
        stated = [mark for mark in VERDICT_MARKS if mark in results]
        assert not stated, f"docs/results.md states verdicts ({stated}) before the headline study has finished"
        return
    assert "not yet answered" not in readme and "not yet answered" not in results
    assert "docs/results.md" in readme.split("\n## ")[0], "the README's first screen must link to docs/results.md"
    wanted = [line for heading in ("## Results (the analogue of table 4.1)", "## Controls and further comparisons",
                                   "### The thesis's claims", "### Is the gain due to the map?")
              for line in _section(text, heading).splitlines() if line.startswith(("| ", "- "))]
    missing = [line for line in wanted if line not in results]
    assert not missing, "docs/results.md lacks these lines of the headline report:\n" + "\n".join(missing)
    unbacked = unbacked_numbers(readme.split("\n## ")[0], results, text)
    assert not unbacked, f"the README or docs/results.md state numbers the headline report does not give: {unbacked}"


def unbacked_numbers(front_page: str, results: str, report_md: str) -> list[str]:
    """Numbers of the answer that the report does not give: any figure with two decimals on the front page, and
    any signed difference in docs/results.md's headline section (its other tables hold their own measurements)."""
    stated = re.findall(r"(?<![\w.])\d+\.\d\d\b", front_page) + re.findall(r"(?<![\w.])[+-]\d+\.\d\d\b", results)
    return sorted({n for n in stated if n not in report_md})


def test_numbers_the_report_does_not_give_are_found(report):
    text, _ = report
    given = re.findall(r"[+-]\d+\.\d\d\b", text)
    assert given, "the report gives no difference"
    absent = next(f"+{k}.{k:02d}" for k in range(10, 100) if f"+{k}.{k:02d}" not in text)
    assert unbacked_numbers(f"RGB reaches {given[0][1:]}% top-1", f"a gain of {given[-1]} points", text) == []
    assert unbacked_numbers(f"RGB reaches {absent[1:]}% top-1", f"a gain of {absent}; 3.4 hours", text) == \
        [absent, absent[1:]]
