"""prepare and inspect on real Imagenette subsets: content, determinism,
subsets, safety of interrupted and repeated runs, one-line errors."""

import json
import shutil

import numpy as np
import pytest

from salclass.data import SaliencyMapWriter, Store
from salclass.data import prepare as prep_mod
from salclass.data.decode import load_square_rgb
from salclass.data.prepare import prepare
from salclass.errors import UserError


def _same_store(a, b):
    sa, sb = Store.open(a), Store.open(b)
    return (sa.ids == sb.ids and np.array_equal(sa.labels, sb.labels)
            and np.array_equal(np.asarray(sa.images), np.asarray(sb.images)))


def test_store_content(tiny_store_no_saliency, tiny_source):
    s = Store.open(tiny_store_no_saliency / "train")
    assert s.classes == [("n01440764", "tench"), ("n02102040", "English springer"),
                         ("n02979186", "cassette player")]
    assert s.images.dtype == np.uint8 and s.images.shape == (72, 144, 144, 3)
    assert not s.images.flags.writeable
    assert np.bincount(s.labels).tolist() == [24, 24, 24]
    assert not np.all(np.diff(s.labels) >= 0), "labels come out class by class: not shuffled"
    for i in (0, 17, 71):
        wnid = s.ids[i].split("/")[1]
        assert s.classes[s.labels[i]][0] == wnid and s.ids[i].startswith("train/")
        assert np.array_equal(s.images[i], load_square_rgb(tiny_source / s.ids[i], 144))
    expect = np.asarray(s.images).reshape(-1, 3).mean(axis=0) / 255
    assert np.allclose(s.mean, expect, atol=1e-5)
    val = Store.open(tiny_store_no_saliency / "val")
    assert val.count == 36 and val.classes == s.classes and all(i.startswith("val/") for i in val.ids)


def test_seeded_order_and_parallel_equals_sequential(tiny_source, tmp_path):
    prepare(tiny_source, tmp_path / "a", 64, seed=5, workers=1, progress=False)
    prepare(tiny_source, tmp_path / "b", 64, seed=5, workers=2, progress=False)
    prepare(tiny_source, tmp_path / "c", 64, seed=6, workers=2, progress=False)
    assert _same_store(tmp_path / "a" / "train", tmp_path / "b" / "train")
    assert Store.open(tmp_path / "a" / "val").ids == Store.open(tmp_path / "b" / "val").ids
    assert Store.open(tmp_path / "a" / "train").ids != Store.open(tmp_path / "c" / "train").ids


def test_subset_options_are_seeded_and_independent_of_other_classes(imagenette_root, tmp_path, run_cli):
    code, out, err = run_cli("prepare", imagenette_root, tmp_path / "two", "--size", 32, "--limit-per-class", 5,
                             "--classes", "n03394916,n01440764", "--seed", 2)
    assert code == 0, err
    assert "train: found 10 = stored 10 + rejected 0" in out and "val: found 10 = stored 10 + rejected 0" in out
    two = Store.open(tmp_path / "two" / "train")
    assert [w for w, _ in two.classes] == ["n01440764", "n03394916"]
    prepare(imagenette_root, tmp_path / "one", 32, seed=2, limit_per_class=5, classes=["n01440764"],
            progress=False)
    one = Store.open(tmp_path / "one" / "train")
    assert sorted(one.ids) == sorted(i for i in two.ids if "/n01440764/" in i)
    prepare(imagenette_root, tmp_path / "other", 32, seed=3, limit_per_class=5, classes=["n01440764"],
            progress=False)
    assert sorted(Store.open(tmp_path / "other" / "train").ids) != sorted(one.ids)
    code, _, err = run_cli("prepare", imagenette_root, tmp_path / "x", "--size", 32, "--classes", "n0nope")
    assert code == 2 and "n0nope" in err and len(err.strip().splitlines()) == 1


def test_size_256_and_its_default_crop(tiny_source, tmp_path):
    from salclass.data import StoreLoader

    prepare(tiny_source, tmp_path / "s", 256, workers=2, progress=False)
    s = Store.open(tmp_path / "s" / "val")
    assert s.images.shape == (36, 256, 256, 3)
    b = next(iter(StoreLoader(s, 4, train=True, with_saliency=False)))
    assert b.image.shape == (4, 3, 227, 227)


def test_class_names_from_words_txt(tiny_source, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_source / "train", src / "train")
    (src / "words.txt").write_text("n01440764\ttench, Tinca tinca\nn02102040\tEnglish springer, springer\n")
    prepare(src, tmp_path / "o", 32, progress=False)
    s = Store.open(tmp_path / "o" / "train")
    assert s.classes == [("n01440764", "tench"), ("n02102040", "English springer"),
                         ("n02979186", "n02979186")]
    assert not (tmp_path / "o" / "val").exists()


def _one_line_error(run_cli, *args, match):
    code, out, err = run_cli(*args)
    assert code == 2, (code, out, err)
    last = err.strip().splitlines()[-1]  # a progress bar may come before it
    assert last.startswith("salclass: error:") and "Traceback" not in err, err
    assert match in last, err


def test_bad_sources_are_one_line_errors(tiny_source, tmp_path, run_cli):
    out = tmp_path / "out"
    _one_line_error(run_cli, "prepare", tmp_path / "missing", out, "--size", 32, match="no such folder")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "a.jpg").write_bytes(b"x")
    _one_line_error(run_cli, "prepare", tmp_path / "plain", out, "--size", 32, match="not an image folder")
    (tmp_path / "noclass" / "train").mkdir(parents=True)
    _one_line_error(run_cli, "prepare", tmp_path / "noclass", out, "--size", 32, match="no class folders")
    src = tmp_path / "src"
    shutil.copytree(tiny_source, src)
    (src / "train" / "n09999999").mkdir()
    _one_line_error(run_cli, "prepare", src, out, "--size", 32, match="n09999999: empty class folder")
    (src / "train" / "n09999999").rmdir()
    (src / "val" / "n08888888").mkdir()
    (src / "val" / "n08888888" / "x.JPEG").write_bytes(b"x")
    _one_line_error(run_cli, "prepare", src, out, "--size", 32, match="class missing from the train split")
    shutil.rmtree(src / "val" / "n08888888")
    hidden = tmp_path / "hidden" / "train" / "n01"
    hidden.mkdir(parents=True)
    (hidden / ".DS_Store").write_bytes(b"x")
    _one_line_error(run_cli, "prepare", tmp_path / "hidden", out, "--size", 32, match="empty class folder")
    bad = tmp_path / "allbad" / "train" / "n01"
    bad.mkdir(parents=True)
    (bad / "a.JPEG").write_bytes(b"junk")
    _one_line_error(run_cli, "prepare", tmp_path / "allbad", out, "--size", 32, match="none of 1 files could be read")
    _one_line_error(run_cli, "inspect", out / "train", match="incomplete")
    assert not out.joinpath("val").exists()


def test_complete_out_needs_overwrite_and_foreign_out_is_left_alone(tiny_source, tmp_path, run_cli):
    out = tmp_path / "out"
    assert run_cli("prepare", tiny_source, out, "--size", 32)[0] == 0
    before = (out / "train" / "images.npy").stat().st_mtime_ns
    _one_line_error(run_cli, "prepare", tiny_source, out, "--size", 32, match="--overwrite")
    assert (out / "train" / "images.npy").stat().st_mtime_ns == before
    code, o, err = run_cli("prepare", tiny_source, out, "--size", 48, "--overwrite")
    assert code == 0, err
    assert Store.open(out / "train").size == 48
    foreign = tmp_path / "foreign"
    (foreign / "train").mkdir(parents=True)
    (foreign / "train" / "mine.txt").write_text("keep me")
    _one_line_error(run_cli, "prepare", tiny_source, foreign, "--size", 32, match="not a salclass store")
    assert (foreign / "train" / "mine.txt").read_text() == "keep me"


def _interrupt_after(monkeypatch, chunks):
    real = prep_mod._decoded

    def failing(tasks, workers):
        for k, result in enumerate(real(tasks, workers)):
            if k == chunks:
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(prep_mod, "_decoded", failing)
    monkeypatch.setattr(prep_mod, "CHECKPOINT_SECONDS", 0.0)
    monkeypatch.setattr(prep_mod, "CHUNK", 8)


def test_interrupted_prepare_is_never_complete_and_resumes(tiny_source, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    _interrupt_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        prepare(tiny_source, out, 64, seed=1, workers=2)
    with pytest.raises(UserError, match="incomplete"):
        Store.open(out / "train")
    progress = json.loads((out / "train" / "progress.json").read_text())
    assert progress["position"] == 24 and progress["stored"] == 24
    monkeypatch.undo()
    monkeypatch.setattr(prep_mod, "CHUNK", 8)
    capsys.readouterr()
    prepare(tiny_source, out, 64, seed=1, workers=2)
    assert "train: resuming at 24 of 72 files" in capsys.readouterr().err
    prepare(tiny_source, tmp_path / "fresh", 64, seed=1, workers=1, progress=False)
    for split in ("train", "val"):
        assert _same_store(out / split, tmp_path / "fresh" / split)
        assert Store.open(out / split).meta["mean"] == Store.open(tmp_path / "fresh" / split).meta["mean"]
    assert not (out / "train" / "progress.json").exists()


def test_interrupted_prepare_with_other_inputs_starts_over(tiny_source, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        prepare(tiny_source, out, 64, seed=1, workers=1)
    monkeypatch.undo()
    capsys.readouterr()
    prepare(tiny_source, out, 64, seed=2, workers=1)
    assert "resuming" not in capsys.readouterr().err
    prepare(tiny_source, tmp_path / "fresh", 64, seed=2, workers=1, progress=False)
    assert _same_store(out / "train", tmp_path / "fresh" / "train")


def test_finishing_a_half_done_out_keeps_the_complete_split(tiny_source, tmp_path, monkeypatch):
    out = tmp_path / "out"
    prepare(tiny_source, out, 32, workers=1, progress=False)
    shutil.rmtree(out / "val")
    before = (out / "train" / "images.npy").stat().st_mtime_ns
    results = prepare(tiny_source, out, 32, workers=1, progress=False)
    assert [r.get("kept", False) for r in results] == [True, False]
    assert (out / "train" / "images.npy").stat().st_mtime_ns == before
    assert Store.open(out / "val").count == 36


def test_inspect(tiny_store, run_cli):
    code, out, err = run_cli("inspect", tiny_store / "train", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert {"count", "size", "classes", "has_saliency", "rejected"} <= info.keys()
    assert (info["count"], info["size"], info["has_saliency"], info["rejected"]) == (72, 144, True, 0)
    assert [c["name"] for c in info["classes"]] == ["tench", "English springer", "cassette player"]
    code, out, _ = run_cli("inspect", tiny_store / "val")
    assert code == 0 and "36 of 144x144x3" in out and "saliency  yes (model contrast" in out
    _one_line_error(run_cli, "inspect", tiny_store, match="is a store root")
    _one_line_error(run_cli, "inspect", tiny_store / "nope", match="no such store")


def test_store_open_refuses_other_types_and_versions(tiny_store_no_saliency, tmp_path):
    split = tmp_path / "train"
    shutil.copytree(tiny_store_no_saliency / "train", split)
    meta = json.loads((split / "meta.json").read_text())
    (split / "meta.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(UserError, match="version 99"):
        Store.open(split)
    (split / "meta.json").write_text(json.dumps({**meta, "type": "something.else"}))
    with pytest.raises(UserError, match="not a salclass.store"):
        Store.open(split)
    (split / "meta.json").write_text(json.dumps(meta))
    (split / "ids.txt").write_text("just one\n")
    with pytest.raises(UserError, match="expected 72 ids"):
        Store.open(split)


def test_saliency_writer_resumes_and_never_claims_missing_maps(tiny_store_no_saliency, tmp_path):
    split = tmp_path / "train"
    shutil.copytree(tiny_store_no_saliency / "train", split)
    rows = np.arange(72, dtype=np.uint8)[:, None, None] * np.ones((1, 144, 144), np.uint8)
    w = SaliencyMapWriter(split, "m")
    assert w.done == 0
    w.write(0, rows[:30])
    w.checkpoint()
    w.write(30, rows[30:50])  # not checkpointed: lost in the "crash" below
    with pytest.raises(ValueError, match="gap"):
        w.write(60, rows[60:])
    del w
    assert not Store.open(split).has_saliency
    with pytest.raises(UserError, match="unfinished maps of model 'm'"):
        SaliencyMapWriter(split, "other")
    w = SaliencyMapWriter(split, "m")
    assert w.done == 30
    with pytest.raises(ValueError, match="only 30 of 72"):
        w.finish()
    w.write(30, rows[30:])
    w.finish()
    s = Store.open(split)
    assert s.has_saliency and s.saliency_model == "m" and np.array_equal(s.saliency, rows)
    assert s.saliency_mean == pytest.approx(rows.mean() / 255)
    with pytest.raises(UserError, match="already has saliency maps"):
        SaliencyMapWriter(split, "m")
    w = SaliencyMapWriter(split, "n", overwrite=True)
    assert w.done == 0 and not Store.open(split).has_saliency
