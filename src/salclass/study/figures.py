"""The report's PNG figures: every comparison's difference at a glance, validation
curves, and a grid of images with their maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from salclass.errors import UserError
from salclass.study.config import GROUP_TITLES, StudyConfig
from salclass.study.folder import StudyFolder
from salclass.say import counted
from salclass.study import stats
from salclass.study.results import StudyResults, percent

# Verdict -> (colour, legend text); a verdict not listed is drawn like "no verdict".
_VERDICT_STYLE = {stats.BETTER: ("#1a7f37", "better"), stats.WORSE: ("#c0392b", "worse"),
                  stats.NOISE: ("#6e7781", "not distinguishable from noise")}
_NO_VERDICT_STYLE = ("#b0b7bf", "no verdict (one seed)")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    return plt


def curves(res: StudyResults, names: list[str], title: str, out: Path) -> bool:
    """Validation top-1 per epoch of `names` (mean over seeds, band = min..max). False if nothing to plot."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=110)
    plotted = 0
    for name in names:
        exp = res.cfg.experiment(name)
        runs = [r.curve for r in res.experiments[name].runs.values() if r.curve]
        if not runs:
            continue
        n = min(len(c) for c in runs)
        epochs = np.array([e for e, _ in runs[0][:n]])
        vals = np.array([[v for _, v in c[:n]] for c in runs])
        label = name + (" (mean subtracted)" if exp.mean_subtract else "")
        line, = ax.plot(epochs, vals.mean(axis=0), marker="o", markersize=3, label=label)
        if len(runs) > 1:
            ax.fill_between(epochs, vals.min(axis=0), vals.max(axis=0), color=line.get_color(), alpha=0.15)
        plotted += 1
    if not plotted:
        plt.close(fig)
        return False
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out)
    return True


def comparisons(res: StudyResults, out: Path) -> bool:
    """Every comparison's top-1 difference with its 95% interval, coloured by its
    verdict, beside the thesis's difference where it gives one. False if no
    comparison has a result yet."""
    rows = [p for p in res.pairs if p.result is not None]
    if not rows:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 1.7 + 0.42 * len(rows)), dpi=110)
    seeds = {p.result.seeds for p in rows}
    handles: dict[str, object] = {}
    for y, pair in enumerate(reversed(rows)):
        iv = pair.result.top1
        colour, text = _VERDICT_STYLE.get(pair.result.verdict, _NO_VERDICT_STYLE)
        diff, low, high = percent(iv.diff), percent(iv.low), percent(iv.high)
        handles[text] = ax.errorbar(diff, y, xerr=[[diff - low], [high - diff]], fmt="o", color=colour, capsize=3,
                                    markersize=5, linewidth=1.6)
        if pair.thesis_delta is not None:
            handles["the thesis (ImageNet, one run)"] = ax.plot(pair.thesis_delta, y, "x", color="black")[0]
    labels = [f"{p.variant} vs {p.against}" + (f" ({counted(p.result.seeds, 'seed')})" if len(seeds) > 1 else "")
              for p in reversed(rows)]
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("difference in validation top-1 (percentage points)")
    one_seed = f", {counted(seeds.pop(), 'seed')}" if len(seeds) == 1 else ""
    # Two lines: beside long experiment names one would run past the figure's right edge.
    ax.set_title(f"Each comparison's top-1 difference with its 95% interval{one_seed}\n"
                 "colour: the verdict after Holm's adjustment", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    order = [text for _, text in [*_VERDICT_STYLE.values(), _NO_VERDICT_STYLE]] + ["the thesis (ImageNet, one run)"]
    keys = [k for k in order if k in handles]
    ax.legend([handles[k] for k in keys], keys, fontsize=7, loc="upper center", ncol=min(3, len(keys)),
              bbox_to_anchor=(0.5, -0.5 / len(rows) - 0.12), frameon=False)
    fig.tight_layout()
    _save(fig, out)
    return True


def example_grid(images: np.ndarray, maps: np.ndarray, titles: list[str], out: Path) -> None:
    """Row 1: images; row 2: their saliency maps; row 3: maps over the images."""
    plt = _pyplot()
    n = len(images)
    fig, axes = plt.subplots(3, n, figsize=(1.8 * n, 5.6), dpi=100, squeeze=False)
    for i in range(n):
        img = images[i]
        m = maps[i].astype(np.float32) / 255.0
        axes[0, i].imshow(img)
        axes[0, i].set_title(titles[i], fontsize=7)
        axes[1, i].imshow(m, cmap="gray", vmin=0, vmax=1)
        axes[2, i].imshow(img)
        axes[2, i].imshow(m, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        for r in range(3):
            axes[r, i].axis("off")
    axes[0, 0].text(-0.1, 0.5, "image", transform=axes[0, 0].transAxes, rotation=90, va="center", ha="right")
    axes[1, 0].text(-0.1, 0.5, "map", transform=axes[1, 0].transAxes, rotation=90, va="center", ha="right")
    axes[2, 0].text(-0.1, 0.5, "overlay", transform=axes[2, 0].transAxes, rotation=90, va="center", ha="right")
    fig.tight_layout()
    _save(fig, out)


def _save(fig, out: Path) -> None:
    """Render in memory, then write atomically: a refused write names the file."""
    import io

    from salclass.io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _pyplot().close(fig)
    atomic_write_bytes(out, buf.getvalue())


def figure_list(cfg: StudyConfig) -> list[tuple[str, str, list[str]]]:
    """(file stem, title, experiments) of every curve figure: the configured ones, else one per experiment group."""
    if cfg.figures:
        return [(f.name, f.title, f.experiments) for f in cfg.figures]
    return [(f"curves_{group}", title, [e.name for e in cfg.experiments if e.stage == group])
            for group, title in GROUP_TITLES.items() if any(e.stage == group for e in cfg.experiments)]


def draw_figures(res: StudyResults, dest: StudyFolder) -> dict[str, Path]:
    """Every PNG of the report, written under dest's figures/ before any section
    is built; a figure that has nothing to show is removed if an earlier report
    drew it. Returns the drawn ones by file stem."""
    drawn = {}
    if comparisons(res, dest.comparisons_figure):
        drawn["comparisons"] = dest.comparisons_figure
    elif dest.comparisons_figure.exists():
        dest.comparisons_figure.unlink()
    for name, title, names in figure_list(res.cfg):
        path = dest.figures / f"{name}.png"
        if curves(res, names, title, path):
            drawn[name] = path
        elif path.exists():
            path.unlink()
    grid = _examples(res, dest)
    if grid is not None:
        drawn["examples"] = grid
    return drawn


def _examples(res: StudyResults, dest: StudyFolder) -> Path | None:
    """The first validation images of each class in turn, so every class shows up.
    Without the store, the grid a copy of the records kept."""
    import shutil

    from salclass.data import Store

    try:
        s = Store.open(res.study.val_split)
    except UserError:
        kept = res.study.examples_grid
        if not kept.is_file():
            return None
        path = dest.examples_grid
        if path.resolve() != kept.resolve():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(kept, path)
        return path
    if not s.has_saliency or s.count == 0:
        return None
    labels = np.asarray(s.labels)
    per_class = [list(np.flatnonzero(labels == k)) for k in range(len(s.classes))]
    rows: list[int] = []
    while len(rows) < min(res.cfg.examples, s.count):
        for idx in per_class:
            if idx and len(rows) < res.cfg.examples:
                rows.append(int(idx.pop(0)))
    rows.sort()
    names = [name for _, name in s.classes]
    titles = [names[int(labels[i])][:18] for i in rows]
    path = dest.examples_grid
    example_grid(np.asarray(s.images[rows]), np.asarray(s.saliency[rows]), titles, path)
    return path
