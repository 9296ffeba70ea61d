"""SalNet's two architectures (Pan, McGuinness, Sayrol, O'Connor, Giro-i-Nieto,
"Shallow and deep convolutional networks for saliency prediction", CVPR 2016),
the saliency models of the thesis, built from the published layer list and
trained from scratch here with the published loss: the Euclidean distance
between the predicted map and the ground-truth map (scaled to [0, 1]).

Deep: 240x320 in; conv 96@7 (ReLU, local response norm, 3x3/2 max pool),
256@5 (ReLU, 3x3/2 max pool), 512@3, 512@5, 512@5, 256@7, 128@11, 32@11,
1@13, then an 8x8 stride-4 deconvolution: a 236x316 map.
Shallow: 96x96 in; conv 32@5, 64@3, 64@3, each with 2x2 max pool, a dense
layer of 2x2304 units with maxout over pairs, and a dense 2304 = 48x48 output.
The published deep net took its first three layers from an ImageNet
classifier (VGG_CNN_M); none can be downloaded here, so they start random.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from salclass.saliency.models.base import SaliencyModel
from salclass.saliency.models.registry import register

_MEAN = (0.485, 0.456, 0.406)


class _SalNetBase(SaliencyModel):
    trainable = needs_weights = True
    in_size: tuple[int, int] = (0, 0)

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        # Both nets take one fixed size, as published; the predictor resizes.
        return self.in_size

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error against the ground truth scaled to maximum 1."""
        top = target.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
        return F.mse_loss(output, target / top)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).clamp(min=0.0)


@register("salnet_deep")
class SalNetDeep(_SalNetBase):
    """SalNet deep (Pan et al. 2016): 9 conv layers + stride-4 deconvolution, 240x320 in, 236x316 out."""

    in_size = (240, 320)

    def __init__(self):
        super().__init__()

        def conv(cin: int, cout: int, k: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, k, padding=k // 2)

        self.features = nn.Sequential(
            conv(3, 96, 7), nn.ReLU(inplace=True), nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75),
            nn.MaxPool2d(3, stride=2),
            conv(96, 256, 5), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2),
            conv(256, 512, 3), nn.ReLU(inplace=True),
            conv(512, 512, 5), nn.ReLU(inplace=True),
            conv(512, 512, 5), nn.ReLU(inplace=True),
            conv(512, 256, 7), nn.ReLU(inplace=True),
            conv(256, 128, 11), nn.ReLU(inplace=True),
            conv(128, 32, 11), nn.ReLU(inplace=True),
            conv(32, 1, 13),
        )
        self.deconv = nn.ConvTranspose2d(1, 1, 8, stride=4, padding=2, bias=False)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        def side(n: int) -> int:
            n = (n - 3) // 2 + 1          # pool1
            n = (n - 3) // 2 + 1          # pool2
            return (n - 1) * 4 - 2 * 2 + 8  # deconv
        return side(height), side(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.features((x - self.mean) * 255.0 / 128.0))[:, 0]


@register("salnet_shallow")
class SalNetShallow(_SalNetBase):
    """SalNet shallow (Pan et al. 2016): 3 conv + 2 dense layers with maxout, 96x96 in, 48x48 out."""

    in_size = (96, 96)
    out_side = 48

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        n = self.out_side * self.out_side
        self.hidden = nn.Linear(64 * 10 * 10, 2 * n)
        self.output = nn.Linear(n, n)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        return self.out_side, self.out_side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features((x - self.mean) * 255.0 / 128.0).flatten(1)
        h = self.hidden(f)
        h = h.view(h.shape[0], -1, 2).amax(dim=2)  # maxout over pairs of units
        return self.output(h).view(-1, self.out_side, self.out_side)
