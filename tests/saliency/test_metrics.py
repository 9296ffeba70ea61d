"""The benchmark metrics: against pysaliency's values on real OSIE maps, and
against cases small enough to work out by hand."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from salclass.saliency import metrics as M

REPO = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).with_name("reference") / "pysaliency_values.json"


def _reference_script():
    spec = importlib.util.spec_from_file_location("pysaliency_reference", REPO / "scripts" / "pysaliency_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def reference():
    """pysaliency's values and the maps they were computed on, rebuilt from the
    recorded points with the script's own recipe."""
    ref = json.loads(REFERENCE.read_text(encoding="utf-8"))
    assert ref["type"] == "salclass.pysaliency_reference" and ref["version"] == 1
    script = _reference_script()
    shape = tuple(ref["shape"])
    points = {n: np.asarray(ref["points"][n], dtype=np.int64) for n in ref["images"]}
    maps = {n: script.build_maps(points[n], shape, ref["recipe"]) for n in ref["images"]}
    scored = {n: points[n][points[n][:, 2] % 2 == 1][:, :2] for n in ref["images"]}
    return ref, maps, scored


def test_reference_points_are_the_real_osie_fixations(reference, osie_root):
    """The recorded points are OSIE's odd and even subjects' fixations as the
    fixation reader converts them, so the reference is on real data."""
    from salclass.saliency.fixations import open_fixation_data

    ref, _, _ = reference
    ds = open_fixation_data(osie_root).subset(ref["images"])
    for i, name in enumerate(ref["images"]):
        fx = ds.fixations(i)
        rows, cols = fx.pixels(tuple(ref["shape"]), ds.image_size(i))
        got = np.stack([cols, rows, fx.subject], axis=1)
        np.testing.assert_array_equal(got, np.asarray(ref["points"][name]))


FIXATION_METRICS = {"auc_judd": M.auc_judd, "nss": M.nss}
MAP_METRICS = {"cc": M.cc, "kl": M.kl_divergence, "sim": M.sim}


@pytest.mark.parametrize("key", ["centre", "half", "half_u8", "half_mix"])
def test_matches_pysaliency_on_osie(reference, key):
    ref, maps, scored = reference
    expected = ref["values"][key]
    names = ref["images"]
    for i, name in enumerate(names):
        m = maps[name][key]
        fix = scored[name]
        others = np.concatenate([scored[o] for o in names if o != name])
        got = {
            "auc_judd": M.auc_judd(m, fix),
            "auc_shuffled": M.auc_shuffled(m, fix, others),
            "nss": M.nss(m, fix),
            "cc": M.cc(m, maps[name]["other"]),
            "kl": M.kl_divergence(m, maps[name]["other"]),
            "sim": M.sim(m, maps[name]["other"]),
        }
        for metric, value in got.items():
            # The centre map is full of values that are equal in exact arithmetic but may differ in the last
            # bit, depending on numpy's exp (the reference was made with numpy 2.3.5; 2.4 rounds some of them
            # the other way). A pixel whose value moves across a fixated one shifts the AUCs by about 1e-7.
            tol = 1e-6 if key == "centre" and metric.startswith("auc") else 1e-9
            assert value == pytest.approx(expected[metric][i], rel=tol, abs=tol), (key, name, metric)


def test_information_gain_matches_pysaliency(reference):
    ref, maps, scored = reference
    for i, name in enumerate(ref["images"]):
        m = maps[name]
        ig = M.information_gain(m["half_mix"], m["centre"], scored[name])
        assert ig == pytest.approx(ref["values"]["half_mix"]["ig_vs_centre"][i], rel=1e-9, abs=1e-9)
        flat = np.ones_like(m["centre"])
        ig_centre = M.information_gain(m["centre"], flat, scored[name])
        assert ig_centre == pytest.approx(ref["values"]["centre"]["ig_vs_uniform"][i], rel=1e-9, abs=1e-9)


def test_jitter_only_moves_auc_judd_where_values_tie(reference):
    """pysaliency's default AUC-Judd adds 1e-7 noise to break ties; on the
    centre Gaussian (its ties are mirror-image pixels, few of them fixated) it
    moves the score by a few 1e-6, on maps with flat zero regions by up to 1e-2."""
    ref, _, _ = reference
    v = ref["values"]["centre"]
    np.testing.assert_allclose(v["auc_judd"], v["auc_judd_jitter"], atol=1e-5)
    half = ref["values"]["half_u8"]
    assert max(abs(a - b) for a, b in zip(half["auc_judd"], half["auc_judd_jitter"])) > 1e-4


# --- cases worked out by hand ------------------------------------------------

def test_auc_judd_by_hand():
    # Fixated values 0.8 and 0.35, unfixated 0.1 and 0.4. Thresholds 0.8, 0.35
    # give ROC points (0, 1/2) and (1/2, 1); with (0, 0) and (1, 1) the area is
    # 0 + 1/2 * (1/2 + 1) / 2 + 1/2 * (1 + 1) / 2 = 0.875.
    s = np.array([[0.1, 0.4], [0.35, 0.8]])
    fix = np.array([[1, 1], [0, 1]])
    assert M.auc_judd(s, fix) == pytest.approx(0.875)
    # Any increasing transform of the map leaves every AUC unchanged.
    assert M.auc_judd(np.exp(5 * s), fix) == pytest.approx(0.875)
    # Reversed, thresholds -0.35 and -0.8 give points (1/2, 1/2) and (1, 1):
    # area 0.5. Judd's thresholds (fixated values only) cannot trace the curve
    # below the diagonal; the every-value AUC of the same values is 1/4 (of
    # four positive-negative pairs only -0.35 > -0.4 is won).
    assert M.auc_judd(-s, fix) == pytest.approx(0.5)
    assert M.auc_from_values([-0.8, -0.35], [-0.1, -0.4]) == pytest.approx(0.25)


def test_auc_shuffled_by_hand():
    # Positives 3 and 1 against negatives 1, 2, 0: 3 beats all three; 1 beats 0
    # and ties 1 (half a win): (3 + 1.5) / (2 * 3) = 0.75.
    s = np.array([[3.0, 1.0, 1.0], [2.0, 0.0, 9.0]])
    fix = np.array([[0, 0], [1, 0]])
    others = np.array([[2, 0], [0, 1], [1, 1]])
    assert M.auc_shuffled(s, fix, others) == pytest.approx(0.75)
    assert M.auc_from_values([3.0, 1.0], [1.0, 2.0, 0.0]) == pytest.approx(0.75)


def test_nss_by_hand():
    # Map values 0, 0, 0, 4: mean 1, population std sqrt(3); the fixation at
    # the 4 scores (4 - 1) / sqrt(3) = sqrt(3), one at a 0 scores -1/sqrt(3).
    s = np.array([[0.0, 0.0], [0.0, 4.0]])
    assert M.nss(s, np.array([[1, 1]])) == pytest.approx(math.sqrt(3))
    assert M.nss(s, np.array([[1, 1], [0, 0]])) == pytest.approx((math.sqrt(3) - 1 / math.sqrt(3)) / 2)
    # A fixation counted twice weighs twice.
    assert M.nss(s, np.array([[1, 1], [1, 1], [0, 0]])) == pytest.approx((2 * math.sqrt(3) - 1 / math.sqrt(3)) / 3)


def test_cc_by_hand():
    # Centred values (-1.5, -0.5, 0.5, 1.5) and (-1.5, 0.5, -0.5, 1.5):
    # sum of products 4, sums of squares 5 and 5, so r = 4 / 5.
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    b = np.array([[1.0, 3.0], [2.0, 4.0]])
    assert M.cc(a, b) == pytest.approx(0.8)
    assert M.cc(3 * a + 7, b) == pytest.approx(0.8)
    assert M.cc(a, a) == pytest.approx(1.0)
    assert M.cc(-a, a) == pytest.approx(-1.0)


def test_kl_and_sim_by_hand():
    # Prediction P = (1/2, 1/2, 0, 0), ground truth Q uniform (1/4 each).
    p = np.array([[1.0, 1.0], [0.0, 0.0]])
    q = np.ones((2, 2))
    eps = 2.2204e-16
    expected = 2 * 0.25 * math.log(eps + 0.25 / (0.5 + eps)) + 2 * 0.25 * math.log(eps + 0.25 / eps)
    assert M.kl_divergence(p, q) == pytest.approx(expected, rel=1e-12)
    assert M.kl_divergence(q, q) == pytest.approx(0.0, abs=1e-12)
    # Reversed, Q's zeros contribute nothing: 2 * 1/2 * log(1/2 / 1/4) = log 2.
    assert M.kl_divergence(q, p) == pytest.approx(math.log(2), rel=1e-12)
    # SIM: overlap min(1/2, 1/4) twice = 1/2.
    assert M.sim(p, q) == pytest.approx(0.5)
    assert M.sim(q, 5 * q) == pytest.approx(1.0)
    assert M.sim(p, np.array([[0.0, 0.0], [1.0, 1.0]])) == pytest.approx(0.0)


def test_information_gain_by_hand():
    # Model density (3/4, 1/4) vs uniform (1/2, 1/2): a fixation on the first
    # pixel gains log2(1.5) bits, one on the second log2(0.5) = -1.
    s = np.array([[3.0, 1.0]])
    u = np.array([[1.0, 1.0]])
    assert M.information_gain(s, u, np.array([[0, 0]])) == pytest.approx(math.log2(1.5))
    assert M.information_gain(s, u, np.array([[0, 0], [1, 0]])) == pytest.approx((math.log2(1.5) - 1) / 2)
    assert M.information_gain(u, u, np.array([[1, 0]])) == 0.0
    assert M.information_gain(np.array([[1.0, 0.0]]), u, np.array([[1, 0]])) == -math.inf


# --- edge cases --------------------------------------------------------------

def test_constant_prediction_scores_chance():
    flat = np.full((4, 5), 0.3)
    fix = np.array([[0, 0], [4, 3], [2, 1]])
    gt = np.arange(20, dtype=float).reshape(4, 5)
    assert M.auc_judd(flat, fix) == pytest.approx(0.5)
    assert M.auc_shuffled(flat, fix, np.array([[1, 1], [3, 2]])) == pytest.approx(0.5)
    assert M.nss(flat, fix) == 0.0
    assert M.cc(flat, gt) == 0.0
    # An all-zero map is read as the uniform density.
    assert M.sim(np.zeros((4, 5)), np.ones((4, 5))) == pytest.approx(1.0)
    assert M.to_density(np.zeros((2, 2))) == pytest.approx(np.full((2, 2), 0.25))


def test_negative_maps_are_shifted_to_a_density():
    m = np.array([[-1.0, 1.0]])
    np.testing.assert_allclose(M.to_density(m), [[0.0, 1.0]])


@pytest.mark.parametrize("call, message", [
    (lambda: M.auc_judd(np.ones((3, 3)), np.zeros((0, 2), dtype=int)), "no fixations"),
    (lambda: M.nss(np.ones((3, 3)), np.array([[3, 0]])), "outside"),
    (lambda: M.nss(np.ones((3, 3)), np.array([[0, -1]])), "outside"),
    (lambda: M.nss(np.ones((3, 3)), np.array([[0.5, 1.0]])), "integer"),
    (lambda: M.nss(np.ones((3, 3)), np.array([1, 1])), r"\(n, 2\)"),
    (lambda: M.cc(np.ones((3, 3)), np.ones((3, 4))), "shape"),
    (lambda: M.cc(np.eye(3), np.ones((3, 3))), "constant"),
    (lambda: M.sim(np.array([[np.nan, 1.0]]), np.ones((1, 2))), "NaN"),
    (lambda: M.kl_divergence(np.ones(4), np.ones(4)), "2-D"),
    (lambda: M.auc_shuffled(np.ones((3, 3)), np.array([[0, 0]]), np.zeros((0, 2), dtype=int)), "other-image"),
    (lambda: M.auc_judd(np.ones((1, 2)), np.array([[0, 0], [1, 0]])), "every pixel"),
])
def test_bad_input_is_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
