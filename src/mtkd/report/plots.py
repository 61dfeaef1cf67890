"""The figures of ``mtkd report``: training curves, Δm bars, the accuracy–cost trade-off, task weights and KD losses.

Every figure is drawn on its own :class:`~matplotlib.figure.Figure` with an Agg canvas (pyplot and the global
backend are left alone; the style is applied with ``rc_context`` for the duration of a call), written as
``<stem>.png`` and ``<stem>.pdf`` into ``out``, and the paths written are returned. A figure with nothing to show
is not written. A method keeps its colour in every figure when the same :func:`method_colours` mapping is passed.

A method is given as ``{label: [run folder of each seed]}``; curves show the mean over seeds, and a shaded
min–max band when there are two seeds or more.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, StrMethodFormatter
from matplotlib.transforms import Bbox

from mtkd.atomic import write_atomic
from mtkd.metrics import METRIC_DIRECTIONS
from mtkd.tasks import TASKS

Series = list[tuple[int, float]]  # (step, value), sorted by step
Logs = dict[str, Series]  # column of metrics.csv -> its logged values
Curve = tuple[np.ndarray, np.ndarray]  # x, y of one seed

SMOOTHING = 0.8  # EMA of noisy training losses: s_t = α·s_(t-1) + (1-α)·x_t with α = 0.8, debiased at the start
CONSTANT_TOL = 1e-6  # a series whose values stay within this (relative to their size) is constant: not plotted
_STYLE = {"font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "legend.fontsize": 9,
          "xtick.labelsize": 9.5, "ytick.labelsize": 9.5, "figure.titlesize": 12, "axes.grid": True,
          "grid.alpha": 0.3, "savefig.dpi": 150, "pdf.fonttype": 42}  # 42: TrueType, editable text in PDFs
_styled = matplotlib.rc_context(_STYLE)  # used as a decorator: the style holds during one call only
_PALETTE = [*matplotlib.colormaps["tab10"].colors, *matplotlib.colormaps["tab20"].colors[1::2]]
# Lines inside one method's panel get other colours than methods: Dark2 less its yellow, hard to see on white.
_SERIES_PALETTE = [c for i, c in enumerate(matplotlib.colormaps["Dark2"].colors) if i != 5]
_LINESTYLES = ["-", "--", ":", "-."]
_GAIN, _LOSS = "#1b9e77", "#d95f02"  # Δm bars above / below zero (colour-blind safe)


def method_colours(labels: Iterable[str]) -> dict[str, Any]:
    """A colour per label in the order given (tab10, then tab20's light shades, cycling).

    Build it once from every label of a report and pass it to each figure so a method keeps its colour.
    """
    return {label: _PALETTE[i % len(_PALETTE)] for i, label in enumerate(dict.fromkeys(labels))}


def _readable(colour: Any) -> tuple[float, float, float]:
    """``colour`` darkened when it is too light for text on white (tab20's light shades)."""
    r, g, b = matplotlib.colors.to_rgb(colour)
    light = 0.2126 * r + 0.7152 * g + 0.0722 * b  # relative luminance (sRGB weights)
    return (r * 0.6, g * 0.6, b * 0.6) if light > 0.6 else (r, g, b)


def read_logs(run_dir: Path) -> Logs:
    """Every logged column of one run as ``{column: [(step, value), ...]}``, empty and non-finite cells skipped.

    The ``logs/version_*/metrics.csv`` of its attempts are merged in version order: a resumed run logs into a new
    version and continues the step count, so a later version's value replaces an earlier one at the same step.
    No logs give ``{}``.
    """
    merged: dict[str, dict[int, float]] = {}
    for path in sorted(Path(run_dir).glob("logs/version_*/metrics.csv"), key=_version_key):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                step = _number(row.pop("step", None))
                if step is None:
                    continue
                for column, cell in row.items():
                    value = _number(cell)
                    if value is not None:
                        merged.setdefault(column, {})[int(step)] = value
    return {column: sorted(values.items()) for column, values in merged.items()}


def _version_key(path: Path) -> tuple[float, str]:
    """``version_10`` after ``version_9``; a custom version name after all numbered ones."""
    suffix = path.parent.name.removeprefix("version_")
    return (int(suffix) if suffix.isdigit() else math.inf, suffix)


def _number(value: Any) -> float | None:
    """A CSV cell or a row's value as a float; None where it is empty, missing, not a number or not finite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _by_epoch(logs: Logs, column: str) -> Curve | None:
    """A validation metric against the epoch it closed (1 = after the first epoch), the last value of an epoch."""
    epoch_at = dict(logs.get("epoch", []))
    values = {epoch_at[s] + 1: v for s, v in logs.get(column, []) if s in epoch_at}
    return (np.array(list(values)), np.array(list(values.values()))) if values else None


def _by_step(logs: Logs, column: str) -> Curve | None:
    series = logs.get(column)
    return (np.array([s for s, _ in series], float), np.array([v for _, v in series])) if series else None


def _ema(y: np.ndarray, alpha: float = SMOOTHING) -> np.ndarray:
    """Exponential moving average, divided by ``1 - α^t`` so the first points are not pulled towards 0."""
    out, acc = np.empty(len(y)), 0.0
    for i, v in enumerate(y):
        acc = alpha * acc + (1 - alpha) * v
        out[i] = acc / (1 - alpha ** (i + 1))
    return out


def _aggregate(curves: Sequence[Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Mean, min and max over seeds at every x logged by any seed, within the x range that all of them reached."""
    start, stop = max(x[0] for x, _ in curves), min(x[-1] for x, _ in curves)
    grid = np.unique(np.concatenate([x for x, _ in curves]))
    grid = grid[(grid >= start) & (grid <= stop)]
    if grid.size == 0:
        return None
    ys = np.stack([np.interp(grid, x, y) for x, y in curves])
    return grid, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)


def _plot_seeds(ax: Axes, curves: Sequence[Curve], colour: Any, label: str, smooth: bool = False,
                linestyle: str = "-") -> bool:
    """One line (mean over seeds, EMA-smoothed per seed if ``smooth``) with a min–max band; False if nothing drawn."""
    curves = [(x, _ema(y) if smooth else y) for x, y in curves]
    stats = _aggregate(curves) if curves else None
    if stats is None:
        return False
    x, mean, low, high = stats
    ax.plot(x, mean, color=colour, label=label, linestyle=linestyle, lw=1.6, marker="o" if len(x) <= 20 else None,
            ms=3.5)
    if len(curves) > 1:
        ax.fill_between(x, low, high, color=colour, alpha=0.18, lw=0)
    return True


def _log_if_wide(ax: Axes) -> None:
    """Log y when the positive values drawn span more than two decades (linear as soon as one is <= 0)."""
    ys = np.concatenate([line.get_ydata() for line in ax.get_lines()] or [np.ones(1)])
    if ys.min() > 0 and ys.max() / ys.min() > 100:
        ax.set_yscale("log")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out: Path, stem: str) -> list[Path]:
    """``<stem>.png`` and ``<stem>.pdf`` in ``out`` (created); the PDF carries no date so rebuilding is byte-stable."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    write_atomic(paths[0], lambda f: fig.savefig(f, format="png"))
    write_atomic(paths[1], lambda f: fig.savefig(f, format="pdf", metadata={"CreationDate": None}))
    return paths


def _legend_outside(fig: Figure) -> None:
    """One legend for all panels, right of them, each label once."""
    entries: dict[str, Any] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(entries.values(), entries.keys(), loc="outside right upper")


def _band_note(methods: Mapping[str, Sequence[Path]]) -> str:
    seeds = max((len(runs) for runs in methods.values()), default=0)
    return "mean over seeds, band: min–max" if seeds > 1 else "one run per method"


def _read_all(methods: Mapping[str, Sequence[Path]]) -> dict[str, list[Logs]]:
    return {label: [read_logs(run) for run in runs] for label, runs in methods.items()}


def _tasks_in(logs: Mapping[str, list[Logs]]) -> list[str]:
    """Tasks with a logged training loss, in the order of :data:`mtkd.tasks.TASKS` (others after)."""
    found = {c.removeprefix("train/loss/") for runs in logs.values() for log in runs for c in log
             if c.startswith("train/loss/")}
    return [t for t in TASKS if t in found] + sorted(found - set(TASKS))


@_styled
def training_curves(methods: Mapping[str, Sequence[Path]], out: Path,
                    colours: Mapping[str, Any] | None = None) -> list[Path]:
    """Per task ``curves_<task>``: its training loss vs step and its monitor metric on val vs epoch; and
    ``curves_val_loss``: the validation loss vs epoch. One line per method."""
    logs = _read_all(methods)
    colours = {**method_colours(methods), **(colours or {})}
    note = _band_note(methods)
    written = [path for task in _tasks_in(logs) for path in _task_curves(task, logs, colours, note, out)]
    fig = _figure(7.5, 4)
    ax = fig.subplots()
    drawn = [_plot_seeds(ax, _curves(runs, _by_epoch, "val/loss"), colours[label], label)
             for label, runs in logs.items()]
    ax.set(xlabel="epoch", ylabel="val loss (sum over tasks)", title=f"Validation loss ({note})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return written + _finish(fig, out, "curves_val_loss", any(drawn))


def _task_curves(task: str, logs: Mapping[str, list[Logs]], colours: Mapping[str, Any], note: str,
                 out: Path) -> list[Path]:
    """``curves_<task>``: the task's training loss vs step (left), its monitor metric on val vs epoch (right)."""
    fig = _figure(11, 4)
    left, right = fig.subplots(1, 2)
    monitor = TASKS[task].monitor if task in TASKS else "?"
    panels = [(left, _by_step, f"train/loss/{task}", True), (right, _by_epoch, f"val/{task}/{monitor}", False)]
    drawn = [_plot_seeds(ax, _curves(runs, along, column), colours[label], label, smooth)
             for label, runs in logs.items() for ax, along, column, smooth in panels]
    higher = METRIC_DIRECTIONS.get(task, {}).get(monitor)
    arrow = "" if higher is None else " ↑ higher is better" if higher else " ↓ lower is better"
    left.set(xlabel="step", ylabel=f"train loss (EMA α={SMOOTHING})", title=f"{task}: training loss")
    right.set(xlabel="epoch", ylabel=f"{task}/{monitor}{arrow}", title=f"{task}: {monitor} on the validation set")
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (left, right):
        _log_if_wide(ax)
        if not ax.get_lines():
            ax.text(0.5, 0.5, "not logged", transform=ax.transAxes, ha="center", va="center", color="0.5")
    fig.suptitle(f"{task} ({note})")
    return _finish(fig, out, f"curves_{task}", any(drawn))


def _curves(runs: list[Logs], along: Callable[[Logs, str], Curve | None], column: str) -> list[Curve]:
    """``column`` of each seed that logged it, against step or epoch."""
    return [c for log in runs if (c := along(log, column)) is not None]


def _finish(fig: Figure, out: Path, stem: str, drawn: bool) -> list[Path]:
    """Legend and save when anything was drawn; an empty figure is dropped."""
    if not drawn:
        return []
    _legend_outside(fig)
    return _save(fig, out, stem)


@_styled
def delta_m_bars(rows: Sequence[Mapping[str, Any]], out: Path, reference: str = "single-task",
                 stem: str = "delta_m") -> list[Path]:
    """``<stem>``: a horizontal bar of Δm (%) per method in the order given, with its 95 % interval as error bar
    when ``ci`` is given (else ± its std over seeds).

    ``rows`` have ``label``, ``dm`` (mean, %), ``dm_std`` (None or NaN: no error bar), ``n`` (seeds) and optionally
    ``ci`` (low, high) of the paired difference to the reference; rows without a Δm are left out. An interval
    excluding zero is drawn solid, one including zero dashed.
    """
    rows = [r for r in rows if _number(r.get("dm")) is not None]
    if not rows:
        return []
    dm = np.array([_number(r["dm"]) for r in rows])
    intervals = any(r.get("ci") for r in rows)
    if intervals:
        low = np.array([r["ci"][0] if r.get("ci") else d for r, d in zip(rows, dm)])
        high = np.array([r["ci"][1] if r.get("ci") else d for r, d in zip(rows, dm)])
    else:
        std = np.array([_number(r.get("dm_std")) or 0.0 for r in rows])
        low, high = dm - std, dm + std
    y = np.arange(len(rows))
    fig = _figure(8.5, 1.6 + 0.42 * len(rows))
    ax = fig.subplots()
    ax.barh(y, dm, color=np.where(dm >= 0, _GAIN, _LOSS), height=0.65)
    for yi, d, lo, hi in zip(y, dm, low, high):
        if hi > lo:
            real = lo > 0 or hi < 0
            bar = ax.errorbar(d, yi, xerr=[[d - lo], [hi - d]], fmt="none", ecolor="0.15", capsize=3, lw=1.2)
            bar[2][0].set_linestyle("-" if real or not intervals else "--")
    ax.axvline(0, color="0.2", lw=0.9)
    for yi, r, d, lo, hi in zip(y, rows, dm, low, high):  # the values as a column right of the axes
        spread = "" if hi <= lo else f" [{lo:+.2f}, {hi:+.2f}]" if intervals else f" ± {(hi - lo) / 2:.2f}"
        text = f"{d:+.2f}{spread}" + (f"  (n={r['n']})" if r.get("n") else "")
        ax.annotate(text, (1, yi), xycoords=ax.get_yaxis_transform(), xytext=(8, 0), textcoords="offset points",
                    va="center", fontsize=9.5)
    ax.set_yticks(y, [str(r["label"]) for r in rows])
    ax.invert_yaxis()  # first row on top
    ax.grid(axis="y", visible=False)
    ax.margins(x=0.08, y=0.5 / len(rows))
    what = ("bars: 95 % paired t-interval over seeds; dashed: it includes 0, not judged real" if intervals
            else "bars: std over seeds" if np.any(high > low) else "one seed: no interval")
    ax.set(xlabel="Δm (%)  ↑ higher is better", title=f"Δm vs {reference}\n{what}")
    return _save(fig, out, stem)


def pareto_front(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, Δm) points no other point beats on both (cheaper or as cheap, and higher Δm), by cost."""
    front: list[tuple[float, float]] = []
    for cost, dm in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or dm > front[-1][1]:
            front.append((cost, dm))
    return front


@_styled
def tradeoff(rows: Sequence[Mapping[str, Any]], out: Path, cost_key: str = "gflops", cost_label: str = "GFLOPs",
             colours: Mapping[str, Any] | None = None) -> list[Path]:
    """``tradeoff_<cost_key>``: Δm (%) against inference cost per method, labelled, with the Pareto front (drawn
    and named in the legend when it joins two points or more).

    Rows without the cost or without Δm are left out; a row with ``reference: True`` (the single-task models) is a
    black square, not a method colour. The x axis is logarithmic when costs span over a decade.
    """
    kept = [r for r in rows if _number(r.get(cost_key)) is not None and _number(r.get("dm")) is not None]
    points = [(str(r["label"]), _number(r[cost_key]), _number(r["dm"]), _number(r.get("dm_std")) or 0.0)
              for r in kept]
    if not points:
        return []
    references = {str(r["label"]) for r in kept if r.get("reference")}
    colours = {**method_colours(p[0] for p in points if p[0] not in references), **(colours or {})}
    fig = _figure(8, 5.5)
    ax = fig.subplots()
    ax.axhline(0, color="0.5", lw=0.8)
    for label, cost, dm, std in points:
        reference = label in references
        ax.errorbar(cost, dm, yerr=std or None, fmt="s" if reference else "o", ms=7, capsize=3, zorder=3,
                    color="black" if reference else colours[label], label=label if reference else None)
    front = pareto_front((cost, dm) for _, cost, dm, _ in points)
    if len(front) > 1:
        ax.step(*zip(*front), where="post", color="0.35", ls="--", lw=1.2, label="Pareto front", zorder=2)
    costs = [cost for _, cost, _, _ in points]
    if min(costs) > 0 and max(costs) / min(costs) > 10:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 1 2 5 10 20 ... written plainly, not 10^k
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(0.12)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")
    ax.set(xlabel=f"inference cost ({cost_label}, lower is better)", ylabel="Δm (%)  ↑ higher is better",
           title=f"Δm vs {cost_label} (mean ± std over seeds)")
    _label_points(fig, ax, [(label, cost, dm, std) for label, cost, dm, std in points], front)
    return _save(fig, out, f"tradeoff_{cost_key}")


# Candidate label positions around a point, tried in order: (dx, dy) in points and the text's alignment.
_LABEL_SPOTS = [(6, 4, "left", "bottom"), (6, -4, "left", "top"), (-6, 4, "right", "bottom"),
                (-6, -4, "right", "top"), (0, 9, "center", "bottom"), (0, -9, "center", "top"),
                (9, 0, "left", "center"), (-9, 0, "right", "center")]


def _label_points(fig: Figure, ax: Axes, points: Sequence[tuple[str, float, float, float]],
                  front: Sequence[tuple[float, float]]) -> None:
    """Label each (label, x, y, std) point at the first spot around it that covers no marker, error bar, Pareto
    step, legend or earlier label and stays inside the axes (else where it covers least). The layout is computed
    first, then frozen so that what was checked stays true."""
    fig.canvas.draw()
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    frame = ax.get_window_extent(renderer)
    legend = ax.get_legend()
    taken = _obstacles(ax, points, front) + ([legend.get_window_extent(renderer)] if legend else [])
    for label, x, y, _ in points:
        best = None
        for dx, dy, ha, va in _LABEL_SPOTS:
            text = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=9)
            box = text.get_window_extent(renderer)
            clash = sum(_overlap(box, other) for other in taken) + box.width * box.height - _overlap(box, frame)
            if best is None or clash < best[0]:
                if best is not None:
                    best[1].remove()
                best = (clash, text, box)
            else:
                text.remove()
            if clash == 0:
                break
        taken.append(best[2])  # type: ignore[index]


def _obstacles(ax: Axes, points: Sequence[tuple[str, float, float, float]],
               front: Sequence[tuple[float, float]]) -> list[Bbox]:
    """Pixel boxes of the markers with their error bars and of each segment of the Pareto steps."""
    def box(a: np.ndarray, b: np.ndarray, pad: float) -> Bbox:
        return Bbox.from_extents(*(np.minimum(a, b) - pad), *(np.maximum(a, b) + pad))

    bars = [box(*ax.transData.transform([(x, y - std), (x, y + std)]), 6) for _, x, y, std in points]
    corners = [front[0]]
    for cost, dm in front[1:]:
        corners += [(cost, corners[-1][1]), (cost, dm)]
    pixels = ax.transData.transform(corners)
    return bars + [box(a, b, 2) for a, b in zip(pixels, pixels[1:])]


def _overlap(a: Bbox, b: Bbox) -> float:
    both = Bbox.intersection(a, b)
    return 0.0 if both is None else both.width * both.height


def _varies(curves: Sequence[Curve]) -> bool:
    """Whether a series moves at all in any seed (equal weighting logs a constant 1: nothing to see)."""
    values = np.concatenate([y for _, y in curves])
    return bool(np.ptp(values) > CONSTANT_TOL * max(1.0, np.abs(values).max()))


def _method_panels(methods: Mapping[str, Sequence[Path]], prefixes: tuple[str, ...], out: Path, stem: str, *,
                   ylabel: str, title: str, smooth: bool, keep: Callable[[Sequence[Curve]], bool],
                   colours: Mapping[str, Any] | None) -> list[Path]:
    """One panel per method with the columns starting with ``prefixes`` that ``keep`` accepts (mean over seeds);
    methods with none get no panel, and no panel at all writes nothing."""
    panels: dict[str, dict[str, list[Curve]]] = {}
    for label, runs in _read_all(methods).items():
        columns = sorted({c for log in runs for c in log if c.startswith(prefixes)},
                         key=lambda c: (next(i for i, p in enumerate(prefixes) if c.startswith(p)), c))
        chosen = {_short(c): curves for c in columns if keep(curves := _curves(runs, _by_step, c))}
        if chosen:
            panels[label] = chosen
    if not panels:
        return []
    colours = {**method_colours(methods), **(colours or {})}
    hue = _series_colours(name for chosen in panels.values() for name in chosen)
    cols = min(2, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = _figure(6.2 * cols, 3.3 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (label, chosen) in zip(axes, panels.items()):
        dash = {kind: _LINESTYLES[i % len(_LINESTYLES)]
                for i, kind in enumerate(dict.fromkeys(n.rpartition("/")[0] for n in chosen))}
        for name, curves in chosen.items():
            _plot_seeds(ax, curves, hue[name.rsplit("/", 1)[-1]], name, smooth, dash[name.rpartition("/")[0]])
        _log_if_wide(ax)
        seeds = len(methods[label])
        ax.set_title(f"{label} ({f'mean over {seeds} seeds, band: min–max' if seeds > 1 else 'one run'})",
                     color=_readable(colours[label]))
        ax.set(xlabel="step", ylabel=ylabel)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=8.5)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return _save(fig, out, stem)


def _series_colours(names: Iterable[str]) -> dict[str, Any]:
    """A colour per last part of a series name (``stl/depth`` -> ``depth``), the same in every panel: the tasks
    first in :data:`mtkd.tasks.TASKS` order, then the rest (``afd``, ``trajectory``) as they come. Within a panel
    the kind (``stl``, ``kd``) sets the dash."""
    keys = list(dict.fromkeys(name.rsplit("/", 1)[-1] for name in names))
    keys = [t for t in TASKS if t in keys] + [k for k in keys if k not in TASKS]
    return {key: _SERIES_PALETTE[i % len(_SERIES_PALETTE)] for i, key in enumerate(keys)}


def _short(column: str) -> str:
    """A column as its legend shows it: ``train/weight/depth`` -> ``weight/depth``,
    ``train/distill/otw/depth`` -> ``otw/depth``, ``train/kd/afd`` -> ``afd``."""
    return column.removeprefix("train/").removeprefix("kd/").removeprefix("distill/")


@_styled
def weights_over_time(methods: Mapping[str, Sequence[Path]], out: Path,
                      colours: Mapping[str, Any] | None = None) -> list[Path]:
    """``weights``: per method, the task weights of its weighting (``train/weight/<task>``) and the weights its
    distiller logs (``train/distill/*``: teacher, OTW, AFD weights) vs step; constant series are left out."""
    return _method_panels(methods, ("train/weight/", "train/distill/"), out, "weights", ylabel="weight",
                          title="Task and distillation weights during training", smooth=False, keep=_varies,
                          colours=colours)


@_styled
def kd_losses(methods: Mapping[str, Sequence[Path]], out: Path,
              colours: Mapping[str, Any] | None = None) -> list[Path]:
    """``kd_losses``: per method, each distillation loss it logs (``train/kd/*``) vs step, EMA-smoothed."""
    return _method_panels(methods, ("train/kd/",), out, "kd_losses", ylabel=f"KD loss (EMA α={SMOOTHING})",
                          title="Distillation losses during training", smooth=True, keep=lambda seeds: True,
                          colours=colours)
