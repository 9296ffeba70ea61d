"""The block order of conv1, conv2 and the fan-in branches, and what mean subtraction does in each.

With BN right after the convolution, a constant shift of the input (or of a map)
moves every pre-BN activation by a per-channel constant that training-mode BN
removes exactly, so nothing downstream changes. With the thesis's order the ReLU
comes first and the shift is a real change.
"""

from __future__ import annotations

import pytest
import torch

from salclass.models import BLOCK_ORDERS, DEFAULT_BLOCK_ORDER, create
from salclass.errors import UserError

# Thesis variants that read the map in each way a map can enter (input, after conv1/conv2, a branch).
VARIANTS = ["RGB", "RGBS", "RGB_1S2S", "RGBS_1S2S", "RGBxS", "FanIn1", "FanIn3"]


def _batch(seed: int = 0, n: int = 4):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 128, 128, generator=g, dtype=torch.float64),
            torch.rand(n, 1, 128, 128, generator=g, dtype=torch.float64),
            torch.randint(0, 5, (n,), generator=g))


def _output_and_grads(name: str, order: str, shift_image: float, shift_map: float):
    torch.manual_seed(0)
    m = create(name, 5, dropout=0.0, block_order=order).double().train()
    image, sal, label = _batch()
    logits = m(image - shift_image, sal - shift_map)
    torch.nn.functional.cross_entropy(logits, label).backward()
    grads = {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}
    return logits.detach(), grads


def test_the_default_is_the_thesis_order():
    from salclass.study.config import StudyConfig
    from salclass.training import TrainConfig

    assert DEFAULT_BLOCK_ORDER == "relu-bn"
    assert create("RGB", 5).block_order == "relu-bn"
    assert TrainConfig(store="s", out="o").block_order == "relu-bn"
    assert StudyConfig.__dataclass_fields__["block_order"].default == "relu-bn"


@pytest.mark.parametrize("name", VARIANTS)
def test_mean_subtraction_changes_outputs_and_gradients_in_the_thesis_order(name):
    # RGB (no map) shifts the image only; the others shift image and map, as the thesis's mean subtraction did.
    shift_map = 0.0 if name == "RGB" else 0.3
    out, grads = _output_and_grads(name, "relu-bn", 0.0, 0.0)
    out_s, grads_s = _output_and_grads(name, "relu-bn", 0.45, shift_map)
    assert (out - out_s).abs().max() > 1e-3
    assert max(float((grads[k] - grads_s[k]).abs().max()) for k in grads) > 1e-3


# A multiplied map is not a shift: x * (s - m) changes the input in either order.
@pytest.mark.parametrize("name", [v for v in VARIANTS if v != "RGBxS"])
def test_mean_subtraction_is_a_no_op_with_bn_first(name):
    shift_map = 0.0 if name == "RGB" else 0.3
    out, grads = _output_and_grads(name, "bn-relu", 0.0, 0.0)
    out_s, grads_s = _output_and_grads(name, "bn-relu", 0.45, shift_map)
    assert torch.allclose(out, out_s, rtol=0, atol=1e-9)
    for k in grads:
        # BN removes the shift from the forward pass, and the conv weights' gradients
        # (sum over positions of input * upstream gradient) lose it too: BN's upstream gradient sums to 0.
        assert torch.allclose(grads[k], grads_s[k], rtol=0, atol=1e-9), k


def _seen(m: torch.nn.Module, names: list[str]):
    ins, outs = {}, {}

    def keep(name):
        def hook(module, args, output):
            ins[name], outs[name] = args[0], output
        return hook

    for n in names:
        m.get_submodule(n).register_forward_hook(keep(n))
    return ins, outs


def test_thesis_order_puts_relu_before_bn_and_the_map_after_the_relu():
    torch.manual_seed(0)
    m = create("RGB_1S2S", 5, block_order="relu-bn").double().eval()
    ins, outs = _seen(m, ["relu1", "bn1", "pool1", "relu2", "bn2"])
    image, sal, _ = _batch(1)
    with torch.no_grad():
        m(image, sal)
    small = torch.nn.functional.adaptive_avg_pool2d(sal, outs["relu1"].shape[-2:])
    assert torch.equal(ins["bn1"], torch.cat([outs["relu1"], small], 1))  # conv -> ReLU -> map -> BN
    assert torch.equal(ins["pool1"], outs["bn1"])
    assert (ins["bn2"][:, :256] >= 0).all() and torch.equal(ins["bn2"][:, :256], outs["relu2"])


def test_bn_first_order_keeps_the_old_layout():
    torch.manual_seed(0)
    m = create("FanIn2", 5, block_order="bn-relu").double().eval()
    ins, outs = _seen(m, ["bn1", "relu1", "sal_bn1", "sal_relu1"])
    image, sal, _ = _batch(2)
    with torch.no_grad():
        m(image, sal)
    assert torch.equal(ins["relu1"], outs["bn1"]) and torch.equal(ins["sal_relu1"], outs["sal_bn1"])


def test_fan_in_branch_follows_the_block_order():
    torch.manual_seed(0)
    m = create("FanIn1", 5, block_order="relu-bn").double().eval()
    ins, outs = _seen(m, ["sal_relu1", "sal_bn1", "sal_relu2", "sal_bn2"])
    image, sal, _ = _batch(3)
    with torch.no_grad():
        m(image, sal)
    assert torch.equal(ins["sal_bn1"], outs["sal_relu1"]) and torch.equal(ins["sal_bn2"], outs["sal_relu2"])


def test_both_orders_have_the_same_parameters():
    for name in VARIANTS:
        a, b = (create(name, 5, block_order=o) for o in BLOCK_ORDERS)
        assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_unknown_order_is_a_user_error():
    with pytest.raises(UserError, match="block_order"):
        create("RGB", 5, block_order="bn-bn")
