"""Benchmark: saliency maps per second of `salclass saliency predict` at S=144, fp32 against bf16, model against model.

    .venv/bin/python benchmarks/predict_speed.py [--model default[,CKPT...]] [--images 512] [--rounds 3]

Runs the predictor the command uses (resize to the model's input, forward,
resize back, scale to maximum 1) over --images store-sized images in batches of
--batch, the models and precisions alternating within each round so a shared
machine's load hits all alike, and prints the best maps/s of each and its ratio
to the first model's first precision. The images are random pixels: the speed
does not depend on their content.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from salclass.precision import device_has_native_bf16
from salclass.saliency.models import Predictor, load_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="a model, or several separated by commas")
    ap.add_argument("--size", type=int, default=144, help="store image size S")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64, help="as `salclass saliency predict --batch-size`")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads or os.cpu_count() or 1)
    load_before = os.getloadavg()[0]
    images = np.random.default_rng(0).integers(0, 256, (a.images, a.size, a.size, 3), dtype=np.uint8)
    precisions = a.precisions.split(",")
    predictors = {}
    for spec in a.model.split(","):
        model, name = load_model(spec)
        for p in precisions:
            predictors[(name, p)] = Predictor(model, name, batch_size=a.batch, precision=p)
    for p in predictors.values():
        p.predict(images[:a.batch])  # warm-up
    best = dict.fromkeys(predictors, 0.0)
    for _ in range(a.rounds):
        for key, predictor in predictors.items():
            t0 = time.perf_counter()
            predictor.predict(images)
            best[key] = max(best[key], a.images / (time.perf_counter() - t0))
    native = device_has_native_bf16(torch.device("cpu"))
    print(f"S={a.size}, {a.images} images in batches of {a.batch}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, native bf16: {'yes' if native else 'no'}; best of {a.rounds} rounds; "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    first = next(iter(predictors))
    print(f"| model | precision | maps/s | / {first[0]} {first[1]} |")
    print("| --- | --- | --- | --- |")
    for (name, p), rate in best.items():
        print(f"| {name} | {p} | {rate:.0f} | {rate / best[first]:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
