"""The training-speed table of benchmarks/train_speed.py (fp32 and bf16) on one CUDA GPU, in a few minutes.

Run from the repository root on the GPU machine, no install needed:

    python3 benchmarks/gpu_train_speed.py [--compile] [--json results.json]

It uses the checkout's src/ directly and needs only torch (with CUDA), numpy,
pillow and pyyaml, which GPU images with PyTorch usually hold. A machine without
them and without a package index can get them as wheels carried along: on a
machine with pip, `pip download --only-binary=:all: --no-deps -d wheels
numpy pillow pyyaml tqdm scipy` (with --python-version/--platform of the GPU
machine), then there `pip install --no-index --target /tmp/site wheels/*.whl`
and `PYTHONPATH=/tmp/site`.

The store is made of synthetic JPEGs (8,200 train images, 64 batches of 128 an
epoch), since the shared data may not travel with the code; pixel values do not
change the speed. Extra arguments go to train_speed.py (e.g. --rounds 5).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src"), str(HERE)]

missing = [m for m in ("torch", "numpy", "PIL", "yaml", "tqdm") if importlib.util.find_spec(m) is None]
if missing:
    print(f"gpu_train_speed: missing Python packages: {', '.join(missing)} (see this file's docstring for wheels)",
          file=sys.stderr)
    sys.exit(2)

import train_speed  # noqa: E402  (needs the sys.path set above)

if __name__ == "__main__":
    defaults = ["--device", "cuda", "--src", "synthetic", "--per-class", "820", "--val-per-class", "100",
                "--steps", "50", "--rounds", "3"]
    sys.exit(train_speed.main(defaults + sys.argv[1:]))
