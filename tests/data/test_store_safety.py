"""A store has one writer at a time, and a damaged, full or read-only one is
one line (exit code 2), never a half-written store marked complete."""

from __future__ import annotations

import json
from pathlib import Path

from salclass.data import Store


def test_a_second_prepare_into_the_same_out_is_refused(tiny_source, tmp_path, run_cli, blocked_command):
    out = tmp_path / "store"
    first = blocked_command("salclass.data.prepare._decode_chunk",
                           "prepare", tiny_source, out, "--size", 32, "--workers", 1)
    code, _, err = run_cli("prepare", tiny_source, out, "--size", 32, "--workers", 1, "--seed", 1, "--overwrite")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"pid {first.pid} is writing it" in err and "prepare" in err
    code, _, err = first.release()
    assert code == 0, err
    for split in ("train", "val"):
        s = Store.open(out / split)
        assert s.seed == 0 and s.count == len(s.ids) == len(s.labels)
        assert s.verify(full=True) == ["meta.json", "labels.npy", "ids.txt", "images.npy"]
        assert json.loads((out / split / "meta.json").read_text())["seed"] == 0


def _copy(store: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(store, tmp_path / "copy"))


def _flip_byte(path: Path, offset_from_end: int) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def test_inspect_verify_finds_a_flipped_byte_in_the_images(tiny_store, tmp_path, run_cli):
    store = _copy(tiny_store, tmp_path)
    code, out, _ = run_cli("inspect", store / "train", "--verify")
    assert code == 0 and "verified  meta.json, labels.npy, ids.txt, images.npy, saliency.npy" in out
    _flip_byte(store / "train" / "images.npy", 1000)
    code, _, err = run_cli("inspect", store / "train")
    assert code == 0  # the cheap open does not read the pixels
    code, _, err = run_cli("inspect", store / "train", "--verify")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{store / 'train' / 'images.npy'}: damaged" in err and "salclass prepare" in err


def test_damaged_maps_are_reported_and_rebuilt_by_overwrite(tiny_store, tmp_path, run_cli):
    store = _copy(tiny_store, tmp_path)
    split = store / "val"
    with open(split / "saliency.npy", "r+b") as f:
        f.truncate(1000)
    s = Store.open(split)  # the images are still usable
    assert not s.has_saliency and "saliency.npy" in s.saliency_problem
    code, out, _ = run_cli("inspect", split)
    assert code == 0 and "damaged" in out and "--overwrite" in out
    code, _, err = run_cli("saliency", "predict", split, "--model", "centre_bias")
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    (store / "train" / "saliency.json").write_text('{"type": "salclass.saliency_maps", "version": 1, "mod')
    assert "not valid JSON" in Store.open(store / "train").saliency_problem
    code, _, err = run_cli("saliency", "predict", store, "--model", "centre_bias", "--overwrite")
    assert code == 0, err
    for name in ("train", "val"):
        s = Store.open(store / name)
        assert s.has_saliency and s.saliency_model == "centre_bias" and "saliency.npy" in s.verify(full=True)


def test_a_hand_edited_meta_is_one_line(tiny_store, tmp_path, run_cli):
    store = _copy(tiny_store, tmp_path)
    meta_path = store / "train" / "meta.json"
    # As a store from before meta.json had a checksum: the field checks are what catch these edits.
    good = {k: v for k, v in json.loads(meta_path.read_text()).items() if k != "content_sha256"}
    for key, value, fragment in [("count", "72", "'count' has the wrong type"),
                                 ("classes", [1, 2, 3], "classes[0] is not"),
                                 ("mean", [0.5, "x", 0.5], "'mean' is not three numbers"),
                                 ("checksums", [1], "'checksums' has the wrong type")]:
        meta_path.write_text(json.dumps({**good, key: value}))
        code, _, err = run_cli("inspect", store / "train")
        assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err
    meta_path.write_text(json.dumps({k: v for k, v in good.items() if k != "size"}))
    code, _, err = run_cli("inspect", store / "train")
    assert code == 2 and "missing 'size'" in err
    meta_path.write_text(json.dumps(good))
    sal_path = store / "train" / "saliency.json"
    sal = {k: v for k, v in json.loads(sal_path.read_text()).items() if k != "content_sha256"}
    sal_path.write_text(json.dumps({**sal, "mean": "high"}))
    code, out, _ = run_cli("inspect", store / "train")
    assert code == 0 and "'mean' has the wrong type" in out


def _edit_first_mean_digit(meta_path: Path) -> None:
    """One digit of the first channel mean changed, the rest of the file (its checksum too) as written."""
    import re

    text = meta_path.read_text()
    m = re.search(r'"mean": \[\s*0\.(\d)', text)
    digit = m.group(1)
    start = m.start(1)
    meta_path.write_text(text[:start] + str((int(digit) + 1) % 10) + text[start + 1:])


def test_one_digit_of_the_mean_changed_stops_inspect_and_train(tiny_store, tmp_path, run_cli):
    store = _copy(tiny_store, tmp_path)
    meta_path = store / "train" / "meta.json"
    before = json.loads(meta_path.read_text())["mean"]
    _edit_first_mean_digit(meta_path)
    assert json.loads(meta_path.read_text())["mean"] != before
    code, out, err = run_cli("inspect", store / "train", "--verify")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{meta_path}: edited or damaged" in err
    code, _, err = run_cli("train", "--set", f"store={store}", "--set", f"out={tmp_path / 'run'}",
                           "--set", "model=RGB", "--set", "epochs=1", "--set", "device=cpu",
                           "--set", "tensorboard=false", "--set", "progress=false")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{meta_path}: edited or damaged" in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_store_without_meta_checksums_loads_unverified(tiny_store, tmp_path, run_cli):
    store = _copy(tiny_store, tmp_path)
    for split in ("train", "val"):
        for name in ("meta.json", "saliency.json"):
            path = store / split / name
            old = {k: v for k, v in json.loads(path.read_text()).items() if k != "content_sha256"}
            path.write_text(json.dumps(old))
    s = Store.open(store / "train")
    assert not s.meta_verified and s.has_saliency
    code, out, err = run_cli("inspect", store / "train", "--verify")
    assert code == 0, err
    assert "verified  labels.npy, ids.txt, images.npy, saliency.npy" in out
    assert "unverified meta.json: written without a checksum" in out


def test_too_little_free_space_is_refused_up_front(tiny_source, tmp_path, run_cli, monkeypatch):
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=100_000))
    code, _, err = run_cli("prepare", tiny_source, tmp_path / "store", "--size", 32, "--workers", 1)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "not enough free space for the store (train, val): needs 0.5 MB, 0.1 MB free on that disk" in err
    assert not (tmp_path / "store").exists()
    monkeypatch.setattr(shutil, "disk_usage", real)
    code, _, err = run_cli("prepare", tiny_source, tmp_path / "store", "--size", 32, "--workers", 1)
    assert code == 0, err
    # Same as a store never refused: the checksums of every file match.
    code, _, err = run_cli("prepare", tiny_source, tmp_path / "again", "--size", 32, "--workers", 1)
    for split in ("train", "val"):
        a, b = (json.loads((tmp_path / d / split / "meta.json").read_text()) for d in ("store", "again"))
        assert a["checksums"] == b["checksums"]

    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=20_000))
    code, _, err = run_cli("saliency", "predict", tmp_path / "store", "--model", "centre_bias")
    assert code == 2 and "not enough free space for 72 saliency maps: needs 0.1 MB, 0.0 MB free" in err
    assert not (tmp_path / "store" / "train" / "saliency.json").exists()
    monkeypatch.setattr(shutil, "disk_usage", real)
    code, _, err = run_cli("saliency", "predict", tmp_path / "store", "--model", "centre_bias")
    assert code == 0, err


def test_read_only_folders_are_one_line(tiny_source, tiny_store, tmp_path, run_cli, make_readonly):
    import shutil

    store = Path(shutil.copytree(tiny_store, tmp_path / "w" / "store"))
    make_readonly(tmp_path / "w")
    code, _, err = run_cli("prepare", tiny_source, tmp_path / "w" / "new", "--size", 32, "--workers", 1)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot create this folder" in err, err
    code, _, err = run_cli("prepare", tiny_source, store, "--size", 32, "--workers", 1, "--overwrite")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot write here" in err, err
    code, _, err = run_cli("saliency", "predict", store, "--model", "centre_bias", "--overwrite")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot write here" in err, err
    assert Store.open(store / "train").verify(full=True)  # untouched, and still readable
