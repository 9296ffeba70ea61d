"""Benchmark: on a machine of C cores, is a study faster running one run at a time on C torch threads, or C runs
at once (`salclass study --jobs C`) on one thread each?

    nice python benchmarks/threads_or_jobs.py --variants RGB,FanIn3 --steps 6 --rounds 3

Each round times, for each variant, the same training steps (forward, cross-entropy, backward, SGD on one batch of
128 random 128 px images already in memory) done two ways, alternating so a shared machine's load hits both:
- one process on C threads doing 2*S steps (one run at a time);
- C processes on one thread each, each doing 2*S/C steps at the same time (C runs at once);
and prints the images per second of each and their ratio (jobs / threads; above 1: `--jobs` is faster). The best
round of each counts. Processes are started and their models built before the clock starts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(variant: str, threads: int, steps: int, batch: int) -> None:
    import torch

    from salclass.models import create

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = create(variant, num_classes=10, input_size=128)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, s = torch.rand(batch, 3, 128, 128), torch.rand(batch, 1, 128, 128)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x, s), y).backward()
        opt.step()

    step()  # warm-up, not timed
    print("ready", flush=True)
    sys.stdin.readline()  # the parent's start signal
    for _ in range(steps):
        step()
    print("done", flush=True)


def timed(variant: str, procs: int, threads: int, steps: int, batch: int) -> float:
    """Images per second of `procs` processes of `threads` threads, each doing `steps` steps, all at once."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--worker", variant, "--threads", str(threads), "--steps", str(steps),
           "--batch", str(batch)]
    ps = [subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
          for _ in range(procs)]
    for p in ps:
        if p.stdout.readline().strip() != "ready":
            sys.exit(f"threads_or_jobs: a worker of {variant} failed to start")
    t0 = time.perf_counter()
    for p in ps:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in ps:
        p.stdout.readline()
        p.wait()
    return procs * steps * batch / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="RGB,FanIn3")
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=6, help="steps per process and round in the jobs setting (S)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.threads, a.steps, a.batch)
        return 0
    c = a.cores
    print(f"{c} cores, load average {os.getloadavg()[0]:.2f} at the start; batch {a.batch}, crop 128, fp32")
    print(f"{'variant':<8} {'one run, ' + str(c) + ' threads':>22} {str(c) + ' runs, 1 thread each':>24} {'ratio':>6}")
    for v in a.variants.split(","):
        one, many = [], []
        for _ in range(a.rounds):
            one.append(timed(v, 1, c, a.steps * c, a.batch))
            many.append(timed(v, c, 1, a.steps, a.batch))
        print(f"{v:<8} {max(one):>16.1f} img/s {max(many):>18.1f} img/s {max(many) / max(one):>6.2f}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
