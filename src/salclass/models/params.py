"""Parameter accounting of every variant, beside the figures the thesis states (section 3.6).

"weights": convolution and fully connected kernels only (how the thesis
counts); "params": every trainable parameter (kernels, biases, BN scale and
shift). BN running statistics are buffers, not parameters, and are not counted.
Models are built on PyTorch's meta device: shapes only, no memory, no init.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from torch import nn

from salclass.models.alexnet import BLOCK_ORDERS, DEFAULT_BLOCK_ORDER, spatial_sizes
from salclass.models.registry import create, get_variant, list_models

BASELINE = "RGB"
THESIS_NUM_CLASSES = 1000  # ImageNet, the thesis's data set


@dataclass(frozen=True)
class LayerCount:
    name: str
    kind: str  # "conv", "fc" or "bn"
    weights: int
    biases: int
    bn: int

    @property
    def params(self) -> int:
        return self.weights + self.biases + self.bn


@dataclass(frozen=True)
class VariantCount:
    name: str
    layers: tuple[LayerCount, ...]

    @property
    def weights(self) -> int:
        return sum(layer.weights for layer in self.layers)

    @property
    def total(self) -> int:
        return sum(layer.params for layer in self.layers)

    def layer(self, name: str) -> LayerCount:
        return next(layer for layer in self.layers if layer.name == name)

    def conv_weights(self) -> int:
        return sum(layer.weights for layer in self.layers if layer.kind == "conv")


@dataclass(frozen=True)
class Claim:
    what: str
    stated: int | str
    actual: int | str
    matches: bool
    why: str


def count_variant(name: str, input_size: int = 128, num_classes: int = THESIS_NUM_CLASSES,
                  block_order: str = DEFAULT_BLOCK_ORDER) -> VariantCount:
    with torch.device("meta"):
        model = create(name, num_classes, input_size=input_size, block_order=block_order)
    layers = []
    for mod_name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d | nn.Linear):
            bias = mod.bias.numel() if mod.bias is not None else 0
            kind = "conv" if isinstance(mod, nn.Conv2d) else "fc"
            layers.append(LayerCount(mod_name, kind, mod.weight.numel(), bias, 0))
        elif isinstance(mod, nn.BatchNorm2d):
            layers.append(LayerCount(mod_name, "bn", 0, 0, mod.weight.numel() + mod.bias.numel()))
    counted = sum(layer.params for layer in layers)
    every = sum(p.numel() for p in model.parameters())
    if counted != every:
        raise RuntimeError(f"{name}: {every - counted} parameters are in layers the accounting does not know")
    return VariantCount(get_variant(name).name, tuple(layers))


def count_all(input_size: int = 128, num_classes: int = THESIS_NUM_CLASSES) -> dict[str, VariantCount]:
    return {name: count_variant(name, input_size, num_classes) for name in list_models()}


def thesis_claims(counts: dict[str, VariantCount], input_size: int) -> list[Claim]:
    """The figures of thesis section 3.6, each beside the count of our networks."""
    rgb, f1, f2, f3 = counts["RGB"], counts["FanIn1"], counts["FanIn2"], counts["FanIn3"]
    f3_conv3 = f3.layer("conv3")
    conv3_cut = rgb.layer("conv3").weights - f3_conv3.weights
    conv_fewer = rgb.conv_weights() - f3.conv_weights()
    more = f3.total - rgb.total
    fc6_growth = f3.layer("fc6").params - rgb.layer("fc6").params
    f3_side = spatial_sizes(get_variant("FanIn3").spec, input_size)["pool5"]
    rgb_side = spatial_sizes(get_variant("RGB").spec, input_size)["pool5"]
    claims = [
        ("saliency branch conv1 (FanIn1/2/3), weights", 11_616, f2.layer("sal_conv1").weights,
         "11x11 kernels, 1 input channel, 96 filters"),
        ("saliency branch conv2 (FanIn1), weights", 614_400, f1.layer("sal_conv2").weights,
         "5x5 kernels, 96 input channels, 256 filters"),
        ("saliency branch of FanIn1, weights", 626_016,
         f1.layer("sal_conv1").weights + f1.layer("sal_conv2").weights,
         "kernels only; with biases and BN the branch has "
         f"{sum(f1.layer(n).params for n in ('sal_conv1', 'sal_bn1', 'sal_conv2', 'sal_bn2')):,}"),
        ("AlexNet conv3, weights", 884_736, rgb.layer("conv3").weights, "3x3 kernels, 256 input channels, 384 filters"),
        ("FanIn3 conv3 (after conv2 is removed), weights", 332_776, f3_conv3.weights,
         f"3x3x96x384 = {f3_conv3.weights:,}: the stated figure has a 2 where a 1 belongs (typo)"),
        ("conv3 reduction, AlexNet -> FanIn3, weights", 551_960, conv3_cut,
         f"884,736 - {f3_conv3.weights:,} = {conv3_cut:,}; the stated figure carries the 332,776 typo"),
        ("FanIn3 has this many fewer conv weights than AlexNet", 1_154_744, conv_fewer,
         f"{conv3_cut:,} + 614,400 - 11,616 = {conv_fewer:,}; the stated figure carries the 332,776 typo"),
        ("FanIn3 has fewer parameters than AlexNet", "yes",
         "yes" if more < 0 else f"no: {more:+,}",
         "the conv count ignores fc6: without pool2 the last pool gives "
         f"{f3_side}x{f3_side} instead of {rgb_side}x{rgb_side} maps at {input_size}x{input_size} input, "
         f"so fc6 grows by {fc6_growth:,} parameters"),
    ]
    return [Claim(what, stated, actual, stated == actual, note) for what, stated, actual, note in claims]


def params_report(input_size: int = 128, num_classes: int = THESIS_NUM_CLASSES) -> dict:
    counts = count_all(input_size, num_classes)
    same = all(count_variant(name, input_size, num_classes, order).layers == c.layers
               for name, c in counts.items() for order in BLOCK_ORDERS if order != DEFAULT_BLOCK_ORDER)
    base = counts[BASELINE]
    variants = {}
    for name, c in counts.items():
        variants[name] = {
            "layers": {layer.name: {"kind": layer.kind, "weights": layer.weights, "biases": layer.biases,
                                    "bn": layer.bn, "params": layer.params} for layer in c.layers},
            "weights": c.weights,
            "total": c.total,
            "diff_weights": c.weights - base.weights,
            "diff_total": c.total - base.total,
        }
    return {
        "type": "salclass.params", "version": 1, "size": input_size, "num_classes": num_classes,
        "block_orders": {"counted": list(BLOCK_ORDERS), "same_parameters": same}, "baseline": BASELINE,
        "variants": variants,
        "thesis": [{"claim": c.what, "stated": c.stated, "actual": c.actual, "matches": c.matches, "why": c.why}
                   for c in thesis_claims(counts, input_size)],
    }


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        # names left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return [fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)]


def _n(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def format_report(rep: dict) -> str:
    variants = {n: v for n, v in rep["variants"].items() if not get_variant(n).control}
    consts = [n for n in rep["variants"] if get_variant(n).control]
    order = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8", "sal_conv1", "sal_conv2"]
    lines = [f"Parameters at {rep['size']}x{rep['size']} input, {rep['num_classes']} classes "
             f"(difference to {rep['baseline']})",
             ("The same in both block orders (" if rep["block_orders"]["same_parameters"] else
              "DIFFERENT between the block orders (") + " and ".join(rep["block_orders"]["counted"]) + ").", "",
             "Weights only (convolution and fully connected kernels):"]
    rows = []
    for name, v in variants.items():
        layers = v["layers"]
        rows.append([name, *(_n(layers[k]["weights"]) if k in layers else "-" for k in order),
                     _n(v["weights"]), f"{v['diff_weights']:+,}"])
    lines += _table(["variant", *order, "weights", "diff"], rows)
    lines += ["", "With biases and batch norm (each conv column includes its bias and the BN layer after it):"]
    rows = []
    for name, v in variants.items():
        layers = v["layers"]
        cells = []
        for k in order:
            if k not in layers:
                cells.append("-")
                continue
            bn = k.replace("conv", "bn")
            cells.append(_n(layers[k]["params"] + (layers[bn]["params"] if k.startswith(("conv", "sal_conv"))
                                                   and bn in layers else 0)))
        rows.append([name, *cells, _n(v["total"]), f"{v['diff_total']:+,}"])
    lines += _table(["variant", *order, "total", "diff"], rows)
    if consts:
        lines += ["", f"The map controls ({', '.join(consts)}) have exactly the parameters of their variant."]
    lines += ["", "The thesis's figures (section 3.6; counted there as kernel weights):"]
    rows = [[c["claim"], _n(c["stated"]) if isinstance(c["stated"], int) else c["stated"],
             _n(c["actual"]) if isinstance(c["actual"], int) else c["actual"],
             "ok" if c["matches"] else "DIFFERS"] for c in rep["thesis"]]
    lines += _table(["claim", "thesis", "counted", ""], rows)
    why = [f"- {c['claim']}: {c['why']}" for c in rep["thesis"] if not c["matches"]]
    if why:
        lines += ["", "Why the counts differ:", *why]
    return "\n".join(lines)


def params_cli(size: int = 128, as_json: bool = False, num_classes: int = THESIS_NUM_CLASSES) -> int:
    rep = params_report(size, num_classes)
    print(json.dumps(rep, indent=2) if as_json else format_report(rep))
    return 0
