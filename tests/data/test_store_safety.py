"""A store has one writer at a time, and a damaged, full or read-only one is
one line (exit code 2), never a half-written store marked complete."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from salclass.data import Store


def test_a_second_prepare_into_the_same_out_is_refused(tiny_source, tmp_path, run_cli, blocked_command):
    out = tmp_path / "store"
    first = blocked_command("salclass.data.prepare._decode_chunk",
                           "prepare", tiny_source, out, "--size", 32, "--workers", 1)
    code, _, err = run_cli("prepare", tiny_source, out, "--size", 32, "--workers", 1, "--seed", 1, "--overwrite")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"pid {first.pid} is writing it" in err and "prepare" in err
    code, _, err = first.release()
    assert code == 0, err
    for split in ("train", "val"):
        s = Store.open(out / split)
        assert s.seed == 0 and s.count == len(s.ids) == len(s.labels)
        assert json.loads((out / split / "meta.json").read_text())["seed"] == 0
