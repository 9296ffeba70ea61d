"""An ensemble: the mean of several trained saliency models' densities.

    salclass saliency ensemble RUN1 RUN2 [...] --out ensemble.pt

Nets trained from other seeds agree where the image says clearly where people
look and disagree elsewhere; averaging their densities keeps the first and
spreads the second, which is what a model needs on images unlike its training
set (DeepGaze IIE, Linardos et al. 2021, calibrates out of domain this way).
The members share one architecture and one input size (their other settings,
e.g. fcn's kind of centre-bias prior, may differ); the result is an ordinary
saliency checkpoint that `load_predictor`, `saliency eval` and `saliency predict`
take like any other.

`--centre-weight W` mixes the mean with the fitted centre bias (a density too):
(1 - W) * mean + W * centre bias. The likelihood on OSIE's own images is highest
at W = 0; a little of the centre bias hedges the nets' guesses on images unlike
OSIE's (docs/results.md, "The shipped saliency model", says how the shipped W
was chosen: the weight of highest CC on OSIE's validation images).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from salclass.centre_bias import centre_bias_map, fitted_widths
from salclass.errors import UserError
from salclass.io import atomic_torch_save
from salclass.saliency.models.base import SaliencyModel
from salclass.saliency.models.checkpoints import load_model, model_checkpoint
from salclass.saliency.models.registry import create, register


# Image shapes on which members must agree about the input size (OSIE's, square, a large photograph's).
_PROBE_SHAPES = ((600, 800), (256, 256), (144, 144), (2592, 3888))


@register("ensemble")
class Ensemble(SaliencyModel):
    """Mean of the densities of several trained models of one architecture (saliency ensemble)."""

    needs_weights = True

    def __init__(self, architecture: str = "fcn", member_settings: dict | list[dict] | None = None,
                 members: int = 2, centre_weight: float = 0.0):
        super().__init__()
        if not 0.0 <= centre_weight < 1.0:
            raise ValueError(f"the centre-bias weight must be in [0, 1), got {centre_weight}")
        if architecture == "ensemble":
            raise ValueError("an ensemble's members cannot be ensembles")
        if members < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {members}")
        # One dict: every member alike (checkpoints of ensembles of identical members hold this form).
        each = member_settings if isinstance(member_settings, list) else [member_settings or {}] * members
        if len(each) != members:
            raise ValueError(f"{len(each)} member settings for {members} members")
        self.architecture = architecture
        self.centre_weight = float(centre_weight)
        self._centre_widths = fitted_widths()   # read once here, not on every batch
        self.member_settings = [dict(s) for s in each]
        self.members = nn.ModuleList(create(architecture, **s) for s in self.member_settings)

    def settings(self) -> dict:
        return {"architecture": self.architecture, "member_settings": self.member_settings,
                "members": len(self.members), "centre_weight": self.centre_weight}

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        return self.members[0].input_size(height, width)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for m in self.members:
            d = m.raw(x).float()
            d = d / d.flatten(1).sum(1).clamp_min(1e-30).view(-1, 1, 1)
            total = d if total is None else total + d
        mean = total / len(self.members)
        if not self.centre_weight:
            return mean
        centre = torch.from_numpy(centre_bias_map(*mean.shape[-2:], *self._centre_widths)).to(mean)
        return (1.0 - self.centre_weight) * mean + self.centre_weight * centre / centre.sum()


def _sizes(model: SaliencyModel) -> list[tuple[int, int]]:
    return [model.input_size(*shape) for shape in _PROBE_SHAPES]


def combine(checkpoints: list[str | Path], centre_weight: float = 0.0) -> Ensemble:
    """One ensemble of the models in `checkpoints` (each a saliency checkpoint
    or run folder; all of one architecture and one input size), mixed with the
    centre bias at `centre_weight`."""
    if len(checkpoints) < 2:
        raise UserError(f"an ensemble needs at least 2 models, got {len(checkpoints)}")
    if not 0.0 <= centre_weight < 1.0:
        raise UserError(f"--centre-weight must be at least 0 and below 1, got {centre_weight}")
    loaded = [(str(c), load_model(c)[0]) for c in checkpoints]
    first_path, first = loaded[0]
    if first.name == "ensemble":
        raise UserError(f"{first_path}: is an ensemble already; list its members instead")
    for path, m in loaded[1:]:
        if m.name != first.name or _sizes(m) != _sizes(first):
            raise UserError(f"{path}: is '{m.name}' {m.settings()}, but {first_path} is '{first.name}' "
                            f"{first.settings()}; an ensemble's members share one architecture and input size")
    ens = Ensemble(first.name, [m.settings() for _, m in loaded], len(loaded), centre_weight)
    for member, (_, m) in zip(ens.members, loaded):
        member.load_state_dict(m.state_dict())
    return ens.eval()


def ensemble_cli(checkpoints: list[str], out: str, centre_weight: float = 0.0) -> int:
    target = Path(out)
    if target.exists():
        raise UserError(f"{target}: exists; choose another --out (an ensemble is never written over a file)")
    ens = combine(checkpoints, centre_weight)
    atomic_torch_save(model_checkpoint(ens, extra={"members": [str(Path(c)) for c in checkpoints]}), target)
    mixed = f", mixed with the centre bias at {centre_weight:g}" if centre_weight else ""
    print(f"{target}: ensemble of {len(checkpoints)} '{ens.architecture}' models{mixed} "
          f"(salclass saliency eval --model {target})")
    return 0
