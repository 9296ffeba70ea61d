"""The ensemble saliency model: the mean of its members' densities, saved and loaded as one checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salclass.centre_bias import centre_bias_map
from salclass.errors import UserError
from salclass.io import atomic_torch_save
from salclass.saliency.evaluate import weight_free_models
from salclass.saliency.models import Predictor, create, load_model, load_predictor, model_checkpoint
from salclass.saliency.models.baselines import CentreBias
from salclass.saliency.models.ensemble import combine


def _member(tmp_path, seed: int, width: int = 8, **settings):
    torch.manual_seed(seed)
    m = create("fcn", width=width, **{"area": 48 * 64, **settings})
    for p in m.parameters():  # fresh readouts are nearly flat; make the members disagree
        p.data.add_(0.3 * torch.randn_like(p))
    path = tmp_path / f"m{seed}-{width}-{len(settings)}.pt"
    atomic_torch_save(model_checkpoint(m), path)
    return path, m.eval()


def test_ensemble_is_the_mean_of_its_members_densities(tmp_path):
    # Members may differ in settings that keep the input size: here width and the kind of prior.
    (a, ma), (b, mb) = _member(tmp_path, 0), _member(tmp_path, 1, width=12, prior="centre_bias")
    ens = combine([a, b])
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        da, db, de = ma.raw(x), mb.raw(x), ens.raw(x)
    assert not torch.allclose(da, db, atol=1e-6)
    torch.testing.assert_close(de, (da + db) / 2, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(de.flatten(1).sum(1), torch.ones(2))

    saved = tmp_path / "ens.pt"
    atomic_torch_save(model_checkpoint(ens), saved)
    loaded, _ = load_model(saved)
    assert loaded.settings() == {"architecture": "fcn", "member_settings": [ma.settings(), mb.settings()],
                                 "members": 2, "centre_weight": 0.0}
    img = np.random.default_rng(0).integers(0, 256, (1, 60, 80, 3), dtype=np.uint8)
    np.testing.assert_array_equal(load_predictor(saved).predict(img), Predictor(combine([a, b]), "e").predict(img))
    with torch.no_grad():
        torch.testing.assert_close(loaded.raw(x), de)


def test_ensemble_refuses_what_it_cannot_average(tmp_path, run_cli):
    (a, _), (c, _) = _member(tmp_path, 0), _member(tmp_path, 2, area=96 * 128)
    with pytest.raises(UserError, match="share one architecture and input size"):
        combine([a, c])
    with pytest.raises(UserError, match="at least 2 models"):
        combine([a])
    assert load_predictor("ensemble").model.settings()["members"] == 6  # by name: the shipped file
    single = load_predictor("fcn").model.state_dict()  # the fast single net shipped beside it: one of the six

    def same(member) -> bool:
        theirs = member.state_dict()
        return theirs.keys() == single.keys() and all(torch.equal(theirs[k], v) for k, v in single.items())

    assert any(same(m) for m in load_predictor("ensemble").model.members)
    with pytest.raises(UserError, match="needs trained weights.*salclass saliency train --model salnet_shallow"):
        load_predictor("salnet_shallow")
    assert "ensemble" not in weight_free_models()

    (b, _) = _member(tmp_path, 1)
    out = tmp_path / "e.pt"
    code, stdout, err = run_cli("saliency", "ensemble", str(a), str(b), "--out", str(out))
    assert code == 0 and out.is_file() and "ensemble of 2 'fcn' models" in stdout
    before = out.read_bytes()
    code, _, err = run_cli("saliency", "ensemble", str(a), str(b), "--out", str(out))
    assert code == 2 and "exists" in err and out.read_bytes() == before
    code, _, err = run_cli("saliency", "ensemble", str(out), str(a), "--out", str(tmp_path / "f.pt"))
    assert code == 2 and "is an ensemble already" in err and "Traceback" not in err
    code, _, err = run_cli("saliency", "ensemble", str(a), str(tmp_path / "missing.pt"), "--out", str(tmp_path / "g.pt"))
    assert code == 2 and "checkpoint not found" in err


def test_ensemble_mixes_in_the_fitted_centre_bias(tmp_path, run_cli):
    (a, ma), (b, mb) = _member(tmp_path, 0), _member(tmp_path, 1)
    x = torch.rand(2, 3, 48, 64)
    mixed = combine([a, b], centre_weight=0.25)
    with torch.no_grad():
        mean, got = (ma.raw(x) + mb.raw(x)) / 2, mixed.raw(x)
    h, w = mean.shape[-2:]
    fitted = CentreBias()
    centre = torch.from_numpy(centre_bias_map(h, w, fitted.sigma_x, fitted.sigma_y)).float()
    assert centre[h // 2, w // 2] == centre.max() > 10 * centre[0, 0]  # a Gaussian on the centre, not a flat map
    torch.testing.assert_close(got, 0.75 * mean + 0.25 * centre / centre.sum(), rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(got.flatten(1).sum(1), torch.ones(2))

    out = tmp_path / "mixed.pt"
    code, stdout, _ = run_cli("saliency", "ensemble", str(a), str(b), "--centre-weight", "0.25", "--out", str(out))
    assert code == 0 and "mixed with the centre bias at 0.25" in stdout
    loaded, _ = load_model(out)
    assert loaded.settings()["centre_weight"] == 0.25
    with torch.no_grad():
        torch.testing.assert_close(loaded.raw(x), got)
    for bad in ("1", "-0.1", "nan"):
        code, _, err = run_cli("saliency", "ensemble", str(a), str(b), "--centre-weight", bad,
                               "--out", str(tmp_path / f"bad{bad}.pt"))
        assert code == 2 and "--centre-weight must be at least 0 and below 1" in err and "Traceback" not in err
        assert not (tmp_path / f"bad{bad}.pt").exists()
