"""Registry, the map controls (constant and centre bias) and bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from models_layout import ALL, CONTROLS
from salclass.errors import UserError
from salclass.models import BLOCK_ORDERS, Spec, create, describe_models, list_models, register
from salclass.models import registry


def _pair(seed: int, batch: int = 2, size: int = 128):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g), torch.rand(batch, 1, size, size, generator=g)


def test_names_and_descriptions():
    names = list_models()
    assert sorted(names) == sorted(ALL)
    described = dict(describe_models())
    assert list(described) == names
    assert all(described[n] and described[n] != n for n in names)
    assert all("constant" in described[n + "-const"] for n in CONTROLS)
    assert all("centre bias" in described[n + "-centre"] for n in CONTROLS)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UserError) as e:
        create("AlexNet2", 10)
    msg = str(e.value)
    assert "AlexNet2" in msg and all(n in msg for n in ALL) and "\n" not in msg
    with pytest.raises(UserError, match="unknown model 'RGB-const'"):
        create("RGB-const", 10)


def test_thesis_spellings_find_the_variant():
    assert create("RGB-1S-2S", 3).variant == "RGB_1S2S"
    assert create("Fan-in3", 3).variant == "FanIn3"
    assert create("fanin1-CONST", 3).variant == "FanIn1-const"
    assert create("Fan-in3-Centre", 3).variant == "FanIn3-centre"


@pytest.mark.parametrize("block_order", list(BLOCK_ORDERS))
@pytest.mark.parametrize("name", CONTROLS)
def test_constant_map_control_ignores_the_map(name, block_order):
    torch.manual_seed(0)
    control = create(name + "-const", 4, dropout=0.0, block_order=block_order).eval()
    real = create(name, 4, dropout=0.0, block_order=block_order).eval()
    real.load_state_dict(control.state_dict())  # same network, same parameters
    assert control.uses_saliency is False and real.uses_saliency is True
    image, sal = _pair(1)
    _, other = _pair(2)
    with torch.no_grad():
        a, b, c = control(image, sal), control(image, other), control(image, None)
        assert torch.equal(a, b) and torch.equal(a, c)
        # the control is the real network fed the constant map
        assert torch.equal(a, real(image, torch.full_like(sal, 0.5)))
        # while the real variant does read the map
        assert not torch.equal(real(image, sal), real(image, other))


@pytest.mark.parametrize("name", CONTROLS)
def test_centre_bias_control_is_the_network_fed_the_fitted_centre_bias(name):
    from salclass.centre_bias import centre_bias_map
    from salclass.saliency.models.baselines import CentreBias

    torch.manual_seed(0)
    control = create(name + "-centre", 4, dropout=0.0).eval()
    real = create(name, 4, dropout=0.0).eval()
    real.load_state_dict(control.state_dict())  # same network, same parameters
    assert control.uses_saliency is False
    image, sal = _pair(5)
    fitted = CentreBias()
    m = centre_bias_map(128, 128, fitted.sigma_x, fitted.sigma_y)
    centre = torch.from_numpy(m / m.max()).float().expand(2, 1, 128, 128)  # maximum 1, as the stored maps are
    assert centre[0, 0, 63, 64] == 1.0 and centre[0, 0, 0, 0] < 0.05  # peaked on the middle
    with torch.no_grad():
        a = control(image, sal)
        assert torch.equal(a, control(image, None))
        assert torch.equal(a, real(image, centre))
        assert not torch.equal(a, real(image, torch.full_like(sal, 0.5)))


def test_the_centre_control_runs_without_the_saliency_package():
    """The classifiers take the centre bias from the floor (`salclass.centre_bias`), never from saliency models."""
    code = ("import sys, torch; from salclass.models import create; "
            "create('RGBS-centre', 4, dropout=0.0).eval()(torch.rand(1, 3, 128, 128)); "
            "print(sorted(m for m in sys.modules if m.startswith('salclass.saliency')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("block_order", list(BLOCK_ORDERS))
@pytest.mark.parametrize("name", ["FanIn1", "FanIn2", "FanIn3"])
def test_fan_in_control_keeps_the_image_path_alive_in_training(name, block_order):
    # a constant map gives each branch BN zero batch variance; the branch must not emit 0
    torch.manual_seed(0)
    control = create(name + "-const", 4, dropout=0.0, block_order=block_order).train()
    (a, _), (b, _) = _pair(7), _pair(8)
    with torch.no_grad():
        assert not torch.allclose(control(a), control(b))
    loss = control(a).logsumexp(1).sum()
    loss.backward()
    assert control.conv1.weight.grad.abs().max() > 0


def test_constant_value_is_set_at_creation():
    torch.manual_seed(0)
    a = create("RGBS-const", 4, const_value=0.5).eval()
    b = create("RGBS-const", 4, const_value=0.9).eval()
    b.load_state_dict(a.state_dict())
    image, _ = _pair(3)
    with torch.no_grad():
        assert not torch.equal(a(image), b(image))


def test_saliency_free_variants_ignore_the_map():
    torch.manual_seed(0)
    for name in ("RGB", "FanIn3_noS"):
        m = create(name, 4).eval()
        assert m.uses_saliency is False
        image, sal = _pair(4)
        with torch.no_grad():
            assert torch.equal(m(image, sal), m(image, None))


def test_bad_input_is_a_user_error():
    m = create("RGBS", 4)
    image, sal = _pair(5)
    with pytest.raises(UserError, match="needs a saliency map"):
        m(image)
    with pytest.raises(UserError, match="does not match"):
        m(image, sal[:, :, :64])
    with pytest.raises(UserError, match="takes images"):
        m(torch.rand(2, 3, 100, 100), torch.rand(2, 1, 100, 100))
    with pytest.raises(UserError, match="too small"):
        create("RGB", 4, input_size=64)
    with pytest.raises(UserError, match="dropout"):
        create("RGB", 4, dropout=1.0)
    with pytest.raises(UserError, match="num_classes"):
        create("RGB", 0)


def test_a_new_variant_is_one_small_function(monkeypatch):
    monkeypatch.setattr(registry, "_VARIANTS", dict(registry._VARIANTS))

    @register("RGBS_1xS")
    def _mine() -> Spec:
        """map as 4th channel and multiplied into the conv1 output"""
        return Spec(input="concat", conv1="mul")

    assert "RGBS_1xS" in list_models() and "RGBS_1xS-const" in list_models()
    assert dict(describe_models())["RGBS_1xS"] == "map as 4th channel and multiplied into the conv1 output"
    m = create("RGBS_1xS", 3)
    assert m.conv1.in_channels == 4 and m.uses_saliency
    with pytest.raises(ValueError, match="already registered"):
        register("rgbs")(lambda: Spec(input="concat"))


def test_invalid_spec_is_refused():
    with pytest.raises(ValueError):
        Spec(input="add")
    with pytest.raises(ValueError):
        Spec(branch=2, skip_conv2=True)
    with pytest.raises(ValueError):
        Spec(branch=1, conv1="concat")


def test_layers_can_be_hooked_by_name():
    m = create("FanIn1", 4).eval()
    seen = {}
    for layer in ("relu3", "conv3", "sal_pool2", "bn1"):
        m.get_submodule(layer).register_forward_hook(lambda mod, a, o, layer=layer: seen.__setitem__(layer, o))
    with torch.no_grad():
        m(*_pair(6))
    assert set(seen) == {"relu3", "conv3", "sal_pool2", "bn1"}
    assert torch.equal(seen["relu3"], seen["conv3"].clamp(min=0))


def test_models_command_lists_every_variant(run_cli):
    code, out, _ = run_cli("models")
    assert code == 0
    variants, orders = out.split("\n\n")
    assert [line.split()[0] for line in variants.splitlines()] == list_models()
    assert [line.split()[0] for line in orders.splitlines()[1:]] == list(BLOCK_ORDERS)
    assert "relu-bn" in orders.splitlines()[1] and "default" in orders.splitlines()[1]
