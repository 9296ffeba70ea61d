"""Every classifier variant by its thesis name.

A variant is one small function returning a `Spec`, decorated with
`@register("Name")`; its docstring's first line is its description. Every
variant that reads the map gets two controls for free, the same network fed
another map: "<Name>-const" (a constant: no information at all) and
"<Name>-centre" (the fitted centre bias: where people look in any image,
nothing of this one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from salclass.errors import UserError
from salclass.models.alexnet import DEFAULT_BLOCK_ORDER, SaliencyAlexNet, Spec

CONST_SUFFIX = "-const"
CENTRE_SUFFIX = "-centre"
DEFAULT_CONST_VALUE = 0.5
_CONTROLS = {
    "const": (CONST_SUFFIX, "a constant map"),
    "centre": (CENTRE_SUFFIX, "the fitted centre bias (the same Gaussian for every image)"),
}


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    spec: Spec
    control: str = ""   # "", or which map replaces the saliency map: "const" or "centre"
    base: str = ""      # the variant a control is a control of (its own name otherwise)


_VARIANTS: dict[str, Variant] = {}


def _key(name: str) -> str:
    """Spelling-insensitive key, so the thesis's "RGB-1S-2S" and "Fan-in1" find RGB_1S2S and FanIn1."""
    return "".join(c for c in name.casefold() if c not in "-_ ")


def _add(variant: Variant) -> None:
    clash = [v.name for v in _VARIANTS.values() if _key(v.name) == _key(variant.name)]
    if clash:
        raise ValueError(f"model name {variant.name!r} is already registered (as {clash[0]!r})")
    _VARIANTS[variant.name] = variant


def register(name: str) -> Callable[[Callable[[], Spec]], Callable[[], Spec]]:
    """Decorator: `@register("Name")` on a function that returns the variant's Spec."""

    def decorate(fn: Callable[[], Spec]) -> Callable[[], Spec]:
        spec = fn()
        if not isinstance(spec, Spec):
            raise TypeError(f"variant {name!r}: the registered function must return a Spec")
        doc = (fn.__doc__ or "").strip().splitlines()
        _add(Variant(name, doc[0] if doc else name, spec, base=name))
        if spec.uses_saliency:
            for control, (suffix, what) in _CONTROLS.items():
                _add(Variant(name + suffix, f"control: {name} fed {what} instead of the saliency map "
                             "(same network and parameters)", spec, control, name))
        return fn

    return decorate


def list_models() -> list[str]:
    """All variant names: the thesis's and ours first, then the constant-map controls, then the centre-bias ones."""
    order = ["", *_CONTROLS]
    return [v.name for v in sorted(_VARIANTS.values(), key=lambda v: order.index(v.control))]


def describe_models() -> list[tuple[str, str]]:
    return [(name, _VARIANTS[name].description) for name in list_models()]


def get_variant(name: str) -> Variant:
    if name in _VARIANTS:
        return _VARIANTS[name]
    matches = [v for v in _VARIANTS.values() if _key(v.name) == _key(str(name))]
    if not matches:
        raise UserError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    return matches[0]


def create(name: str, num_classes: int, input_size: int = 128, dropout: float = 0.5,
           const_value: float = DEFAULT_CONST_VALUE, block_order: str = DEFAULT_BLOCK_ORDER) -> SaliencyAlexNet:
    """Build variant `name` with freshly initialised weights.

    const_value: the map value the "-const" controls use in place of the saliency map.
    block_order: "relu-bn" (conv -> ReLU -> BN -> pool, the thesis's) or "bn-relu".
    """
    variant = get_variant(name)
    return SaliencyAlexNet(variant.spec, num_classes, input_size=input_size, dropout=dropout,
                           const_map=float(const_value) if variant.control == "const" else None,
                           centre_map=variant.control == "centre", name=variant.name, block_order=block_order)


# --- the variants ---------------------------------------------------------------

@register("RGB")
def _rgb() -> Spec:
    """baseline AlexNet of table 3.2, no saliency"""
    return Spec()


@register("RGBS")
def _rgbs() -> Spec:
    """map concatenated to the image as a 4th input channel"""
    return Spec(input="concat")


@register("RGB_1S2S")
def _rgb_1s2s() -> Spec:
    """map resized and concatenated as one more channel after conv1 and after conv2"""
    return Spec(conv1="concat", conv2="concat")


@register("RGBS_1S2S")
def _rgbs_1s2s() -> Spec:
    """map concatenated at the input and after conv1 and conv2"""
    return Spec(input="concat", conv1="concat", conv2="concat")


@register("RGBxS")
def _rgbxs() -> Spec:
    """each image channel multiplied by the map"""
    return Spec(input="mul")


@register("RGB_1xS2xS")
def _rgb_1xs2xs() -> Spec:
    """conv1 and conv2 outputs multiplied by the resized map"""
    return Spec(conv1="mul", conv2="mul")


@register("RGBxS_1xS2xS")
def _rgbxs_1xs2xs() -> Spec:
    """map multiplied into the image and into the conv1 and conv2 outputs"""
    return Spec(input="mul", conv1="mul", conv2="mul")


@register("FanIn1")
def _fanin1() -> Spec:
    """saliency branch of two conv/BN/ReLU/pool layers, multiplied in before conv3"""
    return Spec(branch=2)


@register("FanIn2")
def _fanin2() -> Spec:
    """saliency branch of one conv/BN/ReLU/pool layer, multiplied in before conv2"""
    return Spec(branch=1)


@register("FanIn3")
def _fanin3() -> Spec:
    """FanIn2 with conv2, bn2 and pool2 removed: merged straight into conv3"""
    return Spec(branch=1, skip_conv2=True)


@register("FanIn3_noS")
def _fanin3_nos() -> Spec:
    """control: FanIn3's image path without any saliency (what removing conv2 alone does)"""
    return Spec(skip_conv2=True)
