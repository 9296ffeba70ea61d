"""Run by test_ddp.py under torchrun: one rank of a 2-process gloo run that
records which store rows it was given and a hash of its weights after each
epoch. Usage: ddp_worker.py STORE OUT RECORD_DIR"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import salclass.data.loader as loader_module
import salclass.training.loop as main_module
from salclass.settings import load_settings
from salclass.training import TrainConfig, train

store, out, record_dir = map(Path, sys.argv[1:4])
rank = int(os.environ["RANK"])
seen: dict[str, dict[int, list[int]]] = {"train": {}, "val": {}}  # val: keyed by pass, 1, 2, ...
weights: list[str] = []


class RecordingLoader(loader_module.StoreLoader):
    def __iter__(self):
        kept = seen["train" if self.train else "val"]
        rows = kept.setdefault(self.epoch if self.train else len(kept) + 1, [])
        for batch in super().__iter__():
            rows.extend(batch.index.tolist())
            yield batch


original_epoch = main_module.train_one_epoch


def recording_epoch(model, *args, **kwargs):
    result = original_epoch(model, *args, **kwargs)
    h = hashlib.sha256()
    for name, p in sorted(model.module.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().numpy().tobytes())
    weights.append(h.hexdigest())
    return result


loader_module.StoreLoader = RecordingLoader
main_module.train_one_epoch = recording_epoch

cfg = load_settings(TrainConfig, None, [f"store={store}", f"out={out}", "model=RGBS", "epochs=2", "milestones=[1]",
                                        "batch_size=24", "threads=1", "progress=false", "tensorboard=false"])
train(cfg)
(record_dir / f"rank{rank}.json").write_text(json.dumps({"rank": rank, "seen": seen, "weights": weights}))
