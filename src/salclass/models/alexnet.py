"""The thesis's AlexNet (table 3.2) and every way it feeds a saliency map in.

One class builds the whole family from a `Spec`: where the map enters
(as the 4th input channel, concatenated or multiplied after conv1/conv2, or
through a fan-in branch of its own) and whether conv2 is kept.

Layout (thesis table 3.2, one tower, batch norm, no LRN):
conv1 96@11x11/4 -> relu1 -> bn1 -> pool1 3/2 -> conv2 256@5x5 (no padding)
-> relu2 -> bn2 -> pool2 3/2 -> conv3 384@3x3 -> conv4 384@3x3 -> conv5 256@3x3
(padding 1, ReLU each) -> pool5 3/2 -> fc6 4096 -> fc7 4096 -> fc8 classes.

Block order of conv1, conv2 and the fan-in branches: "relu-bn" is the
thesis's (section 3.3.2: each convolution has its ReLU and is then followed by
batch normalisation, as a Keras Conv2D with a ReLU activation followed by
BatchNormalization), so a map joins after the ReLU (section 4.5: maps "are
concatenated with the outputs of a ReLU") and before the BN. "bn-relu" (conv
-> map -> BN -> ReLU) is kept as an option; there a constant shift of the
input is removed exactly by training-mode BN, so mean subtraction changes
nothing (docs/models.md).

Every step is its own named submodule, used once per forward pass, so a
forward hook on e.g. "relu3" sees exactly the conv3 activation. Both orders
have the same submodules and parameters, so their state dicts are
interchangeable in shape; the checkpoint records which order trained them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from salclass.centre_bias import centre_bias_map, fitted_widths
from salclass.errors import UserError

_HOW = (None, "concat", "mul")
BLOCK_ORDERS = {
    "relu-bn": "conv -> ReLU -> map joins -> BN -> pool (the thesis's, section 3.3.2; default)",
    "bn-relu": "conv -> map joins -> BN -> ReLU -> pool (mean subtraction is a no-op here)",
}
DEFAULT_BLOCK_ORDER = "relu-bn"


@dataclass(frozen=True)
class Spec:
    """Where the saliency map enters the network.

    input, conv1, conv2: None, "concat" (one more channel) or "mul" (every
    channel multiplied by the map), at the image, the conv1 output or the conv2
    output (the map is resized to that output's size).
    branch: layers of a fan-in saliency branch shaped like the image branch
    (1: conv1/bn1/relu/pool, 2: also conv2/bn2/relu/pool), merged into the image
    path by element-wise multiplication after its last pool.
    skip_conv2: drop conv2, bn2 and pool2 (thesis 3.6.3).
    """

    input: str | None = None
    conv1: str | None = None
    conv2: str | None = None
    branch: int = 0
    skip_conv2: bool = False

    def __post_init__(self) -> None:
        for where in ("input", "conv1", "conv2"):
            if getattr(self, where) not in _HOW:
                raise ValueError(f"Spec.{where} must be None, 'concat' or 'mul', got {getattr(self, where)!r}")
        if self.branch not in (0, 1, 2):
            raise ValueError(f"Spec.branch must be 0, 1 or 2, got {self.branch!r}")
        if self.branch and (self.conv1 or self.conv2):
            raise ValueError("a fan-in branch merges at the conv1/conv2 outputs; do not also inject the map there")
        if self.skip_conv2 and (self.conv2 or self.branch == 2):
            raise ValueError("skip_conv2 removes conv2, so nothing can enter at or after it")

    @property
    def uses_saliency(self) -> bool:
        return bool(self.input or self.conv1 or self.conv2 or self.branch)


def _out(n: int, kernel: int, stride: int, padding: int = 0) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def spatial_sizes(spec: Spec, input_size: int) -> dict[str, int]:
    """Side length of the feature maps after conv1, pool1, conv2, pool2, conv3..5 and pool5."""
    sizes = {"conv1": _out(input_size, 11, 4)}
    sizes["pool1"] = _out(sizes["conv1"], 3, 2)
    last = sizes["pool1"]
    if not spec.skip_conv2:
        sizes["conv2"] = _out(last, 5, 1)
        sizes["pool2"] = _out(sizes["conv2"], 3, 2)
        last = sizes["pool2"]
    sizes["conv3"] = last
    sizes["pool5"] = _out(last, 3, 2)
    if min(sizes.values()) < 1:
        raise UserError(f"input size {input_size} is too small for this network (128 and 227 are the thesis's sizes)")
    return sizes


class SaliencyAlexNet(nn.Module):
    """AlexNet with the saliency map fed in as `spec` says.

    `const_map`: if set, the map is replaced inside forward by this constant
    (the control with no saliency information; the given map is never read).
    `centre_map`: if true, the map is replaced by the centre bias fitted on OSIE
    (a Gaussian on the centre of the input, maximum 1, as the stored maps are
    scaled): the control with where people look in general, nothing of the image.
    It is centred on the crop the network sees, which training's random crops
    move at most a few pixels off the image's centre.
    `block_order`: "relu-bn" (the thesis's) or "bn-relu", see the module doc.
    """

    def __init__(self, spec: Spec, num_classes: int, input_size: int = 128, dropout: float = 0.5,
                 const_map: float | None = None, name: str = "", block_order: str = DEFAULT_BLOCK_ORDER,
                 centre_map: bool = False) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise UserError(f"num_classes must be a positive integer, got {num_classes!r}")
        if not isinstance(input_size, int) or isinstance(input_size, bool):
            raise UserError(f"input_size must be an integer, got {input_size!r}")
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {dropout!r}")
        if block_order not in BLOCK_ORDERS:
            raise UserError(f"block_order must be one of {', '.join(BLOCK_ORDERS)}, got {block_order!r}")
        if (const_map is not None or centre_map) and not spec.uses_saliency:
            raise UserError(f"{name or 'this variant'} does not use a saliency map, so it has no map control")
        if const_map is not None and centre_map:
            raise ValueError("a control replaces the map by a constant or by the centre bias, not both")
        self.spec = spec
        self.variant = name
        self.num_classes = num_classes
        self.input_size = input_size
        self.const_map = const_map
        self.centre_map = bool(centre_map)
        self._centre_cache: dict[tuple, torch.Tensor] = {}
        self.block_order = block_order
        sizes = spatial_sizes(spec, input_size)

        self.conv1 = nn.Conv2d(3 + (spec.input == "concat"), 96, 11, stride=4)
        self.bn1 = nn.BatchNorm2d(96 + (spec.conv1 == "concat"))
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(3, 2)
        channels = self.bn1.num_features
        if not spec.skip_conv2:
            self.conv2 = nn.Conv2d(channels, 256, 5)
            self.bn2 = nn.BatchNorm2d(256 + (spec.conv2 == "concat"))
            self.relu2 = nn.ReLU()
            self.pool2 = nn.MaxPool2d(3, 2)
            channels = self.bn2.num_features
        self.conv3 = nn.Conv2d(channels, 384, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1)
        self.relu4 = nn.ReLU()
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1)
        self.relu5 = nn.ReLU()
        self.pool5 = nn.MaxPool2d(3, 2)
        self.fc6 = nn.Linear(256 * sizes["pool5"] ** 2, 4096)
        self.relu6 = nn.ReLU()
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Linear(4096, 4096)
        self.relu7 = nn.ReLU()
        self.drop7 = nn.Dropout(dropout)
        self.fc8 = nn.Linear(4096, num_classes)

        if spec.branch >= 1:
            self.sal_conv1 = nn.Conv2d(1, 96, 11, stride=4)
            self.sal_bn1 = nn.BatchNorm2d(96)
            self.sal_relu1 = nn.ReLU()
            self.sal_pool1 = nn.MaxPool2d(3, 2)
        if spec.branch == 2:
            self.sal_conv2 = nn.Conv2d(96, 256, 5)
            self.sal_bn2 = nn.BatchNorm2d(256)
            self.sal_relu2 = nn.ReLU()
            self.sal_pool2 = nn.MaxPool2d(3, 2)
        for bn_name in ("sal_bn1", "sal_bn2")[:spec.branch]:
            # Shift 1, not PyTorch's 0: a constant map (the -const control) reaches each branch BN with
            # zero batch variance, so the BN emits just its shift; at 0 the branch would output 0 (in either
            # block order), zero the image path through the multiplicative merge and pass no gradient,
            # forever. The real variants start the same way, so a control differs from its variant only in
            # the map.
            nn.init.ones_(getattr(self, bn_name).bias)

    @property
    def uses_saliency(self) -> bool:
        """Whether forward reads the saliency map (False for the map controls)."""
        return self.spec.uses_saliency and self.const_map is None and not self.centre_map

    def _saliency(self, image: torch.Tensor, saliency: torch.Tensor | None) -> torch.Tensor | None:
        if not self.spec.uses_saliency:
            return None
        b, _, h, w = image.shape
        if self.const_map is not None:
            return image.new_full((b, 1, h, w), self.const_map)
        if self.centre_map:
            return self._centre(h, w, image).expand(b, 1, h, w)
        if saliency is None:
            raise UserError(f"model {self.variant} needs a saliency map, but none was given")
        if saliency.dim() != 4 or tuple(saliency.shape) != (b, 1, h, w):
            raise UserError(f"saliency map shape {tuple(saliency.shape)} does not match the image: expected {(b, 1, h, w)}")
        return saliency.to(image.dtype)

    def _centre(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        key = (h, w, like.device, like.dtype)
        if key not in self._centre_cache:
            m = centre_bias_map(h, w, *fitted_widths())
            self._centre_cache[key] = torch.from_numpy(m / m.max()).to(like).view(1, 1, h, w)
        return self._centre_cache[key]

    @staticmethod
    def _inject(x: torch.Tensor, s: torch.Tensor, how: str | None) -> torch.Tensor:
        if how is None:
            return x
        # Area averaging: every map pixel counts once, so a 128 map shrinks to 30x30 without aliasing.
        m = F.adaptive_avg_pool2d(s, x.shape[-2:])
        return torch.cat([x, m], 1) if how == "concat" else x * m

    def _block(self, x: torch.Tensor, s: torch.Tensor | None, how: str | None, conv: nn.Module, relu: nn.Module,
               bn: nn.Module, pool: nn.Module) -> torch.Tensor:
        """One conv block with the map joining where the block order puts it: after the ReLU
        (thesis) or straight after the convolution (bn-relu); either way before the BN."""
        if self.block_order == "relu-bn":
            return pool(bn(self._inject(relu(conv(x)), s, how)))
        return pool(relu(bn(self._inject(conv(x), s, how))))

    def forward(self, image: torch.Tensor, saliency: torch.Tensor | None = None) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] != 3 or image.shape[-1] != self.input_size or image.shape[-2] != self.input_size:
            raise UserError(f"model {self.variant} takes images (B, 3, {self.input_size}, {self.input_size}), "
                            f"got {tuple(image.shape)}")
        spec = self.spec
        s = self._saliency(image, saliency)
        x = self._inject(image, s, spec.input)
        x = self._block(x, s, spec.conv1, self.conv1, self.relu1, self.bn1, self.pool1)
        if spec.branch:
            b = self._block(s, None, None, self.sal_conv1, self.sal_relu1, self.sal_bn1, self.sal_pool1)
            if spec.branch == 2:
                b = self._block(b, None, None, self.sal_conv2, self.sal_relu2, self.sal_bn2, self.sal_pool2)
        if spec.branch == 1:
            x = x * b
        if not spec.skip_conv2:
            x = self._block(x, s, spec.conv2, self.conv2, self.relu2, self.bn2, self.pool2)
        if spec.branch == 2:
            x = x * b
        x = self.relu3(self.conv3(x))
        x = self.relu4(self.conv4(x))
        x = self.pool5(self.relu5(self.conv5(x)))
        x = torch.flatten(x, 1)
        x = self.drop6(self.relu6(self.fc6(x)))
        x = self.drop7(self.relu7(self.fc7(x)))
        return self.fc8(x)
