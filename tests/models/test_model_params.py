"""Every count `salclass params` prints, against hand arithmetic written here."""

from __future__ import annotations

import json

import pytest

from models_layout import ALL, CONTROLS, LAYOUT

# Side of the maps entering fc6 (see test_shapes for the derivation).
POOL5 = {128: 1, 227: 5}
POOL5_NO_CONV2 = {128: 6, 227: 13}
LAYER_ORDER = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8", "sal_conv1", "sal_conv2"]


def conv(k, cin, cout):
    return {"kind": "conv", "weights": k * k * cin * cout, "biases": cout, "bn": 0}


def fc(n_in, n_out):
    return {"kind": "fc", "weights": n_in * n_out, "biases": n_out, "bn": 0}


def bn(c):
    return {"kind": "bn", "weights": 0, "biases": 0, "bn": 2 * c}


def hand_count(name: str, size: int, classes: int) -> dict[str, dict]:
    cin, extra1, extra2, branch, no_conv2 = LAYOUT[name.removesuffix("-const").removesuffix("-centre")]
    layers = {"conv1": conv(11, cin, 96), "bn1": bn(96 + extra1)}
    if no_conv2:
        c3_in, side = 96, POOL5_NO_CONV2[size]
    else:
        layers["conv2"] = conv(5, 96 + extra1, 256)
        layers["bn2"] = bn(256 + extra2)
        c3_in, side = 256 + extra2, POOL5[size]
    layers.update({"conv3": conv(3, c3_in, 384), "conv4": conv(3, 384, 384), "conv5": conv(3, 384, 256),
                   "fc6": fc(256 * side * side, 4096), "fc7": fc(4096, 4096), "fc8": fc(4096, classes)})
    if branch >= 1:
        layers.update({"sal_conv1": conv(11, 1, 96), "sal_bn1": bn(96)})
    if branch == 2:
        layers.update({"sal_conv2": conv(5, 96, 256), "sal_bn2": bn(256)})
    for v in layers.values():
        v["params"] = v["weights"] + v["biases"] + v["bn"]
    return layers


@pytest.fixture(scope="module")
def reports():
    from salclass.models.params import params_report

    return {(size, classes): params_report(size, classes) for size, classes in [(128, 1000), (227, 1000), (128, 10)]}


@pytest.mark.parametrize("size,classes", [(128, 1000), (227, 1000), (128, 10)])
def test_json_counts_match_hand_arithmetic(run_cli, size, classes):
    code, out, err = run_cli("params", "--size", size, "--num-classes", classes, "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["size"] == size and rep["num_classes"] == classes
    names = ALL
    assert sorted(rep["variants"]) == sorted(names)
    base = hand_count("RGB", size, classes)
    base_w = sum(v["weights"] for v in base.values())
    base_t = sum(v["params"] for v in base.values())
    for name in names:
        want = hand_count(name, size, classes)
        got = rep["variants"][name]
        assert got["layers"] == want, name
        w = sum(v["weights"] for v in want.values())
        t = sum(v["params"] for v in want.values())
        assert (got["weights"], got["total"]) == (w, t), name
        assert (got["diff_weights"], got["diff_total"]) == (w - base_w, t - base_t), name


def _rows(block: list[str]) -> dict[str, list[str]]:
    # a table is: header, dashes, one row per variant; cells are separated by runs of spaces
    return {line.split()[0]: line.split()[1:] for line in block[2:]}


def _int(cell: str) -> int | None:
    return None if cell == "-" else int(cell.replace(",", ""))


@pytest.mark.parametrize("size", [128, 227])
def test_printed_table_matches_hand_arithmetic(run_cli, size):
    code, out, err = run_cli("params", "--size", size)
    assert code == 0, err
    lines = out.splitlines()
    first = lines.index("Weights only (convolution and fully connected kernels):") + 1
    second = next(i for i, line in enumerate(lines) if line.startswith("With biases and batch norm")) + 1
    weights_rows = _rows(lines[first:first + 2 + len(LAYOUT)])
    params_rows = _rows(lines[second:second + 2 + len(LAYOUT)])
    assert sorted(weights_rows) == sorted(LAYOUT) == sorted(params_rows)
    base = hand_count("RGB", size, 1000)
    for name in LAYOUT:
        want = hand_count(name, size, 1000)
        w_cells, p_cells = weights_rows[name], params_rows[name]
        for i, layer in enumerate(LAYER_ORDER):
            w = want[layer]["weights"] if layer in want else None
            bn_name = layer.replace("conv", "bn") if "conv" in layer else None
            p = (want[layer]["params"] + (want[bn_name]["params"] if bn_name in want else 0)
                 if layer in want else None)
            assert _int(w_cells[i]) == w, f"{name} {layer} weights"
            assert _int(p_cells[i]) == p, f"{name} {layer} with bias and BN"
        w = sum(v["weights"] for v in want.values())
        t = sum(v["params"] for v in want.values())
        assert _int(w_cells[-2]) == w and _int(w_cells[-1]) == w - sum(v["weights"] for v in base.values())
        assert _int(p_cells[-2]) == t and _int(p_cells[-1]) == t - sum(v["params"] for v in base.values())


def test_thesis_figures_checked(reports):
    claims = {c["claim"]: c for c in reports[(128, 1000)]["thesis"]}
    by_stated = {c["stated"]: c for c in claims.values()}
    # the thesis's figures (section 3.6), and what hand arithmetic says they should be
    expected = {
        11_616: 11 * 11 * 1 * 96,
        614_400: 5 * 5 * 96 * 256,
        626_016: 11 * 11 * 1 * 96 + 5 * 5 * 96 * 256,
        884_736: 3 * 3 * 256 * 384,
        332_776: 3 * 3 * 96 * 384,
        551_960: 3 * 3 * 256 * 384 - 3 * 3 * 96 * 384,
        1_154_744: (3 * 3 * 256 * 384 - 3 * 3 * 96 * 384) + 5 * 5 * 96 * 256 - 11 * 11 * 96,
    }
    assert set(expected) <= set(by_stated)
    for stated, actual in expected.items():
        c = by_stated[stated]
        assert c["actual"] == actual, c["claim"]
        assert c["matches"] == (stated == actual), c["claim"]
        if not c["matches"]:
            assert c["why"], c["claim"]
    assert [s for s in expected if s != expected[s]] == [332_776, 551_960, 1_154_744]
    # "FanIn3 has fewer parameters than AlexNet": false once fc6 is counted.
    fewer = by_stated["yes"]
    f3 = sum(v["params"] for v in hand_count("FanIn3", 128, 1000).values())
    rgb = sum(v["params"] for v in hand_count("RGB", 128, 1000).values())
    assert f3 - rgb == (9216 - 256) * 4096 - (5 * 5 * 96 * 256 + 256 + 2 * 256) \
        - (3 * 3 * 160 * 384) + (11 * 11 * 96 + 96 + 2 * 96)
    assert fewer["matches"] is False and fewer["actual"] == f"no: {f3 - rgb:+,}"
    assert f"{(9216 - 256) * 4096:,}" in fewer["why"]


def test_map_controls_have_their_variants_parameters(reports):
    v = reports[(128, 10)]["variants"]
    for name in CONTROLS:
        assert v[name + "-const"] == v[name] == v[name + "-centre"]


def test_params_rejects_bad_arguments(run_cli):
    assert run_cli("params", "--size", "300")[0] == 2
    code, _, err = run_cli("params", "--num-classes", "0")
    assert code == 2 and "num-classes" in err and "Traceback" not in err
