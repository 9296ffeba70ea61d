"""The distributed path on CPU: torchrun, 2 processes, gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from salclass.training.checkpoint import load_classifier
from salclass.training import read_metrics

HERE = Path(__file__).resolve().parent


def test_two_gloo_ranks_see_disjoint_data_and_end_with_identical_weights(tmp_path: Path, tiny_store: Path):
    out, records = tmp_path / "run", tmp_path / "records"
    records.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(HERE / "ddp_worker.py"), str(tiny_store), str(out), str(records)],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((records / f"rank{r}.json").read_text()) for r in (0, 1))

    for epoch in ("1", "2"):
        a, b = r0["seen"]["train"][epoch], r1["seen"]["train"][epoch]
        assert len(a) == len(b) == 36
        assert not set(a) & set(b)
        assert set(a) | set(b) == set(range(72))
        va, vb = r0["seen"]["val"][epoch], r1["seen"]["val"][epoch]
        assert not set(va) & set(vb) and set(va) | set(vb) == set(range(36))
    # The two epochs shuffle differently.
    assert r0["seen"]["train"]["1"] != r0["seen"]["train"]["2"]

    assert len(r0["weights"]) == 2 and r0["weights"] == r1["weights"]

    metrics = read_metrics(out)
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all(m["train"]["images"] == 72 and m["val"]["images"] == 36 for m in metrics)
    assert [m["lr"] for m in metrics] == [0.01, 0.001]
    ckpt = load_classifier(out / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and len(ckpt["rng"]) == 2
    assert (out / "done.json").is_file()
