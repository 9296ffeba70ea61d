"""Measure which memory layout (NCHW or channels-last) trains each network faster on this CPU, per precision.

    .venv/bin/python benchmarks/memory_format.py --variants RGB,FanIn3 --precisions fp32,bf16

Times the bare training step (forward, cross-entropy, backward, SGD; batch 128,
crop 128, one random batch resident in memory) of every variant x precision x
layout, the layouts alternating within each round so a shared machine's load
hits both alike, and prints the best images/s of --rounds rounds with the
faster layout's lead. salclass.training.memory_format.CPU_CHANNELS_LAST records the
choice; docs/benchmarks.md the numbers behind it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

from salclass.models import create
from salclass.precision import autocast, device_has_native_bf16
from salclass.training.config import THESIS_WEIGHT_DECAY
from salclass.training.optim import sgd

LAYOUTS = {"NCHW": torch.contiguous_format, "channels-last": torch.channels_last}


def _setup(name: str, layout, batch: int, classes: int = 10):
    torch.manual_seed(0)
    net = create(name, classes, input_size=128).to(memory_format=layout)
    opt = sgd(net, lr=0.01, momentum=0.9, weight_decay=THESIS_WEIGHT_DECAY, decay_on="kernels")
    image = torch.rand(batch, 3, 128, 128).contiguous(memory_format=layout)
    sal = torch.rand(batch, 1, 128, 128).contiguous(memory_format=layout) if net.uses_saliency else None
    label = torch.randint(0, classes, (batch,))
    return net, opt, image, sal, label


def _steps(setup, precision: str, n: int) -> float:
    net, opt, image, sal, label = setup
    t0 = time.perf_counter()
    for _ in range(n):
        with autocast(image.device, precision):
            logits = net(image, sal)
        loss = F.cross_entropy(logits.float(), label)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return n * image.shape[0] / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="RGB,RGBS,FanIn1,FanIn3")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads or os.cpu_count() or 1)
    native = device_has_native_bf16(torch.device("cpu"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {'yes' if native else 'no'}; "
          f"batch {a.batch}, crop 128, best of {a.rounds} rounds of {a.steps} steps, layouts alternating")
    print("| variant | precision | NCHW img/s | channels-last img/s | faster |")
    print("| --- | --- | --- | --- | --- |")
    for name in a.variants.split(","):
        for precision in a.precisions.split(","):
            setups = {k: _setup(name, fmt, a.batch) for k, fmt in LAYOUTS.items()}
            for s in setups.values():
                _steps(s, precision, 1)  # warm-up: oneDNN builds its kernels on first use
            best = dict.fromkeys(LAYOUTS, 0.0)
            for _ in range(a.rounds):
                for k, s in setups.items():
                    best[k] = max(best[k], _steps(s, precision, a.steps))
            nchw, cl = best["NCHW"], best["channels-last"]
            lead = f"channels-last {cl / nchw:.2f}x" if cl > nchw else f"NCHW {nchw / cl:.2f}x"
            print(f"| {name} | {precision} | {nchw:.0f} | {cl:.0f} | {lead} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
