"""Benchmark: the packed store + joint crop/flip loader against decoding JPEGs every epoch.

    .venv/bin/python benchmarks/loader.py [--store DIR] [--src ../shared/data/imagenette]

Prints, for the Imagenette train split at S=144:
- images/s of one training epoch through the store (StoreLoader, random crop
  128 + flip applied jointly to image and saliency map, float tensors out),
  in the calling thread and with --workers loader threads;
- images/s of the naive pipeline: Pillow opens each JPEG, converts to RGB,
  resizes the short side to 144, centre-crops, random-crops 128, flips, makes a
  float tensor -- in as many torch DataLoader worker processes, the usual
  way to spread decoding over the cores;
- their ratio;
- the store's read throughput in GB/s (uint8 bytes of images + maps gathered per
  second), next to a plain in-memory copy of the same number of bytes.

If --store has no train split it is prepared there from --src. A store made by
this script gets a cheap stand-in saliency map (the grey image) so that the
joint crop+flip has a map to carry; a store of yours without maps is left as it
is and timed without maps. Timings are with the store in the page cache (a
warm-up pass reads it once first).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from salclass.data import SaliencyMapWriter, Store, StoreLoader
from salclass.data.prepare import prepare

REPO = Path(__file__).resolve().parents[1]

IMAGENET_TRAIN = 1_281_167
IMAGENET_VAL = 50_000
BENCH_MAP_MODEL = "benchmark-gray"


def _imagenet_gb(size: int) -> dict:
    """Disk use of ImageNet-1k (ILSVRC2012) in this layout: pixels, maps, and 2-byte labels
    (ids.txt adds ~40 bytes per image)."""
    image, smap = size * size * 3, size * size
    return {"bytes_per_image": image, "bytes_per_map": smap,
            "train_images": IMAGENET_TRAIN * (image + 2) / 1e9, "train_maps": IMAGENET_TRAIN * smap / 1e9,
            "val_images": IMAGENET_VAL * (image + 2) / 1e9, "val_maps": IMAGENET_VAL * smap / 1e9}


def _ensure_store(root: Path, src: Path, size: int, workers: int) -> Store:
    split = root / "train"
    if not (split / "meta.json").is_file():
        print(f"preparing {src} -> {root} at S={size} ...", file=sys.stderr)
        prepare(src, root, size, workers=workers)
        (root / ".made-by-benchmark").write_text("benchmarks/loader.py\n")
    store = Store.open(split)
    if not store.has_saliency and (root / ".made-by-benchmark").is_file():
        _add_gray_maps(split)
        store = Store.open(split)
    return store


def _add_gray_maps(split: Path) -> None:
    w = SaliencyMapWriter(split, BENCH_MAP_MODEL, overwrite=True)
    images = w.store.images
    for start in range(0, w.count, 512):
        block = np.asarray(images[start:start + 512], dtype=np.uint16)
        w.write(start, (block.sum(axis=-1) // 3).astype(np.uint8))
    w.finish()


def _time_store_epochs(store: Store, batch_size: int, workers: int, epochs: int) -> tuple[list[float], list[float]]:
    """images/s of `epochs` training epochs (after an untimed one), and the CPU
    seconds per image of this process, loader threads included."""
    loader = StoreLoader(store, batch_size, train=True, seed=0, with_saliency=store.has_saliency, workers=workers)
    rates, cpu = [], []
    for epoch in range(epochs + 1):
        loader.set_epoch(epoch)
        n = 0
        t0, c0 = time.perf_counter(), time.process_time()
        for b in loader:
            n += b.image.shape[0]
        if epoch:
            rates.append(n / (time.perf_counter() - t0))
            cpu.append((time.process_time() - c0) / n)
    return rates, cpu


class _NaiveDataset(torch.utils.data.Dataset):
    def __init__(self, files: list[Path], labels: list[int], size: int, crop: int, seed: int):
        self.files, self.labels, self.size, self.crop, self.seed = files, labels, size, crop, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        rng = random.Random(self.seed * 1_000_003 + i)
        with Image.open(self.files[i]) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = self.size / min(w, h)
            im = im.resize((max(self.size, round(w * scale)), max(self.size, round(h * scale))),
                           Image.Resampling.BICUBIC)
            w, h = im.size
            left, top = (w - self.size) // 2, (h - self.size) // 2
            im = im.crop((left, top, left + self.size, top + self.size))
            y, x = rng.randint(0, self.size - self.crop), rng.randint(0, self.size - self.crop)
            im = im.crop((x, y, x + self.crop, y + self.crop))
            if rng.random() < 0.5:
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            arr = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy())
        return arr.permute(2, 0, 1).float().div_(255.0), self.labels[i]


def _time_naive(src: Path, n_images: int, size: int, crop: int, batch_size: int, workers: int,
                parts: int) -> tuple[list[float], list[float]]:
    """images/s and this process's CPU seconds per image of the naive pipeline on
    `parts` consecutive slices of a shuffled list of the train JPEGs."""
    classes = sorted(d.name for d in (src / "train").iterdir() if d.is_dir())
    files, labels = [], []
    for k, c in enumerate(classes):
        for f in sorted((src / "train" / c).iterdir()):
            files.append(f)
            labels.append(k)
    order = np.random.default_rng(0).permutation(len(files))[: n_images or None]
    rates, cpu = [], []
    for part in np.array_split(order, parts):
        ds = _NaiveDataset([files[i] for i in part], [labels[i] for i in part], size, crop, seed=0)
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)
        n = 0
        t0, c0 = time.perf_counter(), time.process_time()
        for img, _ in loader:
            n += img.shape[0]
        rates.append(n / (time.perf_counter() - t0))
        cpu.append((time.process_time() - c0) / n)
    return rates, cpu


def _time_gather(store: Store, batch_size: int) -> tuple[float, int]:
    """Raw store reads: the loader's sorted fancy-index gathers, nothing else."""
    perm = np.random.default_rng(0).permutation(store.count)
    nbytes = 0
    t0 = time.perf_counter()
    for start in range(0, store.count, batch_size):
        rows = np.sort(perm[start:start + batch_size])
        nbytes += store.images[rows].nbytes
        if store.has_saliency:
            nbytes += store.saliency[rows].nbytes
    return time.perf_counter() - t0, nbytes


def _time_memcpy(nbytes: int) -> float:
    """Seconds to copy `nbytes` in memory (in 64 MiB blocks, so it fits in RAM twice)."""
    block = min(nbytes, 64 << 20)
    a = np.ones(block, dtype=np.uint8)
    b = np.empty_like(a)
    np.copyto(b, a)
    t0 = time.perf_counter()
    done = 0
    while done < nbytes:
        np.copyto(b, a)
        done += block
    return (time.perf_counter() - t0) * nbytes / done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default="/tmp/salclass-bench/imagenette144", help="store root (prepared if missing)")
    p.add_argument("--src", default=str(REPO.parent / "shared" / "data" / "imagenette"))
    p.add_argument("--size", type=int, default=144)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="loader threads of the store path and worker processes of the naive path")
    p.add_argument("--naive-images", type=int, default=3000, help="images timed on the naive path (0: all)")
    p.add_argument("--epochs", type=int, default=3, help="store epochs timed (the median is reported)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    a = p.parse_args(argv)
    torch.set_num_threads(1)

    root, src = Path(a.store), Path(a.src)
    store = _ensure_store(root, src, a.size, a.workers)
    crop = StoreLoader(store, 1, train=False, with_saliency=False).crop
    _time_gather(store, 1024)  # warm the page cache

    store_runs = {w: _time_store_epochs(store, a.batch_size, w, a.epochs) for w in sorted({0, a.workers})}
    store_rates = {w: float(np.median(r)) for w, (r, _) in store_runs.items()}
    best_workers = max(store_rates, key=store_rates.get)
    naive_rate = float(np.median(_time_naive(src, a.naive_images, store.size, crop, a.batch_size, a.workers, 3)[0]))
    # CPU time per image of both paths in one process: what each image costs, whatever else runs on the machine.
    store_cpu = float(np.median(store_runs[0][1]))
    naive_cpu = float(np.median(_time_naive(src, a.naive_images // 3, store.size, crop, a.batch_size, 0, 1)[1]))
    t_gather, gathered = _time_gather(store, a.batch_size)
    t_copy = _time_memcpy(gathered)
    store_rate = store_rates[best_workers]
    n_naive = a.naive_images or store.count

    per_image, per_map = store.size * store.size * 3, store.size * store.size
    res = {
        "machine": f"{os.cpu_count()} CPUs",
        "store": str(store.path), "count": store.count, "size": store.size, "crop": crop,
        "with_saliency": store.has_saliency, "batch_size": a.batch_size, "workers": a.workers,
        "store_images_per_s_by_workers": store_rates, "store_images_per_s": store_rate,
        "store_best_workers": best_workers, "store_epoch_s": store.count / store_rate,
        "naive_images_per_s": naive_rate, "naive_images_timed": n_naive,
        "naive_epoch_s_estimate": store.count / naive_rate,
        "speedup": store_rate / naive_rate,
        "store_cpu_ms_per_image": store_cpu * 1e3, "naive_cpu_ms_per_image": naive_cpu * 1e3,
        "cpu_speedup": naive_cpu / store_cpu,
        "loader_read_gb_per_s": store_rate * (per_image + (per_map if store.has_saliency else 0)) / 1e9,
        "gather_gb_per_s": gathered / t_gather / 1e9,
        "memcpy_gb_per_s": gathered / t_copy / 1e9,
        "bytes_per_image": per_image, "bytes_per_map": per_map,
        "imagenet_gb": {size: _imagenet_gb(size) for size in (144, 256)},
    }
    maps = "image+map" if store.has_saliency else "image only (store has no maps)"
    print(f"store   {store.path}: {store.count} images, S={store.size}, crop {crop}, {maps}, batch {a.batch_size}")
    for w, r in store_rates.items():
        print(f"store epoch, {w} loader threads    {r:10.0f} images/s  ({store.count / r:.2f} s per epoch, "
              f"median of {a.epochs})")
    print(f"naive Pillow, {a.workers} workers        {naive_rate:10.0f} images/s  "
          f"(median of 3 slices of {n_naive} images; ~{store.count / naive_rate:.0f} s per epoch)")
    print(f"ratio (best store / naive)      {res['speedup']:10.1f} x  wall clock")
    print(f"CPU per image, in-process       store {store_cpu * 1e3:.3f} ms, naive {naive_cpu * 1e3:.3f} ms: "
          f"ratio {res['cpu_speedup']:.1f} x")
    print(f"store bytes through loader      {res['loader_read_gb_per_s']:10.2f} GB/s")
    print(f"store raw gather reads          {res['gather_gb_per_s']:10.2f} GB/s")
    print(f"plain memory copy, same bytes   {res['memcpy_gb_per_s']:10.2f} GB/s")
    for size, gb in res["imagenet_gb"].items():
        print(f"S={size}: {gb['bytes_per_image']} B per image + {gb['bytes_per_map']} B per map; ImageNet train "
              f"{gb['train_images']:.1f} GB + maps {gb['train_maps']:.1f} GB, val {gb['val_images']:.1f} GB "
              f"+ maps {gb['val_maps']:.1f} GB")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
