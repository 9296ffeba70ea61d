"""The loader: joint crop+flip, determinism, shards, eval crops, mean subtraction."""

import shutil

import numpy as np
import pytest
import torch

from salclass.data import SaliencyMapWriter, Store, StoreLoader, default_crop
from salclass.data.loader import rank_batches
from salclass.errors import UserError


@pytest.fixture(scope="module")
def red_map_store(tmp_path_factory, tiny_store_no_saliency):
    """Train split whose map is the image's red channel: a pixelwise function of
    the image, so after any correct joint crop+flip map == red channel exactly."""
    split = tmp_path_factory.mktemp("redmap") / "train"
    shutil.copytree(tiny_store_no_saliency / "train", split)
    w = SaliencyMapWriter(split, "red")
    w.write(0, np.ascontiguousarray(w.store.images[..., 0]))
    w.finish()
    return Store.open(split)


def _collect(loader):
    return [tuple(t.clone() if t is not None else None for t in b) for b in loader]


def test_image_and_map_get_the_same_crop_and_flip(red_map_store):
    loader = StoreLoader(red_map_store, 16, train=True, seed=3)
    flips_seen = set()
    for epoch in range(2):
        loader.set_epoch(epoch)
        for b in loader:
            assert b.image.shape == (16, 3, 128, 128) and b.saliency.shape == (16, 1, 128, 128)
            assert torch.equal(b.saliency[:, 0], b.image[:, 0])
            for k in range(len(b.index)):
                raw = red_map_store.images[int(b.index[k])]
                got = (b.image[k].permute(1, 2, 0) * 255).round().byte().numpy()
                plain, mirrored = _is_crop_of(got, raw), _is_crop_of(got, raw[:, ::-1])
                assert plain or mirrored, "batch image is not a crop of its store row"
                flips_seen.add(mirrored and not plain)
    assert flips_seen == {True, False}


def _is_crop_of(crop, full):
    c = crop.shape[0]
    return any(np.array_equal(full[y:y + c, x:x + c], crop)
               for y in range(full.shape[0] - c + 1) for x in range(full.shape[1] - c + 1))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("means", [None, "store", "given"])
def test_crop_on_device_path_matches_crop_in_worker(red_map_store, means, train):
    # "given": the training split's means handed to another split's loader (what validation does)
    kw = {} if means is None else {"mean_subtract": True}
    if means == "given":
        kw.update(mean=[0.1, 0.7, 0.35], saliency_mean=0.6)
    a = StoreLoader(red_map_store, 8, train=train, seed=1, **kw)
    b = StoreLoader(red_map_store, 8, train=train, seed=1, **kw)
    b._source.crop_here = False  # what an accelerator device does: crop after the transfer
    batches = 0
    for x, y in zip(_collect(a), _collect(b)):
        for t, u in zip(x, y):
            assert torch.equal(t, u)
        batches += 1
    assert batches == len(a) > 0
    if means is not None:
        # the shift really happened on both paths (the map is the red channel, minus its own mean)
        first = _collect(b)[0]
        want = 0.1 if means == "given" else float(red_map_store.mean[0])
        want_sal = 0.6 if means == "given" else float(red_map_store.saliency_mean)
        assert torch.allclose(first[0][:, 0] + want, first[1][:, 0] + want_sal, atol=1e-6)


def test_order_and_augmentation_depend_only_on_seed_and_epoch(tiny_store):
    def epoch_batches(seed, epoch, workers=0):
        loader = StoreLoader(tiny_store / "train", 16, train=True, seed=seed, workers=workers)
        loader.set_epoch(epoch)
        return _collect(loader)

    base = epoch_batches(0, 2)
    # a loader that ran epochs 0 and 1 first (an uninterrupted run) gives the same epoch 2
    loader = StoreLoader(tiny_store / "train", 16, train=True, seed=0)
    for e in (0, 1, 2):
        loader.set_epoch(e)
        batches = _collect(loader)
    for x, y in zip(base, batches):
        assert all(torch.equal(t, u) for t, u in zip(x, y))
    with_workers = epoch_batches(0, 2, workers=2)
    assert len(with_workers) == len(base)
    for x, y in zip(base, with_workers):
        assert all(torch.equal(t, u) for t, u in zip(x, y))
    other_epoch = epoch_batches(0, 3)
    assert not torch.equal(base[0][3], other_epoch[0][3])
    other_seed = epoch_batches(1, 2)
    assert not torch.equal(base[0][3], other_seed[0][3])


def test_train_covers_a_permutation_and_labels_match(tiny_store):
    s = Store.open(tiny_store / "train")
    loader = StoreLoader(s, 8, train=True)
    idx = torch.cat([b.index for b in loader]).numpy()
    assert len(idx) == 72 and len(set(idx.tolist())) == 72
    labels = torch.cat([b.label for b in loader]).numpy()
    assert np.array_equal(labels, s.labels[idx])


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_get_disjoint_shards_and_equal_batch_counts(tiny_store, world):
    for train, bs in ((True, 10), (False, 7)):
        shards = []
        for rank in range(world):
            loader = StoreLoader(tiny_store / "val", bs, train=train, rank=rank, world_size=world)
            batches = list(loader)
            shards.append(([b.index.numpy() for b in batches], len(loader)))
        counts = {len(b) for b, _ in shards}
        assert len(counts) == 1 and shards[0][1] == len(shards[0][0]) > 0
        all_idx = np.concatenate([np.concatenate(b) for b, _ in shards])
        assert len(all_idx) == len(set(all_idx.tolist()))
        if not train:
            assert sorted(all_idx.tolist()) == list(range(36))
        else:
            assert all(len(x) == 10 for b, _ in shards for x in b)


def test_batch_plan_edge_cases():
    assert [len(b) for b in rank_batches(5, 8, True, 0, 1)] == [5]  # fewer images than a batch
    assert [len(b) for b in rank_batches(20, 8, True, 0, 1)] == [8, 8]
    assert [len(b) for b in rank_batches(20, 8, False, 0, 1)] == [8, 8, 4]
    a, b = rank_batches(9, 4, False, 0, 2), rank_batches(9, 4, False, 1, 2)
    assert len(a) == len(b) and sum(map(len, a)) + sum(map(len, b)) == 9


def test_eval_is_a_center_crop_in_store_order(tiny_store):
    s = Store.open(tiny_store / "val")
    loader = StoreLoader(s, 10, train=False)
    batches = list(loader)
    assert torch.cat([b.index for b in batches]).tolist() == list(range(36))
    b = batches[1]
    expect = torch.from_numpy(np.array(s.images[10:20, 8:136, 8:136])).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(b.image, expect)
    expect_map = torch.from_numpy(np.array(s.saliency[10:20, 8:136, 8:136])).float()[:, None] / 255
    assert torch.equal(b.saliency, expect_map)


def test_mean_subtraction(tiny_store):
    s = Store.open(tiny_store / "val")
    plain = next(iter(StoreLoader(s, 12, train=False)))
    sub = next(iter(StoreLoader(s, 12, train=False, mean_subtract=True)))
    mean = torch.tensor(s.mean, dtype=torch.float32).view(1, 3, 1, 1)
    assert torch.allclose(sub.image, plain.image - mean, atol=1e-6)
    assert torch.allclose(sub.saliency, plain.saliency - s.saliency_mean, atol=1e-6)
    assert abs(float(sub.image.mean())) < abs(float(plain.image.mean()))


def test_mean_subtraction_with_the_training_split_means(tiny_store):
    train, val = Store.open(tiny_store / "train"), Store.open(tiny_store / "val")
    assert not np.allclose(train.mean, val.mean)
    plain = next(iter(StoreLoader(val, 12, train=False)))
    sub = next(iter(StoreLoader(val, 12, train=False, mean_subtract=True, mean=train.mean,
                                saliency_mean=train.saliency_mean)))
    mean = torch.tensor(train.mean, dtype=torch.float32).view(1, 3, 1, 1)
    assert torch.allclose(sub.image, plain.image - mean, atol=1e-6)
    assert torch.allclose(sub.saliency, plain.saliency - train.saliency_mean, atol=1e-6)
    with pytest.raises(UserError, match="one value per RGB channel"):
        StoreLoader(val, 12, train=False, mean=[0.5])


def test_saliency_requests(tiny_store_no_saliency, tiny_store):
    with pytest.raises(UserError, match="saliency"):
        StoreLoader(tiny_store_no_saliency / "train", 8, train=True)
    b = next(iter(StoreLoader(tiny_store_no_saliency / "train", 8, train=True, with_saliency=False)))
    assert b.saliency is None and b.image.dtype == torch.float32 and b.label.dtype == torch.int64
    b = next(iter(StoreLoader(tiny_store / "train", 8, train=True, crop=144)))
    assert b.image.shape[-1] == 144
    with pytest.raises(UserError):
        StoreLoader(tiny_store / "train", 8, train=True, crop=200)
    assert (default_crop(144), default_crop(256), default_crop(64)) == (128, 227, 64)


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_the_caller_keeps_are_never_reused(tiny_store, workers):
    # The loader recycles its arrays once nothing refers to them; batches still held must keep their pixels.
    loader = StoreLoader(tiny_store / "train", 8, train=True, seed=5, workers=workers)
    kept = list(loader)
    views = [b.image[:, 1:] for b in loader]  # a view alone keeps its batch's memory too
    expect = _collect(StoreLoader(tiny_store / "train", 8, train=True, seed=5))
    assert len(kept) == len(expect) > 3
    for batch, view, ref in zip(kept, views, expect):
        assert all(torch.equal(t, u) for t, u in zip(batch, ref))
        assert torch.equal(view, ref[0][:, 1:])


def test_loading_leaves_the_global_rng_alone(tiny_store):
    # Training relies on it: dropout draws from that generator, and a resumed run must draw the same.
    state = torch.get_rng_state()
    for workers in (0, 2):
        list(StoreLoader(tiny_store / "train", 8, train=True, workers=workers))
    assert torch.equal(torch.get_rng_state(), state)


def test_a_worker_error_reaches_the_caller_and_threads_stop(tiny_store, monkeypatch):
    import threading

    from salclass.data import loader as loader_module

    before = threading.active_count()
    make = loader_module._BatchSource.make

    def broken(self, epoch, i, pool):
        if i == 3:
            raise OSError("disk went away")
        return make(self, epoch, i, pool)

    monkeypatch.setattr(loader_module._BatchSource, "make", broken)
    loader = StoreLoader(tiny_store / "train", 8, train=True, workers=2)
    seen = 0
    with pytest.raises(OSError, match="disk went away"):
        for _ in loader:
            seen += 1
    assert seen == 3
    monkeypatch.setattr(loader_module._BatchSource, "make", make)
    it = iter(loader)
    next(it)
    it.close()  # a caller that stops early
    assert threading.active_count() == before


def test_negative_workers_is_a_user_error(tiny_store):
    with pytest.raises(UserError, match="workers"):
        StoreLoader(tiny_store / "train", 8, train=True, workers=-1)
