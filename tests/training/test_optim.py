"""The thesis's regularisation: Keras's l2(0.0005) on convolution and dense kernels only."""

from __future__ import annotations

import pytest
import torch

from salclass.models import create
from salclass.training import TrainConfig
from salclass.training.optim import decay_groups, sgd


def _kernels(m: torch.nn.Module) -> set[int]:
    return {id(mod.weight) for mod in m.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))}


def test_defaults_are_the_thesis_penalty_on_kernels_only():
    cfg = TrainConfig(store="s", out="o")
    assert (cfg.weight_decay, cfg.decay_on) == (0.001, "kernels")
    m = create("FanIn1", 5)
    groups = decay_groups(m, cfg.weight_decay, cfg.decay_on)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    free = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert decayed == _kernels(m)  # every conv/linear weight, the saliency branch's included
    names = {id(p): n for n, p in m.named_parameters()}
    assert {names[i] for i in free} == {n for n, _ in m.named_parameters() if n.endswith("bias") or "bn" in n}
    assert [g["weight_decay"] for g in groups if g["weight_decay"] > 0] == [0.001]


def test_zero_gradient_step_shrinks_kernels_and_leaves_biases_and_bn_alone():
    torch.manual_seed(0)
    m = create("RGBS", 5).double()
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    opt = sgd(m, lr=0.1, momentum=0.9, weight_decay=0.001, decay_on="kernels")
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in m.named_parameters():
        if n.endswith(".weight") and not n.startswith(("bn", "sal_bn")):
            assert torch.allclose(p, before[n] * (1 - 0.1 * 0.001), rtol=0, atol=1e-15), n
        else:
            assert torch.equal(p, before[n]), n


def test_same_update_as_the_keras_loss_term():
    """SGD with weight_decay 0.001 on the kernels == SGD on loss + 0.0005 * sum(w^2) of the kernels."""
    image = torch.rand(4, 3, 128, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    label = torch.tensor([0, 1, 2, 3])
    results = []
    for keras in (False, True):
        torch.manual_seed(0)
        m = create("RGB", 5, dropout=0.0).double().train()
        kernels = [p for p in m.parameters() if id(p) in _kernels(m)]
        opt = (torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) if keras
               else sgd(m, lr=0.01, momentum=0.9, weight_decay=0.001, decay_on="kernels"))
        for _ in range(3):
            loss = torch.nn.functional.cross_entropy(m(image), label)
            if keras:
                loss = loss + 0.0005 * sum((w ** 2).sum() for w in kernels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        results.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.allclose(results[0], results[1], rtol=0, atol=1e-12)


def test_decay_on_all_keeps_the_old_behaviour():
    m = create("RGB", 5)
    groups = decay_groups(m, 0.0005, "all")
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0005
    assert len(groups[0]["params"]) == len(list(m.parameters()))
    with pytest.raises(ValueError):
        decay_groups(m, 0.0005, "some")
