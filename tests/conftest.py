"""Shared fixtures: where the real data lives, and running the CLI in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SALCLASS_SHARED_DATA", REPO.parent / "shared" / "data"))

# Tests share two cores with everything else on this machine; one intra-op
# thread per process keeps parallel work (loaders, DDP ranks) from thrashing.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def imagenette_root() -> Path:
    root = SHARED_DATA / "imagenette"
    assert (root / "train").is_dir(), f"shared Imagenette not found at {root}"
    return root


@pytest.fixture(scope="session")
def osie_root() -> Path:
    root = SHARED_DATA / "osie"
    assert (root / "fixations.mat").is_file(), f"shared OSIE not found at {root}"
    return root


@pytest.fixture(scope="session")
def scene_root() -> Path:
    root = SHARED_DATA / "scene"
    assert (root / "tidy" / "fixations.mat").is_file(), f"shared scene data not found at {root}"
    return root


@pytest.fixture
def run_cli(capsys):
    """Run `salclass ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from salclass.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse errors
            code = e.code if isinstance(e.code, int) else 2
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _linked_copy(src: Path, dest: Path) -> Path:
    """A copy of folder `src` whose checkpoints (*.pt) are hard links to the
    originals (no second copy of their bytes); every other file is copied.
    salclass only ever replaces a checkpoint (salclass.io), which breaks the
    link; a test that writes into one in place must copy it instead."""
    import errno
    import shutil

    def copy(s: str, d: str) -> None:
        if s.endswith(".pt"):
            try:
                os.link(s, d)
                return
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
        shutil.copy2(s, d)

    return Path(shutil.copytree(src, dest, symlinks=True, copy_function=copy))


@pytest.fixture(scope="session")
def linked_copy():
    """linked_copy(src, dest) -> dest: a copy of a run or study folder sharing its checkpoints' bytes."""
    return _linked_copy


# --- data stage: tiny stores shared by every stage's tests -----------------

TINY_CLASSES = ("n01440764", "n02102040", "n02979186")  # tench, English springer, cassette player
TINY_PER_CLASS = {"train": 24, "val": 12}


def contrast_maps(images):
    """A deterministic, image-dependent stand-in for predicted saliency: blurred
    local contrast of the grey image, uint8 with each map's maximum at 255."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    gray = np.asarray(images, dtype=np.float32).mean(axis=-1)
    contrast = np.abs(gray - gaussian_filter(gray, sigma=(0, 4, 4)))
    maps = gaussian_filter(contrast, sigma=(0, 6, 6))
    peak = maps.reshape(maps.shape[0], -1).max(axis=1)
    scale = np.where(peak > 0, 255.0 / np.maximum(peak, 1e-12), 0.0).astype(np.float32)
    return np.clip(np.rint(maps * scale[:, None, None]), 0, 255).astype(np.uint8)


def _tiny_source(imagenette_root: Path, dest: Path) -> Path:
    import shutil

    for split, n in TINY_PER_CLASS.items():
        for wnid in TINY_CLASSES:
            (dest / split / wnid).mkdir(parents=True)
            for f in sorted((imagenette_root / split / wnid).iterdir())[:n]:
                shutil.copyfile(f, dest / split / wnid / f.name)
    shutil.copyfile(imagenette_root / "classes.tsv", dest / "classes.tsv")
    return dest


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory, imagenette_root) -> Path:
    """An ImageNet-layout folder: 3 Imagenette classes, 24 train + 12 val images each."""
    return _tiny_source(imagenette_root, tmp_path_factory.mktemp("tiny_source") / "imagenette3")


@pytest.fixture(scope="session")
def tiny_store_no_saliency(tmp_path_factory, tiny_source) -> Path:
    """Store root (train/ 72 images, val/ 36 images) at S=144 without maps. Read only."""
    from salclass.data.prepare import prepare

    root = tmp_path_factory.mktemp("tiny_store_no_saliency") / "store"
    prepare(tiny_source, root, 144, seed=0, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory, tiny_source) -> Path:
    """Like tiny_store_no_saliency, with complete maps (model "contrast", see
    `contrast_maps`) in both splits. Read only: copy it before changing it."""
    from salclass.data import SaliencyMapWriter
    from salclass.data.prepare import prepare

    root = tmp_path_factory.mktemp("tiny_store") / "store"
    prepare(tiny_source, root, 144, seed=0, workers=1, progress=False)
    for split in ("train", "val"):
        writer = SaliencyMapWriter(root / split, "contrast")
        images = writer.store.images
        for start in range(0, writer.count, 32):
            writer.write(start, contrast_maps(images[start:start + 32]))
        writer.finish()
    return root


# --- a second process, held at a chosen point ------------------------------

_BLOCKED_MAIN = r"""
import functools, importlib, sys, time
from pathlib import Path

module, name, flag = sys.argv[1], sys.argv[2], Path(sys.argv[3])
mod = importlib.import_module(module)
original = getattr(mod, name)

@functools.wraps(original)
def held(*args, **kwargs):
    if not flag.with_suffix(".go").exists():
        flag.write_text("reached")
        while not flag.with_suffix(".go").exists():
            time.sleep(0.05)
    return original(*args, **kwargs)

setattr(mod, name, held)
from salclass.cli import main
sys.argv = ["salclass"] + sys.argv[4:]
sys.exit(main())
"""


class BlockedCommand:
    """`salclass ARGS` in a subprocess that stops at its first call of
    `module.function` until `release()`: a concurrent writer or reader caught
    in the middle of its work."""

    def __init__(self, tmp_path: Path, hold_at: str, *args):
        import subprocess
        import sys
        import time

        module, name = hold_at.rsplit(".", 1)
        self.flag = tmp_path / f"held-{name}-{time.monotonic_ns()}.flag"
        self.proc = subprocess.Popen([sys.executable, "-c", _BLOCKED_MAIN, module, name, str(self.flag),
                                      *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not self.flag.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out, err = self.proc.communicate(timeout=5) if self.proc.poll() is not None else ("", "")
                self.proc.kill()
                raise AssertionError(f"the held command never reached {hold_at}: {err[-2000:]}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self, timeout: float = 300) -> tuple[int, str, str]:
        self.flag.with_suffix(".go").write_text("go")
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def blocked_command(tmp_path):
    """blocked_command("module.function", *salclass_args) -> BlockedCommand; killed at the test's end."""
    started = []

    def start(hold_at: str, *args) -> BlockedCommand:
        cmd = BlockedCommand(tmp_path, hold_at, *args)
        started.append(cmd)
        return cmd

    yield start
    for cmd in started:
        cmd.stop()


# --- folders that refuse writes --------------------------------------------

@pytest.fixture
def make_readonly():
    """make_readonly(folder): from now on writes under `folder` fail (EROFS or
    EACCES) for salclass, even when the tests run as root, where chmod stops
    nothing: then the folder is bind-mounted read-only onto itself (skipped
    where mounting is not permitted). Undone at the test's end."""
    import subprocess

    undo = []

    def make(folder: Path) -> Path:
        folder = Path(folder)
        if os.geteuid() != 0:
            modes = [(p, p.stat().st_mode) for p in [folder, *folder.rglob("*")] if p.is_dir()]
            for p, mode in modes:
                p.chmod(mode & ~0o222)
            undo.append(lambda: [p.chmod(mode) for p, mode in modes])
            return folder
        for cmd in (["mount", "--bind", str(folder), str(folder)],
                    ["mount", "-o", "remount,bind,ro", str(folder)]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                if cmd[1] != "--bind":
                    subprocess.run(["umount", str(folder)])
                pytest.skip(f"root without permission to mount (needed for a read-only folder): {r.stderr.strip()}")
        undo.append(lambda: subprocess.run(["umount", str(folder)], check=True))
        return folder

    yield make
    for fn in reversed(undo):
        fn()


@pytest.fixture
def small_disk(tmp_path):
    """small_disk(megabytes) -> a folder on a tmpfs of that size (a disk that
    fills up for real); resize(megabytes) frees space. Skipped where mounting
    is not permitted (the mocked free-space tests still run there)."""
    import subprocess

    mounted = []

    class Disk:
        def __init__(self, megabytes: int):
            self.path = tmp_path / f"disk{len(mounted)}"
            self.path.mkdir()
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(self.path)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                pytest.skip(f"no permission to mount a small tmpfs: {r.stderr.strip()}")
            mounted.append(self.path)

        def resize(self, megabytes: int) -> None:
            subprocess.run(["mount", "-o", f"remount,size={megabytes}m", str(self.path)], check=True)

    yield Disk
    for path in reversed(mounted):
        subprocess.run(["umount", str(path)], check=True)
