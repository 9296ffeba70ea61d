"""Benchmark: does the input pipeline cost anything, how close to the machine's limit does training run, and
what does bf16 gain over fp32?

    .venv/bin/python benchmarks/train_speed.py                 # CPU, real Imagenette images
    python3 benchmarks/gpu_train_speed.py                      # one CUDA GPU (see that file)

For RGB, RGBS, FanIn1 and FanIn3 at crop 128 (a 144 store) and batches of 128,
in fp32 and in bf16 autocast (--precisions; each precision with the memory
layout salclass.training.memory_format picks for the network), it prints:
- bare step: images/s of the training step (forward, cross-entropy, backward,
  SGD) on one batch already in memory on the device;
- full training: images/s of `salclass.training.engine.train_one_epoch`, the
  code every run uses, over a store: StoreLoader reads the memory map, crops
  and flips image and map, and the same step follows;
- their ratio (target >= 0.9: the input pipeline is off the critical path),
  and the share of the full-training epoch spent waiting for the loader,
  measured inside that same epoch (robust where the machine is shared, since
  both parts see the same load);
- the FLOPs of one training step (counted by torch.utils.flop_counter), the
  FLOP/s the bare step achieves, and the same as a share of this machine's
  measured fp32 and bf16 matrix-multiply FLOP/s (the practical limits; bf16's
  is the limit of both, where the machine multiplies bf16 natively);
- bf16 full training / fp32 full training: the two precisions' rounds
  alternate (fp32, bf16, fp32, ...), so a shared machine's load hits both alike;
- validation images/s (forward only) and, from these, an estimate of the time
  of the thesis's 128px protocol on full Imagenette (90 epochs of 9,469 train
  and 3,925 validation images).

Each number is the best of --rounds rounds (the machine may be shared).
`--json FILE` writes {"variants": {name: {"fp32_img_s", "bf16_img_s", ...}}, ...}
with full-training images/s (loader included) per precision.
`--ab-workers 0,1` instead alternates full-training epochs between loaders
with 0 and 1 loader threads and prints each round.
The store is prepared from --src (a few hundred images per class) unless
--store names one; without --src it is made of synthetic JPEGs (speed does not
depend on pixel values). Maps are a cheap stand-in (the grey image).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from salclass.data import SaliencyMapWriter, Store, StoreLoader
from salclass.data.prepare import prepare
from salclass.models import create
from salclass.precision import device_has_native_bf16
from salclass.training.distributed import World
from salclass.training.engine import Runtime, evaluate, train_one_epoch
from salclass.training.config import THESIS_WEIGHT_DECAY
from salclass.training.memory_format import cpu_channels_last
from salclass.training.setup import default_workers
from salclass.training.optim import sgd

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("RGB", "RGBS", "FanIn1", "FanIn3")
THESIS_TRAIN, THESIS_VAL, THESIS_EPOCHS = 9469, 3925, 90


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _synthetic_source(dest: Path, train_per_class: int, val_per_class: int, classes: int = 10) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = dest / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(n):
                # Smooth random colour fields: JPEG sizes like photos, not like white noise.
                small = rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)
                Image.fromarray(small).resize((176, 160), Image.BILINEAR).save(folder / f"{i}.JPEG", quality=90)
    return dest


def _add_gray_maps(split: Path) -> None:
    w = SaliencyMapWriter(split, "benchmark-gray", overwrite=True)
    for start in range(0, w.count, 512):
        block = np.asarray(w.store.images[start:start + 512], dtype=np.uint16)
        w.write(start, (block.sum(axis=-1) // 3).astype(np.uint8))
    w.finish()


def make_store(root: Path, src: Path | None, per_class: int, val_per_class: int, workers: int) -> Path:
    if src is None:
        src = _synthetic_source(root / "synthetic_src", per_class, val_per_class)
        prepare(src, root / "store", 144, workers=workers, progress=False)
    else:
        prepare(src, root / "store", 144, workers=workers, limit_per_class=per_class, progress=False)
    for split in ("train", "val"):
        _add_gray_maps(root / "store" / split)
    return root / "store"


def matmul_flops(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """Best FLOP/s of an n x n x n matrix product over `repeats` timed runs."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def _step(model, opt, image, sal, label, rt: Runtime) -> None:
    with rt.autocast():
        logits = model(image, sal)
    loss = F.cross_entropy(logits.float(), label)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def step_flops(model, opt, image, sal, label, rt: Runtime) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        _step(model, opt, image, sal, label, rt)
    return float(counter.get_total_flops())


class TimedLoader:
    """Passes a loader's batches through and adds up the time spent waiting for them."""

    def __init__(self, loader):
        self.loader = loader
        self.waited = 0.0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        it = iter(self.loader)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            finally:
                self.waited += time.perf_counter() - t0
            yield batch


def _runtime(device: torch.device, variant: str, precision: str) -> Runtime:
    on_cuda = device.type == "cuda"
    channels_last = on_cuda or cpu_channels_last(variant, precision)
    return Runtime(device, World(), precision, channels_last=channels_last, progress=False,
                   check_every=25 if on_cuda else 1)


class _Setup:
    """One precision's model, optimizer, loaders and resident batch for a variant."""

    def __init__(self, name: str, store_root: Path, rt: Runtime, batch: int, workers: int, compile_model: bool):
        train_store, val_store = Store.open(store_root / "train"), Store.open(store_root / "val")
        torch.manual_seed(0)
        net = create(name, train_store.num_classes, input_size=128)
        fmt = torch.channels_last if rt.channels_last else torch.contiguous_format
        self.net = net.to(rt.device, memory_format=fmt)
        self.model = torch.compile(net) if compile_model else net
        self.opt = sgd(net, lr=0.01, momentum=0.9, weight_decay=THESIS_WEIGHT_DECAY, decay_on="kernels")
        self.rt = rt
        uses = net.uses_saliency
        self.train_loader = StoreLoader(train_store, batch, True, crop=128, with_saliency=uses,
                                        device=str(rt.device), workers=workers)
        self.val_loader = StoreLoader(val_store, batch, False, crop=128, with_saliency=uses, device=str(rt.device),
                                      workers=workers)
        # The bare step's batch: real pixels, already cropped, resident on the device.
        self.train_loader.set_epoch(0)
        self.image, self.sal, self.label = rt.inputs(next(iter(self.train_loader)))
        self.bare, self.full, self.val, self.waited = 0.0, 0.0, 0.0, []

    def step(self) -> None:
        _step(self.model, self.opt, self.image, self.sal, self.label, self.rt)

    def round(self, r: int, rounds: int, steps: int) -> None:
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        _sync(self.rt.device)
        self.bare = max(self.bare, steps * self.image.shape[0] / (time.perf_counter() - t0))
        self.train_loader.set_epoch(r + 1)
        timed = TimedLoader(self.train_loader)
        stats = train_one_epoch(self.model, timed, self.opt, self.rt, epoch=r + 1, epochs=rounds)
        self.full = max(self.full, stats["images_per_s"])
        self.waited.append(timed.waited / stats["seconds"])
        v, _ = evaluate(self.model, self.val_loader, self.rt)
        self.val = max(self.val, v["images_per_s"])


def bench_variant(name: str, store_root: Path, device: torch.device, precisions: list[str], batch: int, steps: int,
                  rounds: int, workers: int, compile_model: bool) -> dict:
    setups = {p: _Setup(name, store_root, _runtime(device, name, p), batch, workers, compile_model)
              for p in precisions}
    first = setups[precisions[0]]
    # FLOPs do not depend on the precision; counted once, in fp32 arithmetic.
    flops = step_flops(first.net, first.opt, first.image, first.sal, first.label,
                       _runtime(device, name, "fp32")) / first.image.shape[0]
    for s in setups.values():
        s.net.train()
        for _ in range(3):
            s.step()
    _sync(device)
    for r in range(rounds):
        for p in precisions:  # interleaved: fp32, bf16, fp32, bf16, ...
            setups[p].round(r, rounds, steps)
    out = {"variant": name, "params": sum(p.numel() for p in first.net.parameters()),
           "step_gflop_per_image": flops / 1e9, "train_images_per_epoch": len(first.train_loader) * batch}
    for p, s in setups.items():
        out[p] = {
            "channels_last": s.rt.channels_last,
            "bare_images_per_s": s.bare, "full_images_per_s": s.full, "ratio": s.full / s.bare,
            "loader_wait_share": float(np.median(s.waited)),
            "achieved_flops": flops * s.bare, "val_images_per_s": s.val,
            "thesis128_hours": THESIS_EPOCHS * (THESIS_TRAIN / s.full + THESIS_VAL / s.val) / 3600,
        }
    return out


def results_epoch(store_root: Path, batch: int) -> int:
    return Store.open(store_root / "train").count // batch * batch


def ab_workers(name: str, store_root: Path, rt: Runtime, batch: int, rounds: int, choices: list[int]) -> list[dict]:
    """Full-training epochs of one model alternating between loaders with
    different worker counts, so a shared machine's load hits all alike."""
    store = Store.open(store_root / "train")
    torch.manual_seed(0)
    net = create(name, store.num_classes, input_size=128).to(rt.device)
    opt = sgd(net, lr=0.01, momentum=0.9, weight_decay=THESIS_WEIGHT_DECAY, decay_on="kernels")
    loaders = {w: StoreLoader(store, batch, True, crop=128, with_saliency=net.uses_saliency, device=str(rt.device),
                              workers=w) for w in choices}
    seen: dict[int, list[tuple[float, float]]] = {w: [] for w in choices}
    for r in range(rounds + 1):
        for w, loader in loaders.items():
            loader.set_epoch(r)
            timed = TimedLoader(loader)
            stats = train_one_epoch(net, timed, opt, rt, epoch=r + 1, epochs=rounds + 1)
            if r:  # the first round warms caches and the allocator
                seen[w].append((stats["images_per_s"], timed.waited / stats["seconds"]))
    return [{"variant": name, "workers": w, "images_per_s": [a for a, _ in v], "loader_wait_share": [b for _, b in v]}
            for w, v in seen.items()]


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    model = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def _hours(h: float) -> str:
    return f"{h:.1f} h" if h >= 1 else f"{h * 60:.0f} min"


def table(results: list[dict], precisions: list[str], limits: dict[str, float]) -> str:
    """One row per variant and precision; the last columns compare with fp32 and the limits."""
    head = ("| variant | precision | layout | params | GFLOP/img (train step) | bare step img/s | full training img/s | "
            "full / fp32 full | full/bare | time waiting for the loader | bare step GFLOP/s | "
            + " | ".join(f"% of {p} matmul" for p in limits) + " | val img/s | est. thesis-128 protocol |")
    rows = [head, "|" + " --- |" * (13 + len(limits))]
    for r in results:
        base = r.get("fp32", {}).get("full_images_per_s")
        for p in precisions:
            m = r[p]
            speedup = f"{m['full_images_per_s'] / base:.2f}x" if base else "-"
            shares = " | ".join(f"{100 * m['achieved_flops'] / lim:.0f}%" for lim in limits.values())
            rows.append(f"| {r['variant']} | {p} | {'channels-last' if m['channels_last'] else 'NCHW'} | "
                        f"{r['params'] / 1e6:.1f} M | {r['step_gflop_per_image']:.3f} | "
                        f"{m['bare_images_per_s']:.0f} | {m['full_images_per_s']:.0f} | {speedup} | {m['ratio']:.2f} | "
                        f"{100 * m['loader_wait_share']:.1f}% | {m['achieved_flops'] / 1e9:.0f} | {shares} | "
                        f"{m['val_images_per_s']:.0f} | {_hours(m['thesis128_hours'])} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--store", type=Path, default=None, help="store root with train/ and val/ (maps are added)")
    ap.add_argument("--src", type=Path, default=REPO.parent / "shared" / "data" / "imagenette",
                    help="ImageNet-layout images to prepare a store from; 'synthetic' for generated JPEGs")
    ap.add_argument("--per-class", type=int, default=52, help="train images per class prepared from --src")
    ap.add_argument("--val-per-class", type=int, default=64, help="val images per class (synthetic source only)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=4, help="bare steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="loader workers (default: as `salclass train`)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--precisions", default=None,
                    help="measured side by side, rounds alternating (default fp32,bf16; fp32 alone where bf16 "
                         "is emulated, which is ~25x slower)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--matmul-n", type=int, default=None,
                    help="matrix size for the limits (default 2048 CPU, 8192 CUDA; 512 for bf16 a CPU emulates)")
    ap.add_argument("--ab-workers", default=None, metavar="A,B",
                    help="instead: alternate full-training epochs between these loader worker counts (fp32)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args(argv)

    device = torch.device("cuda", 0) if a.device == "cuda" else torch.device("cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("train_speed: --device cuda, but this PyTorch sees no CUDA GPU", file=sys.stderr)
        return 2
    native = device_has_native_bf16(device)
    if a.precisions is None:
        a.precisions = "fp32,bf16" if native else "fp32"
        if not native:
            print("train_speed: this device has no native bf16, so only fp32 is timed "
                  "(--precisions fp32,bf16 times the emulated bf16 too)", file=sys.stderr)
    precisions = [p.strip() for p in a.precisions.split(",") if p.strip()]
    if not precisions or any(p not in ("fp32", "bf16") for p in precisions):
        print(f"train_speed: --precisions takes fp32 and/or bf16, got {a.precisions!r}", file=sys.stderr)
        return 2
    threads = a.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    on_cuda = device.type == "cuda"
    if on_cuda:
        torch.backends.cudnn.benchmark = True
    workers = a.workers if a.workers is not None else default_workers(device.type, threads)
    began = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="salclass-train-speed-"))
    try:
        if a.store is not None:
            store_root = a.store
        else:
            src = None if str(a.src) == "synthetic" or not a.src.is_dir() else a.src
            what = src or f"synthetic JPEGs ({a.per_class}/{a.val_per_class} per class)"
            print(f"preparing a 144px store from {what} in {tmp} ...", file=sys.stderr)
            store_root = make_store(tmp, src, a.per_class, a.val_per_class, workers=max(1, os.cpu_count() or 1))
        if a.ab_workers:
            rt = _runtime(device, "", "fp32")
            choices = [int(w) for w in a.ab_workers.split(",")]
            print(f"machine: {machine(device)}")
            print(f"full-training epochs of {results_epoch(store_root, a.batch)} images, alternating loader workers "
                  f"{choices}, {a.rounds} rounds after a warm-up round")
            print("| variant | loader workers | full training img/s per round | time waiting for the loader |")
            print("| --- | --- | --- | --- |")
            for name in a.variants.split(","):
                for r in ab_workers(name, store_root, rt, a.batch, a.rounds, choices):
                    ips = ", ".join(f"{x:.0f}" for x in r["images_per_s"])
                    wait = ", ".join(f"{100 * x:.1f}%" for x in r["loader_wait_share"])
                    print(f"| {name} | {r['workers']} | {ips} | {wait} |")
            return 0
        sizes = {"fp32": a.matmul_n or (8192 if on_cuda else 2048)}
        sizes["bf16"] = a.matmul_n or (sizes["fp32"] if native else 512)
        dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
        limits = {p: 0.0 for p in ("fp32", "bf16")}
        results = []

        def measure_limits() -> None:
            # Measured again beside every variant and the best kept: on a shared
            # machine a single early reading may catch a busy moment.
            for p in limits:
                limits[p] = max(limits[p], matmul_flops(device, dtypes[p], sizes[p], repeats=10 if on_cuda else 5))

        for name in a.variants.split(","):
            measure_limits()
            print(f"timing {name} ({', '.join(precisions)}) ...", file=sys.stderr)
            results.append(bench_variant(name, store_root, device, precisions, a.batch, a.steps, a.rounds, workers,
                                         a.compile))
        measure_limits()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"machine: {machine(device)}; native bf16: {'yes' if native else 'no (PyTorch emulates it)'}")
    print(f"settings: crop 128, batch {a.batch}, {' and '.join(precisions)} (bf16: autocast, float32 weights), "
          f"loader workers {workers}{', torch.compile' if a.compile else ''}; full training over "
          f"{results[0]['train_images_per_epoch']} images per epoch; best of {a.rounds} rounds, precisions alternating")
    print("measured matmul limits: " + ", ".join(f"{p} {limits[p] / 1e9:.0f} GFLOP/s ({sizes[p]}^3)" for p in limits)
          + ", best readings beside the variants")
    print()
    print(table(results, precisions, limits))
    print()
    print("time waiting for the loader: share of the full-training epoch spent in the loader's next(), measured in "
          "the same epoch, so unlike full/bare it does not move with the load of a shared machine")
    print(f"est. thesis-128 protocol = {THESIS_EPOCHS} x ({THESIS_TRAIN} / full img/s + {THESIS_VAL} / val img/s), "
          "an extrapolation, not a measured run")
    print(f"benchmark wall time: {time.perf_counter() - began:.0f} s")
    if a.json is not None:
        variants = {r["variant"]: {**{f"{p}_img_s": r[p]["full_images_per_s"] for p in precisions}, **r}
                    for r in results}
        a.json.write_text(json.dumps({"machine": machine(device), "native_bf16": native, "workers": workers,
                                      "batch": a.batch, "rounds": a.rounds,
                                      "matmul_flops": {p: limits[p] for p in limits}, "matmul_n": sizes,
                                      "variants": variants}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
