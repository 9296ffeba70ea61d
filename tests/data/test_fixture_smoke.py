import numpy as np

from salclass.data import Store


def test_tiny_store_has_maps_that_follow_the_image(tiny_store):
    s = Store.open(tiny_store / "train")
    assert (s.count, s.size, s.num_classes) == (72, 144, 3)
    assert s.has_saliency and s.saliency_model == "contrast"
    assert np.bincount(s.labels, minlength=3).tolist() == [24, 24, 24]
    # image-dependent: maps of different images differ, and each peaks at 255
    assert s.saliency.reshape(72, -1).max(axis=1).min() == 255
    assert not np.array_equal(s.saliency[0], s.saliency[1])
    v = Store.open(tiny_store / "val")
    assert v.count == 36 and v.has_saliency and 0 < v.saliency_mean < 1


def test_tiny_store_no_saliency(tiny_store_no_saliency):
    s = Store.open(tiny_store_no_saliency / "train")
    assert s.count == 72 and not s.has_saliency and s.saliency is None
