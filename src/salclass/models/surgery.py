"""Weight surgery: load a trained network into a variant that takes the map in more places.

The thesis's first experiments (section 3.4) start from the trained baseline and
add the map; its future work adds a saliency branch to a trained network. Every
tensor with a counterpart is copied. What is new is initialised:
- extra input channels of a convolution (the map as one more channel: conv1 of
  RGBS, conv2/conv3 of RGB_1S2S) and the extra channel of a batch norm layer;
  the map is always the last channel, so the old weights keep their place;
- whole new modules (a fan-in saliency branch).

Initialisations:
- "uniform": U[0, 1) for new conv/linear weights and biases and for new BN
  scale and shift: the thesis's choice (section 3.4).
- "zeros": new conv/linear weights and biases are 0, new BN channels scale 1
  and shift 0; a whole new BN layer (a fan-in saliency branch) scale 1 and
  shift 1, so the branch emits exactly 1 and its multiplicative merge is the
  identity. The result computes exactly what the source network computes
  (eval mode), and the new weights still receive gradients.
- "default": what `create` gives a fresh layer: PyTorch's Kaiming-uniform for
  conv/linear (fan-in from the whole new layer), BN scale 1 and shift 0 (shift 1
  in a fan-in saliency branch, as `create` does).
New BN channels always start with running mean 0 and variance 1, the state of
a fresh layer; training replaces them within a few hundred steps (momentum 0.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from salclass.errors import UserError
from salclass.say import counted

INITS = ("uniform", "zeros", "default")
# Wrappers that prefix every key: DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class TransplantReport:
    init: str
    seed: int
    copied: list[str] = field(default_factory=list)
    extended: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"weight surgery (new weights: {self.init}, seed {self.seed})",
                 f"copied ({len(self.copied)}): {', '.join(self.copied) or '-'}"]
        lines.append(f"extended ({len(self.extended)}): " + (", ".join(
            f"{n} {list(a)} -> {list(b)}" for n, a, b in self.extended) or "-"))
        lines.append(f"initialised ({len(self.initialised)}): {', '.join(self.initialised) or '-'}")
        return "\n".join(lines)


def _strip_wrappers(state: dict) -> dict:
    for prefix in _WRAPPER_PREFIXES:
        if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _fresh(module: nn.Module, attr: str, shape: torch.Size, init: str, whole_module: bool,
           gen: torch.Generator) -> torch.Tensor:
    """A tensor of `shape` holding new values for `module.<attr>` under `init`."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if attr == "running_mean" or attr == "num_batches_tracked":
            return torch.zeros(shape)
        if attr == "running_var":
            return torch.ones(shape)
        if init == "uniform":
            return torch.rand(shape, generator=gen)
        if attr == "weight":
            return torch.ones(shape)
        # a whole new BN layer belongs to a fan-in saliency branch, whose shift starts at 1 (see alexnet.py)
        return torch.full(shape, 1.0 if whole_module else 0.0)
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        if init == "uniform":
            return torch.rand(shape, generator=gen)
        if init == "zeros":
            return torch.zeros(shape)
        fan_in = module.weight[0].numel()
        if attr == "weight":
            t = torch.empty(shape)
            nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=gen)
            return t
        bound = 1.0 / math.sqrt(fan_in)
        return torch.empty(shape).uniform_(-bound, bound, generator=gen)
    raise UserError(f"weight surgery cannot initialise {type(module).__name__}.{attr}")


def transplant(src_state_dict: dict, dst_model: nn.Module, init: str = "uniform", seed: int = 0) -> TransplantReport:
    """Copy `src_state_dict` into `dst_model` and initialise only what is new.

    Raises UserError when the source has tensors the destination lacks or a
    shape differs in any way other than added map channels (e.g. another number
    of classes, or an unrelated architecture).
    """
    if init not in INITS:
        raise UserError(f"unknown initialisation {init!r}; valid: {', '.join(INITS)} (uniform is the thesis's choice)")
    if not isinstance(src_state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in src_state_dict.values()):
        raise UserError("weight surgery needs a state dict (names -> tensors) of the source network")
    src = _strip_wrappers(src_state_dict)
    dst = dst_model.state_dict()
    extra = [k for k in src if k not in dst]
    if extra:
        raise UserError(f"the source network has {counted(len(extra), 'tensor')} this variant lacks (first: {extra[0]}); "
                        "surgery only adds saliency inputs to a network, it does not remove layers")
    gen = torch.Generator().manual_seed(seed)
    report = TransplantReport(init=init, seed=seed)
    new_state = {}
    for key, target in dst.items():
        module_name, _, attr = key.rpartition(".")
        module = dst_model.get_submodule(module_name)
        if key not in src:
            fresh = _fresh(module, attr, target.shape, init, whole_module=True, gen=gen)
            new_state[key] = fresh.to(dtype=target.dtype, device=target.device)
            report.initialised.append(key)
            continue
        old = src[key]
        if old.shape == target.shape:
            new_state[key] = old.detach().to(dtype=target.dtype, device=target.device).clone()
            report.copied.append(key)
            continue
        dim = _extension_dim(module, attr, old.shape, target.shape)
        if dim is None:
            raise UserError(f"{key}: shape {list(old.shape)} in the source, {list(target.shape)} in "
                            f"{getattr(dst_model, 'variant', '') or 'this model'}; not an added-saliency-channel "
                            "difference (another number of classes, input size or architecture?)")
        fresh = _fresh(module, attr, target.shape, init, whole_module=False, gen=gen)
        fresh = fresh.to(dtype=target.dtype)
        fresh.narrow(dim, 0, old.shape[dim]).copy_(old.detach().to(dtype=target.dtype))
        new_state[key] = fresh.to(device=target.device)
        report.extended.append((key, tuple(old.shape), tuple(target.shape)))
    dst_model.load_state_dict(new_state, strict=True)
    return report


def _extension_dim(module: nn.Module, attr: str, old: torch.Size, new: torch.Size) -> int | None:
    """The dimension along which `new` only adds channels at the end of `old`, or None."""
    if len(old) != len(new):
        return None
    if isinstance(module, nn.Conv2d) and attr == "weight":
        dim = 1
    elif isinstance(module, nn.modules.batchnorm._BatchNorm) and attr in ("weight", "bias", "running_mean", "running_var"):
        dim = 0
    else:
        return None
    same_elsewhere = all(a == b for i, (a, b) in enumerate(zip(old, new)) if i != dim)
    return dim if same_elsewhere and new[dim] > old[dim] else None
