"""Benchmark: does the input pipeline cost anything, and how close to the machine's limit does training run?

    .venv/bin/python benchmarks/train_speed.py                 # CPU, real Imagenette images
    python3 benchmarks/gpu_train_speed.py                      # one CUDA GPU (see that file)

For RGB, RGBS, FanIn1 and FanIn3 at crop 128 (a 144 store) and batches of 128 it prints:
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
  measured matrix-multiply FLOP/s (the practical peak);
- validation images/s (forward only) and, from these, an estimate of the time
  of the thesis's 128px protocol on full Imagenette (90 epochs of 9,469 train
  and 3,925 validation images).

Each number is the best of --rounds rounds (the machine may be shared).
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
from salclass.training.distributed import World
from salclass.training.engine import Runtime, evaluate, train_one_epoch
from salclass.training.config import THESIS_WEIGHT_DECAY
from salclass.training.main import default_workers
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


def bench_variant(name: str, store_root: Path, rt: Runtime, batch: int, steps: int, rounds: int, workers: int,
                  compile_model: bool) -> dict:
    train_store, val_store = Store.open(store_root / "train"), Store.open(store_root / "val")
    torch.manual_seed(0)
    net = create(name, train_store.num_classes, input_size=128)
    fmt = torch.channels_last if rt.channels_last else torch.contiguous_format
    net = net.to(rt.device, memory_format=fmt)
    model = torch.compile(net) if compile_model else net
    opt = sgd(net, lr=0.01, momentum=0.9, weight_decay=THESIS_WEIGHT_DECAY, decay_on="kernels")
    uses = net.uses_saliency
    train_loader = StoreLoader(train_store, batch, True, crop=128, with_saliency=uses, device=str(rt.device),
                               workers=workers)
    val_loader = StoreLoader(val_store, batch, False, crop=128, with_saliency=uses, device=str(rt.device),
                             workers=workers)
    # The bare step's batch: real pixels, already cropped, resident on the device.
    train_loader.set_epoch(0)
    image, sal, label = rt.inputs(next(iter(train_loader)))
    flops = step_flops(net, opt, image, sal, label, rt) / image.shape[0]
    model.train()
    for _ in range(3):
        _step(model, opt, image, sal, label, rt)
    _sync(rt.device)

    bare, full, val, waited = 0.0, 0.0, 0.0, []
    for r in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            _step(model, opt, image, sal, label, rt)
        _sync(rt.device)
        bare = max(bare, steps * image.shape[0] / (time.perf_counter() - t0))
        train_loader.set_epoch(r + 1)
        timed = TimedLoader(train_loader)
        stats = train_one_epoch(model, timed, opt, rt, epoch=r + 1, epochs=rounds)
        full = max(full, stats["images_per_s"])
        waited.append(timed.waited / stats["seconds"])
        v, _ = evaluate(model, val_loader, rt)
        val = max(val, v["images_per_s"])
    return {
        "variant": name, "params": sum(p.numel() for p in net.parameters()),
        "step_gflop_per_image": flops / 1e9,
        "bare_images_per_s": bare, "full_images_per_s": full, "ratio": full / bare,
        "loader_wait_share": float(np.median(waited)),
        "achieved_flops": flops * bare, "val_images_per_s": val,
        "train_images_per_epoch": len(train_loader) * batch,
        "thesis128_hours": THESIS_EPOCHS * (THESIS_TRAIN / full + THESIS_VAL / val) / 3600,
    }


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


def table(results: list[dict], peak: float, peak_label: str) -> str:
    head = ("| variant | params | GFLOP/img (train step) | bare step img/s | full training img/s | full/bare | "
            "time waiting for the loader | "
            f"bare step GFLOP/s | % of {peak_label} | val img/s | est. thesis-128 protocol |")
    rows = [head, "|" + " --- |" * 11]
    for r in results:
        hours = r["thesis128_hours"]
        est = f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"
        rows.append(f"| {r['variant']} | {r['params'] / 1e6:.1f} M | {r['step_gflop_per_image']:.3f} | "
                    f"{r['bare_images_per_s']:.0f} | {r['full_images_per_s']:.0f} | {r['ratio']:.2f} | "
                    f"{100 * r['loader_wait_share']:.1f}% | "
                    f"{r['achieved_flops'] / 1e9:.0f} | {100 * r['achieved_flops'] / peak:.0f}% | "
                    f"{r['val_images_per_s']:.0f} | {est} |")
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
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--matmul-n", type=int, default=None, help="matrix size for the peak (default 2048 CPU, 8192 CUDA)")
    ap.add_argument("--ab-workers", default=None, metavar="A,B",
                    help="instead: alternate full-training epochs between these loader worker counts")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args(argv)

    device = torch.device("cuda", 0) if a.device == "cuda" else torch.device("cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("train_speed: --device cuda, but this PyTorch sees no CUDA GPU", file=sys.stderr)
        return 2
    threads = a.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    on_cuda = device.type == "cuda"
    if on_cuda:
        torch.backends.cudnn.benchmark = True
    workers = a.workers if a.workers is not None else default_workers(device.type, threads)
    rt = Runtime(device, World(), torch.bfloat16 if on_cuda else None, channels_last=on_cuda, progress=False,
                 check_every=25 if on_cuda else 1)
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
        peak_dtype = torch.bfloat16 if on_cuda else torch.float32
        n = a.matmul_n or (8192 if on_cuda else 2048)
        peak_label = f"{'bf16' if on_cuda else 'fp32'} matmul peak"
        results, peak = [], 0.0
        for name in a.variants.split(","):
            # The peak is measured again beside every variant and the best kept:
            # on a shared machine a single early reading may catch a busy moment.
            peak = max(peak, matmul_flops(device, peak_dtype, n, repeats=10 if on_cuda else 5))
            print(f"timing {name} ...", file=sys.stderr)
            results.append(bench_variant(name, store_root, rt, a.batch, a.steps, a.rounds, workers, a.compile))
        peak = max(peak, matmul_flops(device, peak_dtype, n, repeats=10 if on_cuda else 5))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    mode = "bf16 autocast, channels_last" if on_cuda else "fp32"
    print(f"machine: {machine(device)}")
    print(f"settings: crop 128, batch {a.batch}, {mode}, loader workers {workers}"
          f"{', torch.compile' if a.compile else ''}; full training over "
          f"{results[0]['train_images_per_epoch']} images per epoch; best of {a.rounds} rounds")
    print(f"measured {peak_label}: {peak / 1e9:.0f} GFLOP/s ({n}x{n}x{n}, best reading beside the variants)")
    print()
    print(table(results, peak, peak_label))
    print()
    print("time waiting for the loader: share of the full-training epoch spent in the loader's next(), measured in "
          "the same epoch, so unlike full/bare it does not move with the load of a shared machine; "
          "1 - that share is the same-run full/bare ratio")
    print(f"est. thesis-128 protocol = {THESIS_EPOCHS} x ({THESIS_TRAIN} / full img/s + {THESIS_VAL} / val img/s), "
          "an extrapolation, not a measured run")
    print(f"benchmark wall time: {time.perf_counter() - began:.0f} s")
    if a.json is not None:
        a.json.write_text(json.dumps({"machine": machine(device), "peak_flops": peak, "peak": peak_label,
                                      "workers": workers, "batch": a.batch, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
