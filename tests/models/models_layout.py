"""Hand-written layout of every variant, shared by the model tests (independent of salclass's code)."""

from __future__ import annotations

# Feature-map side after conv1, pool1, conv2, pool2, conv3..5 and pool5:
# conv1 (S-11)//4+1, pools (n-3)//2+1, conv2 n-4, conv3..5 keep the size.
SIDE = {128: {"c1": 30, "p1": 14, "c2": 10, "p2": 4, "c3": 4, "p5": 1},
        227: {"c1": 55, "p1": 27, "c2": 23, "p2": 11, "c3": 11, "p5": 5}}
# Without conv2 and pool2, conv3 sees pool1's output.
SIDE_NO_CONV2 = {128: {"c3": 14, "p5": 6}, 227: {"c3": 27, "p5": 13}}

# variant: (conv1 input channels, extra channel after conv1, extra channel after conv2,
#           saliency-branch layers, conv2 removed)
LAYOUT = {
    "RGB": (3, 0, 0, 0, False),
    "RGBS": (4, 0, 0, 0, False),
    "RGB_1S2S": (3, 1, 1, 0, False),
    "RGBS_1S2S": (4, 1, 1, 0, False),
    "RGBxS": (3, 0, 0, 0, False),
    "RGB_1xS2xS": (3, 0, 0, 0, False),
    "RGBxS_1xS2xS": (3, 0, 0, 0, False),
    "FanIn1": (3, 0, 0, 2, False),
    "FanIn2": (3, 0, 0, 1, False),
    "FanIn3": (3, 0, 0, 1, True),
    "FanIn3_noS": (3, 0, 0, 0, True),
}
CONTROLS = [n for n in LAYOUT if n not in ("RGB", "FanIn3_noS")]
SUFFIXES = ("-const", "-centre")
ALL = list(LAYOUT) + [n + suffix for suffix in SUFFIXES for n in CONTROLS]
CLASSES = 7


def expected_shapes(name: str, size: int, block_order: str = "relu-bn") -> tuple[dict[str, tuple], dict[str, int]]:
    """(output shape of every named submodule, input channels of each conv). In the
    thesis's order ("relu-bn") the map joins after the ReLU, so the ReLU has no map channel."""
    cin, extra1, extra2, branch, no_conv2 = LAYOUT[name.removesuffix("-const").removesuffix("-centre")]
    s = dict(SIDE[size])
    if no_conv2:
        s.update(SIDE_NO_CONV2[size])
    c1 = 96 + extra1
    r1 = 96 if block_order == "relu-bn" else c1
    out = {"conv1": (96, s["c1"], s["c1"]), "bn1": (c1, s["c1"], s["c1"]), "relu1": (r1, s["c1"], s["c1"]),
           "pool1": (c1, s["p1"], s["p1"])}
    ins = {"conv1": cin}
    c3_in = c1
    if not no_conv2:
        c2 = 256 + extra2
        r2 = 256 if block_order == "relu-bn" else c2
        out.update({"conv2": (256, s["c2"], s["c2"]), "bn2": (c2, s["c2"], s["c2"]), "relu2": (r2, s["c2"], s["c2"]),
                    "pool2": (c2, s["p2"], s["p2"])})
        ins["conv2"] = c1
        c3_in = c2
    ins["conv3"] = c3_in
    out.update({"conv3": (384, s["c3"], s["c3"]), "relu3": (384, s["c3"], s["c3"]),
                "conv4": (384, s["c3"], s["c3"]), "relu4": (384, s["c3"], s["c3"]),
                "conv5": (256, s["c3"], s["c3"]), "relu5": (256, s["c3"], s["c3"]),
                "pool5": (256, s["p5"], s["p5"]),
                "fc6": (4096,), "relu6": (4096,), "drop6": (4096,),
                "fc7": (4096,), "relu7": (4096,), "drop7": (4096,), "fc8": (CLASSES,)})
    ins["fc6"] = 256 * s["p5"] * s["p5"]
    if branch >= 1:
        out.update({"sal_conv1": (96, s["c1"], s["c1"]), "sal_bn1": (96, s["c1"], s["c1"]),
                    "sal_relu1": (96, s["c1"], s["c1"]), "sal_pool1": (96, s["p1"], s["p1"])})
        ins["sal_conv1"] = 1
    if branch == 2:
        out.update({"sal_conv2": (256, s["c2"], s["c2"]), "sal_bn2": (256, s["c2"], s["c2"]),
                    "sal_relu2": (256, s["c2"], s["c2"]), "sal_pool2": (256, s["p2"], s["p2"])})
        ins["sal_conv2"] = 96
    return out, ins
