"""Output shape of every layer of every variant, against table 3.2 worked out by hand."""

from __future__ import annotations

import pytest
import torch

from models_layout import ALL, CLASSES, expected_shapes
from salclass.models import BLOCK_ORDERS, create, list_models

BATCH = 2


def test_every_variant_is_covered():
    assert sorted(list_models()) == sorted(ALL)


def test_table_3_2_literally():
    out, ins = expected_shapes("RGB", 128)
    assert ins["conv1"] == 3
    assert out["conv1"] == (96, 30, 30) and out["bn1"] == (96, 30, 30) and out["pool1"] == (96, 14, 14)
    assert out["conv2"] == (256, 10, 10) and out["bn2"] == (256, 10, 10) and out["pool2"] == (256, 4, 4)
    assert out["conv3"] == (384, 4, 4) and out["conv4"] == (384, 4, 4) and out["conv5"] == (256, 4, 4)
    assert out["pool5"] == (256, 1, 1)  # the table's "384 x 1 x 1" is a typo: conv5 has 256 filters
    assert out["fc6"] == out["fc7"] == (4096,)


def _record(model: torch.nn.Module) -> tuple[dict, dict]:
    outs, ins = {}, {}
    for name, mod in model.named_modules():
        if name:
            mod.register_forward_hook(lambda m, a, o, name=name: outs.__setitem__(name, tuple(o.shape)))
            mod.register_forward_pre_hook(lambda m, a, name=name: ins.__setitem__(name, tuple(a[0].shape)))
    return outs, ins


@pytest.mark.parametrize("block_order", list(BLOCK_ORDERS))
@pytest.mark.parametrize("size", [128, 227])
@pytest.mark.parametrize("name", ALL)
def test_layer_shapes(name, size, block_order):
    # 227 runs on the meta device: the real shape rules of every op, without
    # allocating FanIn3's 177M-parameter fc6 on a shared 2-core machine.
    device = "cpu" if size == 128 else "meta"
    with torch.device(device):
        model = create(name, CLASSES, input_size=size, block_order=block_order).eval()
    outs, ins = _record(model)
    image = torch.rand(BATCH, 3, size, size, device=device)
    saliency = torch.rand(BATCH, 1, size, size, device=device)
    with torch.no_grad():
        logits = model(image, saliency)
    want_out, want_in = expected_shapes(name, size, block_order)
    assert tuple(logits.shape) == (BATCH, CLASSES)
    assert sorted(outs) == sorted(want_out), "unexpected set of layers"
    for layer, shape in want_out.items():
        assert outs[layer] == (BATCH, *shape), f"{name} @ {size}: {layer}"
    for layer, channels in want_in.items():
        assert ins[layer][1] == channels, f"{name} @ {size}: input channels of {layer}"
