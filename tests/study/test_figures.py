"""The report's figures show all of their words: no title, label or legend entry cut off at the edge."""

from __future__ import annotations

import pytest

from planted import plant
from salclass.study import figures
from salclass.study.folder import load_study_config
from salclass.study.results import collect


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted") / "study"
    plant(root)
    return collect(root, load_study_config(root))


@pytest.fixture
def drawn(monkeypatch):
    """The figures a drawing function made, kept open instead of written."""
    kept = []
    monkeypatch.setattr(figures, "_save", lambda fig, out: kept.append(fig))
    return kept


def _cut_off(fig) -> str:
    """Where the drawn words and lines reach past the figure's edges (inches), or "" if nowhere."""
    fig.canvas.draw()
    tight = fig.get_tightbbox(fig.canvas.get_renderer())
    w, h = fig.get_size_inches()
    edges = {"left": -tight.x0, "bottom": -tight.y0, "right": tight.x1 - w, "top": tight.y1 - h}
    return ", ".join(f"{k} by {v:.2f} in" for k, v in edges.items() if v > 0.01)


def test_the_comparisons_figure_shows_all_its_words(results, drawn, tmp_path):
    assert figures.comparisons(results, tmp_path / "c.png")
    [fig] = drawn
    assert not _cut_off(fig), f"{fig.axes[0].get_title()!r}: cut off at the {_cut_off(fig)}"


def test_the_curves_show_all_their_words(results, drawn, tmp_path):
    for name, title, names in figures.figure_list(results.cfg):
        figures.curves(results, names, title, tmp_path / f"{name}.png")
    assert drawn
    for fig in drawn:
        assert not _cut_off(fig), f"{fig.axes[0].get_title()!r}: cut off at the {_cut_off(fig)}"
