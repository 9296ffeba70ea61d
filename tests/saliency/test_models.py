"""Saliency models: registry, the predictor wrapper, SalNet's published shapes, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salclass.errors import UserError
from salclass.io import atomic_torch_save
from salclass.saliency import load_predictor
from salclass.saliency.models import CHECKPOINT_TYPE, create, list_models, load_model, model_checkpoint, register
from salclass.saliency.models.base import SaliencyModel


def test_registry_knows_every_family_and_rejects_unknown_names():
    names = list_models()
    for n in ("centre_bias", "spectral_residual", "image_signature", "salnet_deep", "salnet_shallow", "fcn"):
        assert n in names
    with pytest.raises(UserError, match="unknown saliency model 'nope'"):
        create("nope")
    with pytest.raises(RuntimeError, match="registered twice"):
        register("fcn")(type("Other", (SaliencyModel,), {}))


@pytest.mark.parametrize("name", ["centre_bias", "spectral_residual", "image_signature"])
def test_weight_free_models_map_any_image(name):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 37, 53, 3), dtype=np.uint8)
    maps = load_predictor(name, batch_size=2).predict(images)
    assert maps.shape == (3, 37, 53) and maps.dtype == np.float32
    np.testing.assert_allclose(maps.max(axis=(1, 2)), 1.0, rtol=1e-6)
    assert maps.min() >= 0


def test_centre_bias_peaks_in_the_centre_and_ignores_content():
    p = load_predictor("centre_bias")
    a = p.predict(np.zeros((1, 60, 80, 3), np.uint8))[0]
    b = p.predict(np.full((1, 60, 80, 3), 200, np.uint8))[0]
    np.testing.assert_allclose(a, b)
    assert np.unravel_index(a.argmax(), a.shape) in {(29, 39), (29, 40), (30, 39), (30, 40)}
    assert a[0, 0] < 0.1


def test_bottom_up_model_finds_an_odd_patch():
    img = np.full((1, 96, 128, 3), 120, np.uint8)
    img[0, 20:32, 90:102] = (250, 20, 20)
    for name in ("spectral_residual", "image_signature"):
        m = load_predictor(name).predict(img)[0]
        assert m[20:32, 90:102].mean() > 3 * m[60:90, 10:50].mean(), name


def test_predictor_rejects_bad_input_in_one_line():
    p = load_predictor("centre_bias")
    for bad in (np.zeros((2, 10, 10), np.uint8), np.zeros((1, 10, 10, 3), np.float32),
                np.zeros((1, 10, 10, 4), np.uint8), [[1, 2]]):
        with pytest.raises(UserError, match="uint8 images of shape"):
            p.predict(bad)


def _train_step(model, x):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    out = model(x)
    target = torch.rand(out.shape)
    target = target / target.flatten(1).sum(1).view(-1, 1, 1)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model.loss(out, target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    return out


def test_salnet_deep_builds_to_the_published_sizes_and_trains():
    torch.manual_seed(0)
    m = create("salnet_deep")
    convs = [c for c in m.features if isinstance(c, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0]) for c in convs] == [
        (96, 7), (256, 5), (512, 3), (512, 5), (512, 5), (256, 7), (128, 11), (32, 11), (1, 13)]
    assert m.deconv.stride == (4, 4)
    assert m.input_size(600, 800) == (240, 320)
    out = _train_step(m.train(), torch.rand(1, 3, 240, 320))
    assert out.shape == (1, 236, 316) == (1, *m.target_size(240, 320))


def test_salnet_shallow_builds_to_the_published_sizes_and_trains():
    torch.manual_seed(0)
    m = create("salnet_shallow")
    assert [c.out_channels for c in m.features if isinstance(c, torch.nn.Conv2d)] == [32, 64, 64]
    assert m.hidden.out_features == 2 * 48 * 48 and m.output.out_features == 48 * 48
    out = _train_step(m.train(), torch.rand(2, 3, 96, 96))
    assert out.shape == (2, 48, 48)


def test_fcn_is_compact_and_predicts_a_distribution():
    torch.manual_seed(0)
    m = create("fcn")
    assert 0.2e6 < sum(p.numel() for p in m.parameters()) < 0.4e6
    assert m.input_size(600, 800) == (144, 192)
    out = _train_step(m.train(), torch.rand(2, 3, 144, 192))
    assert out.shape == (2, 36, 48)
    np.testing.assert_allclose(out.exp().flatten(1).sum(1).detach().numpy(), 1.0, rtol=1e-5)


def test_default_predictor_is_the_shipped_network():
    p = load_predictor("default")
    assert p.name == "default (ensemble)"
    rng = np.random.default_rng(1)
    maps = p.predict(rng.integers(0, 256, (2, 144, 144, 3), dtype=np.uint8))
    assert maps.shape == (2, 144, 144)
    np.testing.assert_allclose(maps.max(axis=(1, 2)), 1.0, rtol=1e-6)


def test_checkpoints_load_and_bad_ones_are_one_line_errors(tmp_path):
    torch.manual_seed(0)
    m = create("fcn", width=8, area=48 * 64)
    good = tmp_path / "good.pt"
    atomic_torch_save(model_checkpoint(m), good)
    loaded, _ = load_model(good)
    for k, v in m.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    img = np.random.default_rng(2).integers(0, 256, (1, 60, 80, 3), dtype=np.uint8)
    assert load_predictor(good).predict(img).shape == (1, 60, 80)

    wrong_type = tmp_path / "classifier.pt"
    atomic_torch_save({"type": "salclass.classifier", "version": 1}, wrong_type)
    with pytest.raises(UserError, match="expected 'salclass.saliency_model'"):
        load_predictor(wrong_type)

    ck = model_checkpoint(m)
    ck["settings"] = {"width": 16, "area": 48 * 64, "prior_size": [9, 12]}
    wrong_arch = tmp_path / "wrong.pt"
    atomic_torch_save(ck, wrong_arch)
    with pytest.raises(UserError, match="do not fit architecture 'fcn'"):
        load_predictor(wrong_arch)

    ck = model_checkpoint(m)
    ck["architecture"] = "alexnet"
    atomic_torch_save(ck, wrong_arch)
    with pytest.raises(UserError, match="unknown saliency architecture 'alexnet'"):
        load_predictor(wrong_arch)

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_predictor(junk)
    with pytest.raises(UserError, match="needs trained weights"):
        load_predictor("salnet_deep")
    assert CHECKPOINT_TYPE == "salclass.saliency_model"


def test_stored_centre_bias_widths_are_what_the_fit_gives(osie_root):
    from salclass.centre_bias import read_fitted
    from salclass.saliency.models.baselines import fit_centre_bias

    fitted, stored = fit_centre_bias(osie_root), read_fitted()
    assert fitted["sigma_x"] == pytest.approx(stored["sigma_x"], rel=1e-9)
    assert fitted["sigma_y"] == pytest.approx(stored["sigma_y"], rel=1e-9)
    assert 0.1 < stored["sigma_x"] < 0.4 and stored["images"] == 450


def test_fcn_with_the_centre_bias_as_a_fixed_prior(tmp_path):
    """prior=centre_bias: the fitted Gaussian's log on the prior grid, not a
    parameter (training cannot move it), kept and rebuilt by a checkpoint."""
    from salclass.centre_bias import read_fitted

    model = create("fcn", width=8, prior="centre_bias")
    assert "prior" not in dict(model.named_parameters()) and "prior" in model.state_dict()
    fitted = read_fitted()
    gx = ((np.arange(12) + 0.5) / 12 - 0.5) / fitted["sigma_x"]
    # Row 4 of 9 is the middle one, where the vertical term vanishes.
    np.testing.assert_allclose(model.prior[0, 0, 4].numpy(), -0.5 * gx ** 2,
                               rtol=1e-5, atol=1e-7)
    atomic_torch_save(model_checkpoint(model), tmp_path / "m.pt")
    loaded, _ = load_model(tmp_path / "m.pt")
    assert loaded.settings()["prior"] == "centre_bias" and torch.equal(loaded.prior, model.prior)
    assert "prior" in dict(create("fcn", width=8).named_parameters())
    with pytest.raises(UserError, match="prior must be"):
        create("fcn", prior="uniform")
