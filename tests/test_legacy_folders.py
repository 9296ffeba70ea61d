"""Folders written by an earlier salclass (tests/fixtures/legacy, see its README.md) are read and resumed by
this one: a store, a saliency run interrupted after epoch 1 of 2, and a study's records with a classifier run
in them. Only public entry points are used (the command line and salclass.data.Store), so the code behind
them may move; the on-disk formats may not."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np

from salclass.data import Store

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy"
RUNS = {"RGB*": "RGBstar", "RGBS": "RGBS", "FanIn1": "FanIn1"}
# The first line of a YAML record (the checksum contract of docs/ARCHITECTURE.md).
_SEAL = "# content_sha256: "


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(LEGACY / name, tmp_path / name, ignore=shutil.ignore_patterns(".salclass.lock")))


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _one_line_error(code: int, err: str) -> str:
    assert code == 2 and len(err.strip().splitlines()) == 1, (code, err)
    return err


def _moved_study(study: Path, store: Path) -> None:
    """Point the study's study.yaml at the store's new place, sealed again: what a user does who moves the
    records and the store to another machine (the study refuses a folder whose data settings differ)."""
    text = (study / "study.yaml").read_text()
    assert text.startswith(_SEAL)
    body = text.split("\n", 1)[1]
    old = re.search(r"^  store: (.+)$", body, re.M).group(1)
    body = body.replace(f"  store: {old}\n", f"  store: {store}\n")
    (study / "study.yaml").write_text(_SEAL + hashlib.sha256(body.encode()).hexdigest() + "\n" + body)


def test_a_legacy_store_verifies_and_reads_its_maps(tmp_path, run_cli):
    store = _copy("store", tmp_path)
    for split, count in (("train", 10), ("val", 6)):
        code, out, err = run_cli("inspect", store / split, "--verify", "--json")
        assert code == 0, err
        info = json.loads(out)
        assert info["count"] == count and info["size"] == 144 and info["saliency_model"] == "centre_bias"
        assert [c["name"] for c in info["classes"]] == ["disc", "stripes"]
        assert {"meta.json", "labels.npy", "ids.txt", "images.npy", "saliency.npy"} <= set(info["verified"])

        s = Store.open(store / split)
        assert s.verify(full=True) and s.has_saliency and s.saliency_model == "centre_bias"
        assert s.images.shape == (count, 144, 144, 3) and sorted(set(s.labels.tolist())) == [0, 1]
        maps = np.asarray(s.saliency)
        # The centre bias is one map for every image, brightest in the middle.
        assert maps.shape == (count, 144, 144) and maps.dtype == np.uint8
        assert (maps == maps[:1]).all() and maps[0, 72, 72] == 255 and maps[0, 0, 0] < 64

    # A byte changed in the images is found by the verification, in one line.
    images = store / "val" / "images.npy"
    data = bytearray(images.read_bytes())
    data[-1] ^= 0xFF
    images.write_bytes(bytes(data))
    code, _, err = run_cli("inspect", store / "val", "--verify")
    assert "images.npy" in _one_line_error(code, err)


def test_a_legacy_saliency_run_resumes_to_its_end(tmp_path, run_cli, monkeypatch):
    _copy("fixations", tmp_path)
    run = _copy("saliency-run", tmp_path)
    # Its config names the data as the relative path `fixations`, as the run was started.
    monkeypatch.chdir(tmp_path)
    before = _lines(run / "metrics.jsonl")
    assert [m["epoch"] for m in before] == [1] and not (run / "done.json").exists()
    shutil.copyfile(run / "best.pt", tmp_path / "old-best.pt")

    code, out, err = run_cli("saliency", "train", "--data", "fixations", "--model", "fcn", "--out", "saliency-run",
                             "--resume")
    assert code == 0, err
    after = _lines(run / "metrics.jsonl")
    # Only epoch 2 was trained: epoch 1's line is the old run's, byte for byte.
    assert [m["epoch"] for m in after] == [1, 2] and after[0] == before[0]
    done = json.loads((run / "done.json").read_text())
    assert done["epochs"] == 2 and done["best"]["epoch"] in (1, 2)
    assert f"best epoch {done['best']['epoch']}" in out

    # The old run's best model and the finished run's both load and score.
    code, out, err = run_cli("saliency", "eval", "--data", "fixations", "--split", "val", "--json",
                             "--precision", "fp32", "--model", "old-best.pt", "--model", "saliency-run/best.pt")
    assert code == 0, err
    ev = json.loads(out)
    assert ev["images"] == 2
    for name in ("old-best.pt", "saliency-run/best.pt"):
        assert np.isfinite(ev["scores"][name]["nss"]), ev["scores"][name]


def test_a_legacy_classifier_record_is_read(tmp_path, run_cli):
    study = _copy("study", tmp_path)
    record = study / "runs" / "RGBstar" / "seed0"
    assert not (record / "checkpoint.pt").exists()
    code, _, err = run_cli("plot", record, "--out", tmp_path / "curves.png")
    assert code == 0, err
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"

    code, _, err = run_cli("report", study, "--out", tmp_path / "report")
    assert code == 0, err
    assert "unverified" not in err and "no checksum" not in err, err
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Runs finished and evaluated: 3 of 3" in md
    _assert_rows(md, study)


def _assert_rows(md: str, study: Path) -> None:
    """The results table has one row per run, with the top-1 of the run's own eval.json."""
    rows = {}
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == 14 and cells[0] in RUNS:
            rows[cells[0]] = cells
    assert set(rows) == set(RUNS), rows
    for name, slug in RUNS.items():
        ev = json.loads((study / "runs" / slug / "seed0" / "eval" / "eval.json").read_text())
        assert rows[name][4] == f"{100 * ev['top1']:.2f}", (name, rows[name])


def test_a_legacy_study_trains_only_its_missing_run(tmp_path, run_cli):
    store = _copy("store", tmp_path)
    study = _copy("study", tmp_path)
    _moved_study(study, store)
    shutil.rmtree(study / "runs" / "FanIn1")
    kept = {slug: {p.relative_to(study): p.read_bytes() for p in (study / "runs" / slug).rglob("*") if p.is_file()}
            for slug in ("RGBstar", "RGBS")}
    config = Path(shutil.copyfile(study / "study.yaml", tmp_path / "legacy.yaml"))

    code, out, err = run_cli("study", "--config", config, "--out", study)
    assert code == 0, err
    assert "2 of 3 runs were already finished and reused" in err, err
    for slug, files in kept.items():
        now = {p.relative_to(study): p.read_bytes() for p in (study / "runs" / slug).rglob("*") if p.is_file()}
        assert now == files, slug  # not trained again, not even rewritten
    trained = study / "runs" / "FanIn1" / "seed0"
    assert (trained / "checkpoint.pt").is_file() and (trained / "done.json").is_file()
    assert [m["epoch"] for m in _lines(trained / "metrics.jsonl")] == [1]

    md = (study / "report.md").read_text()
    assert "Runs finished and evaluated: 3 of 3" in md
    _assert_rows(md, study)
