"""Weight surgery: a trained baseline loaded into a variant that takes the map in more places.

Every test that uses the `base` fixture runs in both block orders."""

from __future__ import annotations

import pytest
import torch

from salclass.errors import UserError
from salclass.models import BLOCK_ORDERS, create, transplant

CLASSES = 5


def _trained_like(name: str = "RGB", seed: int = 0, dtype=torch.float64, block_order: str = "relu-bn"
                  ) -> torch.nn.Module:
    """A model whose BN layers hold non-trivial state, as after training (float64 for exact comparisons)."""
    torch.manual_seed(seed)
    m = create(name, CLASSES, block_order=block_order).to(dtype)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            n = mod.num_features
            mod.weight.data = torch.rand(n, dtype=dtype) + 0.5
            mod.bias.data = torch.randn(n, dtype=dtype)
            mod.running_mean = torch.randn(n, dtype=dtype)
            mod.running_var = torch.rand(n, dtype=dtype) + 0.5
            mod.num_batches_tracked.fill_(1234)
    return m.eval()


def _inputs(seed: int, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, 128, 128, generator=g, dtype=torch.float64),
            torch.rand(batch, 1, 128, 128, generator=g, dtype=torch.float64))


@pytest.fixture(scope="module", params=list(BLOCK_ORDERS))
def base(request) -> torch.nn.Module:
    return _trained_like(block_order=request.param)


def _grown(name: str, init: str, base: torch.nn.Module, seed: int = 0):
    dst = create(name, CLASSES, block_order=base.block_order).to(next(base.parameters()).dtype)
    report = transplant(base.state_dict(), dst, init=init, seed=seed)
    return base, dst.eval(), report


@pytest.mark.parametrize("name", ["RGBS", "RGB_1S2S", "RGBS_1S2S", "FanIn1", "FanIn2"])
def test_zero_new_weights_reproduce_the_baseline(name, base):
    _, grown, _ = _grown(name, "zeros", base)
    image, sal = _inputs(1)
    _, other_sal = _inputs(2)
    with torch.no_grad():
        want = base(image)
        got = grown(image, sal)
        got_other = grown(image, other_sal)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    assert torch.allclose(got_other, want, rtol=0, atol=1e-12)
    assert want.abs().max() > 1e-3  # the comparison is not between two near-zero outputs


@pytest.mark.parametrize("name", ["RGBS", "RGB_1S2S", "RGBS_1S2S", "FanIn1", "FanIn2"])
@pytest.mark.parametrize("init", ["uniform", "default"])
def test_nonzero_new_weights_let_the_map_change_the_logits(name, init, base):
    _, grown, _ = _grown(name, init, base)
    image, sal = _inputs(1)
    _, other_sal = _inputs(2)
    with torch.no_grad():
        a, b = grown(image, sal), grown(image, other_sal)
    assert (a - b).abs().max() > 1e-6


def test_report_and_new_slices_rgb_1s2s(base):
    _, grown, report = _grown("RGB_1S2S", "uniform", base, seed=3)
    extended = {name: (old, new) for name, old, new in report.extended}
    assert extended == {
        "bn1.weight": ((96,), (97,)), "bn1.bias": ((96,), (97,)),
        "bn1.running_mean": ((96,), (97,)), "bn1.running_var": ((96,), (97,)),
        "conv2.weight": ((256, 96, 5, 5), (256, 97, 5, 5)),
        "bn2.weight": ((256,), (257,)), "bn2.bias": ((256,), (257,)),
        "bn2.running_mean": ((256,), (257,)), "bn2.running_var": ((256,), (257,)),
        "conv3.weight": ((384, 256, 3, 3), (384, 257, 3, 3)),
    }
    assert report.initialised == []
    src, dst = base.state_dict(), grown.state_dict()
    assert set(report.copied) | set(extended) == set(dst)
    for key in report.copied:
        assert torch.equal(src[key], dst[key]), key
    # old slices kept, new ones from U[0, 1) (the thesis's choice)
    assert torch.equal(dst["conv2.weight"][:, :96], src["conv2.weight"])
    new = dst["conv2.weight"][:, 96:]
    assert new.min() >= 0 and new.max() < 1 and new.std() > 0.2
    assert torch.equal(dst["bn1.weight"][:96], src["bn1.weight"])
    assert 0 <= dst["bn1.weight"][96] < 1 and 0 <= dst["bn1.bias"][96] < 1
    # a new BN channel starts with the running statistics of a fresh layer
    assert dst["bn1.running_mean"][96] == 0 and dst["bn1.running_var"][96] == 1
    assert dst["bn1.num_batches_tracked"] == 1234
    text = str(report)
    assert "conv2.weight [256, 96, 5, 5] -> [256, 97, 5, 5]" in text and "uniform" in text


def test_zeros_values_and_default_range(base):
    _, grown, _ = _grown("RGBS", "zeros", base)
    sd = grown.state_dict()
    assert torch.count_nonzero(sd["conv1.weight"][:, 3]) == 0
    _, grown, report = _grown("FanIn1", "zeros", base)
    sd = grown.state_dict()
    assert sorted(report.initialised) == sorted(
        f"sal_{layer}.{t}" for layer, ts in [("conv1", ["weight", "bias"]), ("conv2", ["weight", "bias"]),
                                              ("bn1", ["weight", "bias", "running_mean", "running_var",
                                                       "num_batches_tracked"]),
                                              ("bn2", ["weight", "bias", "running_mean", "running_var",
                                                       "num_batches_tracked"])] for t in ts)
    assert torch.count_nonzero(sd["sal_conv2.weight"]) == 0
    assert torch.all(sd["sal_bn2.weight"] == 1) and torch.all(sd["sal_bn2.bias"] == 1)
    _, grown, _ = _grown("RGBS", "default", base, seed=5)
    new = grown.state_dict()["conv1.weight"][:, 3]
    bound = 1 / (4 * 11 * 11) ** 0.5  # PyTorch's default: U(+-1/sqrt(fan_in)) for the whole 4-channel layer
    assert new.abs().max() <= bound and new.abs().max() > bound / 2


def test_seeded(base):
    w = [_grown("RGBS_1S2S", "uniform", base, seed=s)[1].state_dict()["conv3.weight"] for s in (7, 7, 8)]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])


def test_multiplying_variants_copy_everything(base):
    _, grown, report = _grown("RGB_1xS2xS", "uniform", base)
    assert report.extended == [] and report.initialised == []
    assert len(report.copied) == len(grown.state_dict())


def test_wrapper_prefix_is_removed(base):
    wrapped = {"module." + k: v for k, v in base.state_dict().items()}
    report = transplant(wrapped, create("RGBS", CLASSES).double(), init="zeros")
    assert "conv2.weight" in report.copied


def _meta(name: str, **kw) -> torch.nn.Module:
    # Only the shapes matter when surgery must refuse: build the destination without memory.
    with torch.device("meta"):
        return create(name, kw.pop("classes", CLASSES), **kw)


def test_bad_sources_are_user_errors(base):
    sd = base.state_dict()
    with pytest.raises(UserError, match="fc8.weight"):
        transplant(sd, _meta("RGBS", classes=CLASSES + 1))
    with pytest.raises(UserError, match="lacks .*conv2.weight"):
        transplant(sd, _meta("FanIn3"))
    with pytest.raises(UserError, match="lacks"):
        transplant(_trained_like("FanIn1").state_dict(), _meta("RGB"))
    with pytest.raises(UserError, match="conv1.weight"):
        transplant(_trained_like("RGBS").state_dict(), _meta("RGB"))
    with pytest.raises(UserError, match="fc6.weight"):
        transplant(sd, _meta("RGBS", input_size=227))
    with pytest.raises(UserError, match="valid: uniform"):
        transplant(sd, _meta("RGBS"), init="normal")
    with pytest.raises(UserError, match="state dict"):
        transplant({"conv1.weight": [1, 2]}, _meta("RGBS"))


@pytest.mark.parametrize("block_order", list(BLOCK_ORDERS))
def test_fanin3_grows_from_its_image_path(block_order):
    # float32 keeps FanIn3's 37.7M-weight fc6 small; a branch that emits exactly 1 changes no bit
    image_path = _trained_like("FanIn3_noS", dtype=torch.float32, block_order=block_order)
    _, grown, report = _grown("FanIn3", "zeros", image_path)
    assert all(k.startswith("sal_") for k in report.initialised) and report.extended == []
    image, sal = (t.float() for t in _inputs(4))
    with torch.no_grad():
        assert torch.equal(grown(image, sal), image_path(image))
