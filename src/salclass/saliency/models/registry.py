"""Saliency models by name: `@register("name")` on a SaliencyModel subclass,
`create(name, **settings)` to build one, `list_models()` for the names.

This module imports no model family: the package (`salclass.saliency.models`)
imports them all, so any use of the package finds every model registered."""

from __future__ import annotations

from typing import Callable

from salclass.errors import UserError
from salclass.saliency.models.base import SaliencyModel

_REGISTRY: dict[str, type[SaliencyModel]] = {}


def register(name: str) -> Callable[[type[SaliencyModel]], type[SaliencyModel]]:
    def deco(cls: type[SaliencyModel]) -> type[SaliencyModel]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise RuntimeError(f"saliency model '{name}' registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_class(name: str) -> type[SaliencyModel]:
    if name not in _REGISTRY:
        raise UserError(f"unknown saliency model '{name}' (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]


def describe_models() -> list[tuple[str, str]]:
    return [(n, (c.__doc__ or "").strip().splitlines()[0]) for n, c in sorted(_REGISTRY.items())]


def create(name: str, **settings) -> SaliencyModel:
    cls = model_class(name)
    try:
        return cls(**settings)
    except (TypeError, ValueError) as e:
        raise UserError(f"saliency model '{name}': bad settings ({e})") from None
