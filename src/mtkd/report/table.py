"""The comparison table a paper prints: every metric of every task per method (mean ± std over seeds), Δm vs the
single-task models and vs the equal-weight MTL model, parameters, GFLOPs, latency and training time.
Metrics carry their unit in the header (mIoU, pAcc, δ1 and the angle thresholds in %, angles in °).

Δm (seed 002, Eq. 4; ``mtkd.metrics.delta_m``) is computed per run against the **mean over seeds** of the
single-task models, then averaged over the method's seeds. Δm is linear in the metrics once the baseline is fixed,
so the mean of the per-seed Δm equals the Δm of the row's mean metrics: the table's Δm can be recomputed by hand
from its own rows. The single-task baseline of a task is the first single-task method of that task in the table
(the caption names it); the equal-weight reference of a row is the equal-weight, teacher-free model with the same
tasks, architecture, backbone and heads. Best values (metrics and Δm, not costs) are marked per column, and
differences whose paired 95 % interval over seeds excludes zero (:mod:`mtkd.report.significance`) get ``†`` (vs
the single-task models) or ``‡`` (vs EW).
"""

from __future__ import annotations

import csv
import html
import io
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable

from rich.table import Table

from mtkd.errors import MtkdError
from mtkd.metrics import METRIC_DIRECTIONS, delta_m
from mtkd.report.runs import MethodRuns
from mtkd.report.significance import DM, Comparison, compare

MARKS = {"single": "†", "ew": "‡"}  # a difference vs that reference whose interval excludes zero
UNITS = {"mIoU": "%", "pAcc": "%", "delta1": "%", "11.25": "%", "22.5": "%", "30": "%", "mean": "°",
         "median": "°", "F@0.5": "%", "odsF": "%", "oisF": "%", "maxF": "%"}  # as mtkd.metrics computes them

Stat = tuple[float, float | None]  # mean, sample std (None with one seed)


@dataclass
class Row:
    label: str
    seeds: int
    tasks: list[str]
    metrics: dict[str, dict[str, Stat]]
    dm_single: Stat | None = None
    dm_ew: Stat | None = None
    cost: dict[str, float] = field(default_factory=dict)  # parameters, gflops, latency_ms
    train_min: float | None = None
    vs_single: dict[str, Comparison] = field(default_factory=dict)  # "Δm" / "<task>/<metric>" -> paired difference
    vs_ew: dict[str, Comparison] = field(default_factory=dict)
    ew_missing: bool = False  # a multi-task row with no equal-weight model of its own architecture
    ew_label: str | None = None  # the row's equal-weight reference


def task_order(task_lists) -> list[str]:
    """Tasks in the order of the method with the most tasks (the multi-task model's), then any others."""
    order: list[str] = []
    for tasks in sorted(task_lists, key=len, reverse=True):
        order += [t for t in tasks if t not in order]
    return order


def stat(values: list[float]) -> Stat:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def metric_stats(group: MethodRuns) -> dict[str, dict[str, Stat]]:
    """Every test metric of every task of a method, as mean and std over its seeds."""
    return {t: {m: stat([r.results["test"][t][m] for r in group.runs]) for m in group.runs[0].results["test"][t]}
            for t in group.tasks}


def mean_metrics(group: MethodRuns) -> dict[str, dict[str, float]]:
    return {t: {m: s[0] for m, s in ms.items()} for t, ms in metric_stats(group).items()}


def single_task_baseline(groups: list[MethodRuns]) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Each task's mean metrics from its first single-task method, and which method that was."""
    base, source = {}, {}
    for g in groups:
        if len(g.tasks) == 1 and g.tasks[0] not in base:
            base[g.tasks[0]], source[g.tasks[0]] = mean_metrics(g)[g.tasks[0]], g.label
    return base, source


def architecture(config: dict[str, Any]) -> tuple:
    m = config["model"]
    return m["arch"], m["backbone"], str(m["head"]), m["decoder_channels"]


def is_equal_weight(g: MethodRuns) -> bool:
    return len(g.tasks) > 1 and g.config["weighting"]["name"] == "ew" and g.config["distill"]["name"] == "none"


def equal_weight_reference(row: MethodRuns, groups: list[MethodRuns]) -> MethodRuns | None:
    for g in groups:
        if is_equal_weight(g) and g.tasks == row.tasks and architecture(g.config) == architecture(row.config):
            return g
    return None


def by_seed(group: MethodRuns, tasks: list[str] | None = None) -> dict[int, dict[str, dict[str, float]]]:
    """``{seed: {task: test metrics}}`` of a method (its own tasks, or ``tasks``)."""
    return {r.seed: {t: r.results["test"][t] for t in (tasks or group.tasks)} for r in group.runs}


def single_task_by_seed(groups: list[MethodRuns], tasks: list[str]) -> dict[int, dict[str, dict[str, float]]]:
    """The baseline single-task runs of ``tasks`` by seed, for the seeds every one of those tasks has."""
    firsts: dict[str, MethodRuns] = {}
    for g in groups:
        if len(g.tasks) == 1:
            firsts.setdefault(g.tasks[0], g)
    if not all(t in firsts for t in tasks):
        return {}
    per_task = {t: by_seed(firsts[t]) for t in tasks}
    seeds = set.intersection(*(set(p) for p in per_task.values()))
    return {s: {t: per_task[t][s][t] for t in tasks} for s in sorted(seeds)}


def delta_stat(group: MethodRuns, base: dict[str, dict[str, float]], notes: list[str]) -> Stat | None:
    """Mean ± std of the per-seed Δm; None (and a note for the caption) when it is undefined."""
    if not all(t in base for t in group.tasks):
        return None
    try:
        return stat([delta_m({t: r.results["test"][t] for t in group.tasks}, base) for r in group.runs])
    except MtkdError as err:  # a baseline metric of 0: the relative change is undefined, not a crash
        note = str(err).removeprefix("delta_m: ")
        if note not in notes:
            notes.append(note)
        return None


def build_rows(groups: list[MethodRuns], costs: dict[str, dict[str, float]] | None = None,
               notes: list[str] | None = None) -> list[Row]:
    """One row per method: single-task models first (in task order), then equal-weight MTL, then the rest in the
    given order;
    ``costs`` maps a label to its measured cost (``report.cost``); why a Δm is undefined is appended to ``notes``."""
    notes = [] if notes is None else notes
    base, source = single_task_baseline(groups)
    rows = []
    order = task_order(g.tasks for g in groups)

    def place(g: MethodRuns) -> tuple[int, int]:
        if len(g.tasks) == 1:
            return 0, order.index(g.tasks[0])
        return (1 if is_equal_weight(g) else 2), 0

    references = {id(g): equal_weight_reference(g, groups) for g in groups}
    for g in sorted(groups, key=place):
        metrics = metric_stats(g)
        ew = references[id(g)]
        if ew is g and not any(r is g for k, r in references.items() if k != id(g)):
            ew = None  # its own and nobody else's reference (Cross-Stitch, MTAN, a bigger teacher): nothing to say
        is_base = len(g.tasks) == 1 and source.get(g.tasks[0]) == g.label
        vs_single = {} if is_base else compare(by_seed(g), single_task_by_seed(groups, g.tasks), base)
        vs_ew = {} if ew is None or ew is g else compare(by_seed(g), by_seed(ew, g.tasks), mean_metrics(ew))
        rows.append(Row(
            g.label, len(g.runs), g.tasks, metrics, delta_stat(g, base, notes),
            delta_stat(g, mean_metrics(ew), notes) if ew is not None else None, dict((costs or {}).get(g.label, {})),
            statistics.fmean(r.results["wall_time_s"] for r in g.runs) / 60 if "wall_time_s" in g.runs[0].results
            else None, vs_single, vs_ew, ew is None and len(g.tasks) > 1, ew.label if ew is not None else None,
        ))
    return rows


# --- columns -------------------------------------------------------------------------------------------------------

def sig4(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 10 else f"{v:.2f}"


@dataclass(frozen=True)
class Column:
    title: str
    higher_better: bool | None  # None: not compared (costs, counts)
    get: Callable[[Row], Stat | float | None]
    fmt: Callable[[float], str] = sig4
    spread: bool = True  # has a std over seeds (the CSV gets a "<title> std" field)
    key: str | None = None  # the comparison it shows: "Δm" or "<task>/<metric>"
    refs: tuple[str, ...] = ()  # the references compared in it: "single", "ew"
    metric: int | None = None  # the metric's index within its task (the terminal shows the first few)

    def marks(self, row: Row) -> str:
        """``†`` / ``‡`` for each reference this cell differs from (interval excluding zero)."""
        found = {"single": row.vs_single, "ew": row.vs_ew}
        return "".join(MARKS[r] for r in self.refs if (c := found[r].get(self.key)) is not None and c.significant)


def columns(rows: list[Row]) -> list[Column]:
    """``seeds``, every metric some row has (tasks in first-seen order), Δm twice, then costs."""
    tasks = task_order(r.tasks for r in rows)
    cols = [Column("seeds", None, lambda r: r.seeds, str, spread=False)]
    for t in tasks:
        for i, (m, up) in enumerate(METRIC_DIRECTIONS[t].items()):
            if any(m in r.metrics.get(t, {}) for r in rows):
                unit = f" {UNITS[m]}" if m in UNITS else ""
                cols.append(Column(f"{t} {m}{unit} {'↑' if up else '↓'}", up,
                                   lambda r, t=t, m=m: r.metrics.get(t, {}).get(m), key=f"{t}/{m}",
                                   refs=("single", "ew"), metric=i))
    signed = lambda v: f"{v:+.2f}".replace("-0.00", "+0.00")  # noqa: E731 - a zero by construction prints as +0
    cols += [Column("Δm % ↑", True, lambda r: r.dm_single, signed, key=DM, refs=("single",)),
             Column("Δm vs EW % ↑", True, lambda r: r.dm_ew, signed, key=DM, refs=("ew",))]
    if any(r.cost for r in rows):
        cols += [Column("params M", None, lambda r: _scaled(r.cost.get("parameters"), 1e-6), "{:.3f}".format, False),
                 Column("GFLOPs", None, lambda r: r.cost.get("gflops"), "{:.3f}".format, False),
                 Column("latency ms", None, lambda r: r.cost.get("latency_ms"), "{:.2f}".format, False)]
    cols.append(Column("train min", None, lambda r: r.train_min, "{:.1f}".format))
    return cols


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _mean(value: Stat | float | None) -> float | None:
    return value[0] if isinstance(value, tuple) else value


def best_rows(rows: list[Row], col: Column) -> set[int]:
    """Indices of the rows holding the column's best mean (ties all marked); none for uncompared columns."""
    if col.higher_better is None:
        return set()
    values = {i: _mean(col.get(r)) for i, r in enumerate(rows)}
    values = {i: v for i, v in values.items() if v is not None and not math.isnan(v)}
    if len(values) < 2:
        return set()
    best = max(values.values()) if col.higher_better else min(values.values())
    return {i for i, v in values.items() if v == best}


def cell(value: Stat | float | None, fmt: Callable[[float], str], pm: str = " ± ", missing: str = "–") -> str:
    """``mean ± std`` with the std at the mean's decimals; ``missing`` for a value the row does not have."""
    if value is None:
        return missing
    if not isinstance(value, tuple):
        return fmt(value)
    mean, std = value
    text = fmt(mean)
    if std is None:
        return text
    decimals = len(text.split(".")[1]) if "." in text else 0
    return f"{text}{pm}{std:.{decimals}f}"


NO_EW = "–¹"  # Δm vs EW of a row whose architecture has no equal-weight run (the caption's footnote)


def grid(rows: list[Row], mark: Callable[[str], str] = str, pm: str = " ± ") -> tuple[list[str], list[list[str]]]:
    """Header and body cells, best cells passed through ``mark``, then the significance marks."""
    cols = columns(rows)
    best = [best_rows(rows, c) for c in cols]

    def text(r: Row, c: Column, is_best: bool) -> str:
        missing = NO_EW if c.refs == ("ew",) and c.key == DM and r.ew_missing else "–"
        shown = cell(c.get(r), c.fmt, pm, missing)
        return (mark(shown) if is_best else shown) + c.marks(r)

    body = [[r.label] + [text(r, c, i in b) for c, b in zip(cols, best)] for i, r in enumerate(rows)]
    return ["method"] + [c.title for c in cols], body


def html_table(rows: list[Row], width: int = 9) -> str:
    """The table as several HTML tables that fit a 1400 px page: Δm and costs first, then the metrics, a task's
    metrics kept together, at most ``width`` value columns each (a task with more gets a table of its own)."""
    header, body = grid(rows, mark=lambda s: f"<b>{s}</b>")
    cols = columns(rows)
    summary = [i for i, c in enumerate(cols, 1) if c.metric is None]
    by_task: dict[str, list[int]] = {}
    for i, c in enumerate(cols, 1):
        if c.metric is not None:
            by_task.setdefault(c.key.split("/")[0], []).append(i)
    parts = [summary]
    for indices in by_task.values():
        if len(parts) == 1 or len(parts[-1]) + len(indices) > width:
            parts.append([])
        parts[-1] += indices
    return "".join(_html_part(header, body, [0, *part]) for part in parts if part)


def _html_part(header: list[str], body: list[list[str]], keep: list[int]) -> str:
    head = "".join(f"<th>{html.escape(header[i])}</th>" for i in keep)
    cells = "".join("<tr>" + "".join(f"<td>{r[i] if r[i].startswith('<b>') else html.escape(r[i])}</td>" for i in keep)
                    + "</tr>" for r in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>"


def markdown_table(rows: list[Row]) -> str:
    header, body = grid(rows, mark=lambda s: f"**{s}**")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body]) + "\n"


def latex_table(rows: list[Row], caption: str = "") -> str:
    """A booktabs ``table`` (needs ``\\usepackage{booktabs}``); best values in bold."""
    header, body = grid(rows, mark=lambda s: f"\\textbf{{{s}}}", pm=" $\\pm$ ")
    esc = lambda s: (s.replace("_", "\\_").replace("%", "\\%").replace("↑", "$\\uparrow$")  # noqa: E731
                     .replace("↓", "$\\downarrow$").replace("Δ", "$\\Delta$").replace("–", "--")
                     .replace("°", "$^\\circ$").replace("¹", "$^1$").replace("†", "$^\\dagger$")
                     .replace("‡", "$^\\ddagger$"))
    marks = lambda s: (s.replace("–", "--").replace("¹", "$^1$").replace("†", "$^\\dagger$")  # noqa: E731
                       .replace("‡", "$^\\ddagger$"))
    lines = ["\\begin{table}[t]", "\\centering", "\\small", f"\\begin{{tabular}}{{l{'r' * (len(header) - 1)}}}",
             "\\toprule", " & ".join(esc(h) for h in header) + " \\\\", "\\midrule"]
    lines += [" & ".join(esc(c) if not c.startswith("\\textbf") else marks(c) for c in r) + " \\\\"
              for r in body]
    lines += ["\\bottomrule", "\\end{tabular}"]
    if caption:
        lines.append(f"\\caption{{{esc(caption)}}}")
    return "\n".join(lines + ["\\end{table}"]) + "\n"


def csv_table(rows: list[Row]) -> str:
    """Machine-readable: per column ``<column>``, ``<column> std`` and, where differences are judged,
    ``<column> sig`` (``†``/``‡`` as in the other tables); full precision, no bold."""
    cols = columns(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["method"] + [f for c in cols for f in (c.title, *((f"{c.title} std",) if c.spread else ()),
                                                            *((f"{c.title} sig",) if c.refs else ()))])
    for r in rows:
        fields = [r.label]
        for c in cols:
            v = c.get(r)
            mean, std = v if isinstance(v, tuple) else (v, None)
            fields += ["" if mean is None else repr(mean)] + (["" if std is None else repr(std)] if c.spread else [])
            fields += [c.marks(r)] if c.refs else []
        writer.writerow(fields)
    return out.getvalue()


def rich_table(rows: list[Row], title: str = "", metrics: int = 2) -> Table:
    """The terminal version: the first ``metrics`` metrics of each task (a terminal is narrower than a page)."""
    header, body = grid(rows, mark=lambda s: f"[bold green]{s}[/]")
    keep = [0] + [i for i, c in enumerate(columns(rows), 1)
                  if (c.metric < metrics if c.metric is not None else c.title not in ("seeds", "params M", "GFLOPs"))]
    table = Table(title=title)
    for i in keep:
        table.add_column(header[i], justify="left" if i == 0 else "right", no_wrap=i == 0)
    for r in body:
        table.add_row(*(r[i] for i in keep))
    return table

