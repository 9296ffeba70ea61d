"""Training curves as PNG: one run's four panels (like the thesis's figure
4.1), or several runs' validation top-1 overlaid (like figures 4.5 and 4.12)."""

from __future__ import annotations

from pathlib import Path

from salclass.errors import UserError
from salclass.run_folder import RunFolder, read_metrics


def _label(run: Path) -> str:
    """The run folder's name, with its model when the name does not say it."""
    name = run.name
    if name.startswith("seed") and name[4:].isdigit():  # a study's runs/<experiment>/seed<k>
        name = f"{run.parent.name}/{name}"
    folder = RunFolder(run)
    if folder.config.is_file():
        model = folder.read_config().get("model")
        if isinstance(model, str) and model.lower() not in name.lower():
            name = f"{name} ({model})"
    return name


def _start_point(run: Path) -> dict | None:
    from salclass.io import read_json

    path = RunFolder(run).start
    return read_json(path)["val"] if path.is_file() else None


def _figure(width: float, height: float, rows: int = 1, cols: int = 1, sharex: bool = False):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False, sharex=sharex)
    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelbottom=True)
    return plt, fig, axes


def plot_run(run: str | Path, out: str | Path) -> Path:
    """2x2 panel: top-1, top-5 and loss (train and validation) and the learning rate, per epoch."""
    run = Path(run)
    metrics = read_metrics(run)
    if not metrics:
        raise UserError(f"{run}: no epoch has finished yet")
    start = _start_point(run)
    epochs = [m["epoch"] for m in metrics]
    plt, fig, axes = _figure(10, 7.5, 2, 2, sharex=True)
    panels = [("top1", "top-1 accuracy (%)", 100.0), ("top5", "top-5 accuracy (%)", 100.0), ("loss", "loss", 1.0)]
    for ax, (key, title, scale) in zip(axes.flat, panels):
        for split, style in (("train", "--"), ("val", "-")):
            xs, ys = list(epochs), [m[split][key] * scale for m in metrics]
            if split == "val" and start is not None:
                xs, ys = [0] + xs, [start[key] * scale] + ys
            ax.plot(xs, ys, style, marker="o" if len(xs) < 30 else None, markersize=3,
                    label="validation" if split == "val" else "training")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    ax = axes[1, 1]
    ax.step(epochs, [m["lr"] for m in metrics], where="mid", color="tab:green",
            marker="o" if len(epochs) < 30 else None, markersize=3)
    ax.set_yscale("log")
    ax.set_title("learning rate")
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3, which="both")
    fig.suptitle(_label(run))
    fig.tight_layout()
    return _save(plt, fig, out)


def plot_runs(runs: list[str | Path], out: str | Path) -> Path:
    """Validation top-1 of several runs on one axis."""
    plt, fig, axes = _figure(8, 5)
    ax = axes[0, 0]
    for run in map(Path, runs):
        metrics = read_metrics(run)
        xs = [m["epoch"] for m in metrics]
        ys = [m["val"]["top1"] * 100 for m in metrics]
        start = _start_point(run)
        if start is not None:
            xs, ys = [0] + xs, [start["top1"] * 100] + ys
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=_label(run))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 accuracy (%)")
    ax.set_title("validation top-1")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(plt, fig, out)


def _save(plt, fig, out: str | Path) -> Path:
    import io

    from salclass.io import atomic_write_bytes

    out = Path(out)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return out


def plot_cli(runs: list[str], out: str) -> int:
    if not str(out).lower().endswith(".png"):
        raise UserError(f"--out {out}: write a .png file")
    path = plot_run(runs[0], out) if len(runs) == 1 else plot_runs(runs, out)
    print(f"wrote {path}")
    return 0
