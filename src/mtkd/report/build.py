"""``mtkd report DIR``: find the runs, build the tables, draw the figures, write ``report.html``.

Writes into ``DIR/report/`` (or ``out``): ``table.{md,csv,tex}``, the figures as PNG and PDF, and ``report.html``.
Runs of several test splits (datasets) get one section each, in a subfolder named after the split.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mtkd.atomic import write_text
from mtkd.errors import MtkdError
from mtkd.report import html as page
from mtkd.report import significance
from mtkd.report.cost import run_cost
from mtkd.report.runs import MethodRuns, by_dataset, find_runs, group_methods, study_failures
from mtkd.report.table import (Row, build_rows, csv_table, equal_weight_reference, html_table, latex_table,
                               markdown_table, single_task_baseline, task_order)


@dataclass
class Report:
    html: Path
    tables: dict[str, list[Row]]  # split name -> rows
    files: list[Path]
    incomplete: list[tuple[str, str]]


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "data"


def measure_costs(groups: list[MethodRuns]) -> dict[str, dict[str, float]]:
    """Each method's inference cost, measured once per distinct student (same model config, tasks, data size), so
    rows sharing an architecture show the same numbers."""
    by_model: dict[str, dict[str, float]] = {}
    costs = {}
    for g in groups:
        run = g.runs[0]
        key = json.dumps([g.config["model"], g.tasks, g.config["data"].get("rooms"), g.config["data"].get("root")],
                         sort_keys=True)
        if key not in by_model:
            by_model[key] = run_cost(run.path, run.config)
        costs[g.label] = by_model[key]
    return costs


def caption(groups: list[MethodRuns], rows: list[Row], costs: dict[str, dict[str, float]]) -> str:
    _, base_source = single_task_baseline(groups)
    ew = {equal_weight_reference(g, groups).label for g in groups if equal_weight_reference(g, groups) is not None}
    seeds = sorted({r.seeds for r in rows})
    select = {g.config["data"]["select_on"] for g in groups}
    text = [f"Test split, mean ± std over {'/'.join(map(str, seeds))} seed(s)."]
    text.append("Each model selected on a validation split held out of training." if select == {"val"} else
                "Some models were selected on the TEST split (data.select_on=test), which flatters them.")
    if base_source:
        text.append("Δm: mean over tasks of the mean signed relative change vs the single-task models ("
                    + ", ".join(f"{t}: {s}" for t, s in base_source.items()) + "); higher is better.")
    if ew:
        text.append(f"Δm vs EW: against the equal-weight MTL model of the same architecture ({', '.join(sorted(ew))}).")
    devices = {c.get("device") for c in costs.values() if c.get("device")}
    if devices:
        text.append(f"GFLOPs and latency: one image at the training size; latency on {', '.join(sorted(devices))}.")
    text.append("Bold: best per column (metrics and Δm).")
    if any(r.ew_missing for r in rows):
        text.append("–¹: no equal-weight model of this row's architecture and backbone other than the row itself "
                    "(Cross-Stitch, MTAN, a larger teacher), so Δm vs EW is not defined.")
    text.append(judged(rows))
    return " ".join(text)


def judged(rows: list[Row]) -> str:
    """The caption's sentence on significance: the markers, or why nothing can be judged with one seed."""
    found = [c for r in rows for c in (*r.vs_single.values(), *r.vs_ew.values())]
    if any(c.low is not None for c in found):
        return ("† / ‡: the paired difference to the single-task models / to EW (seed k against seed k) has a 95 % "
                "t-interval over seeds that excludes 0 (significance.csv lists every interval); unmarked "
                "differences are not distinguishable from seed noise.")
    spread = significance.pooled_sd([(r.dm_single[1], r.seeds) for r in rows if r.dm_single is not None])
    return significance.one_seed_note({r.label: r.dm_single[0] for r in rows
                                       if r.dm_single is not None and len(r.tasks) > 1}, spread)


def _interval(found: dict) -> tuple[float, float] | None:
    c = found.get(significance.DM)
    return None if c is None or c.low is None else (c.low, c.high)


def figures(groups: list[MethodRuns], rows: list[Row], out: Path, n_images: int) -> list[tuple[Path | None, str]]:
    """Every figure of one split as ``(png, caption)``, then ``(None, why)`` for each one that could not be drawn;
    PDFs are written beside the PNGs."""
    from mtkd.report import plots
    from mtkd.report.grid import prediction_grid

    methods = {g.label: [r.path for r in g.runs] for g in groups}
    colours = plots.method_colours(list(methods))  # one colour per method in every figure
    summary = [{"label": r.label, "dm": r.dm_single[0], "dm_std": r.dm_single[1], "n": r.seeds,
                "ci": _interval(r.vs_single), "gflops": r.cost.get("gflops"), "latency_ms": r.cost.get("latency_ms")}
               for r in rows if r.dm_single is not None and len(r.tasks) > 1]
    vs_ew = [{"label": r.label, "dm": r.dm_ew[0], "dm_std": r.dm_ew[1], "n": r.seeds, "ci": _interval(r.vs_ew)}
             for r in rows if r.dm_ew is not None and r.vs_ew]
    singles = [r for r in rows if len(r.tasks) == 1 and r.cost]
    costed = list(summary)
    if summary and len(singles) > 1:  # deploying one network per task: Δm 0 by definition, at the summed cost
        costed.append({"label": f"{len(singles)} single-task models", "dm": 0.0, "dm_std": None, "n": 1,
                       "reference": True, **{k: sum(r.cost[k] for r in singles) for k in ("gflops", "latency_ms")}})
    no_cost = "inference cost not measured (--no-cost)" if not any(r.cost for r in rows) else \
        "no multi-task method has both a Δm and a measured cost"
    made: list[tuple[list[Path], str, str]] = [  # (files, caption, why nothing was drawn)
        (plots.delta_m_bars(summary, out), "Δm per method vs the single-task models; error bars: the 95 % paired "
         "t-interval over seeds when there are several (dashed: it includes 0, the difference is not judged real), "
         "else the std over seeds.",
         "Δm per method: not drawn, no multi-task method has a Δm (it needs a single-task run of each of its tasks)."),
        (plots.delta_m_bars(vs_ew, out, "EW (same architecture)", "delta_m_ew"),
         "Δm per method vs the equal-weight model of its own architecture, with the same intervals.",
         "Δm vs EW: not drawn, no method has an equal-weight run of its architecture to be compared with."),
        (plots.tradeoff(costed, out, "gflops", "GFLOPs", colours),
         "Δm against inference cost (GFLOPs, one image at the training size); black square: the single-task models "
         "together; dashed: the Pareto front (methods no other is both cheaper and better than).",
         f"Δm against GFLOPs: not drawn, {no_cost}."),
        (plots.tradeoff(costed, out, "latency_ms", "latency (ms)", colours),
         "Δm against measured latency (one CPU thread); markers as in the GFLOPs figure.",
         f"Δm against latency: not drawn, {no_cost}."),
    ]
    curves = plots.training_curves(methods, out, colours)
    for task in task_order(g.tasks for g in groups):
        made.append(([p for p in curves if p.stem == f"curves_{task}"],
                     f"{task}: training loss per step (EMA-smoothed) and the validation {_monitor(task)} after each "
                     "epoch; mean over seeds, band: min–max.",
                     f"{task} curves: not drawn, no training loss of {task} was logged (a run shorter than "
                     "trainer.log_every_n_steps, or no logs/ folder)."))
    made += [
        ([p for p in curves if p.stem == "curves_val_loss"],
         "Validation loss (the sum of the task losses on the held-out validation split) after each epoch.",
         "Validation loss: not drawn, no run logged one (no epoch finished)."),
        (plots.weights_over_time(methods, out, colours), "Task weights and distiller weights over training.",
         "Weights: not drawn, no method's task or distiller weights change during training (equal weights are "
         "constant)."),
        (plots.kd_losses(methods, out, colours), "Distillation losses over training (EMA-smoothed).",
         "Distillation losses: not drawn, no method in this report logs one."),
    ]
    if n_images:
        shown: list[int] = []
        try:
            grids = prediction_grid({g.label: g.runs[0].path for g in groups}, out, n_images=n_images, shown=shown)
            why = ""
        except MtkdError as err:
            grids, why = [], str(err)
        count = shown[0] if shown else n_images
        made.append((grids, f"Predictions on the first {count} validation image{'s' * (count != 1)} (first seed of "
                     "each method).", f"Prediction grids: not drawn, {why}."))
    return [(p, text) for paths, text, _ in made for p in paths if p.suffix == ".png"] + \
        [(None, why) for paths, _, why in made if not paths]


def _monitor(task: str) -> str:
    from mtkd.tasks import TASKS

    return TASKS[task].monitor if task in TASKS else "metric"


def significance_csv(rows: list[Row]) -> str:
    """Every paired comparison of the report, full precision (``significance.records``)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(significance.HEADER)
    writer.writerows([["" if v is None else v for v in line] for line in significance.records(rows)])
    return buffer.getvalue()


def significance_html(rows: list[Row]) -> str:
    """The Δm comparisons as an HTML table (every metric's is in significance.csv)."""
    import html

    lines = [r for r in significance.records(rows) if r[2] == significance.DM]
    if not lines:
        return ""
    num = lambda v, f="{:+.2f}": "–" if v is None else f.format(v)  # noqa: E731
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            method, vs, n, num(mean), "–" if low is None else f"[{low:+.2f}, {high:+.2f}]", judged,
            "–" if need is None else need)) + "</tr>"
        for method, vs, _, n, mean, low, high, judged, need in lines)
    head = "".join(f"<th>{h}</th>" for h in ("method", "vs", "paired seeds", "Δm difference %", "95 % interval",
                                              "judged", "seeds needed (80 % power)"))
    return ("<h3>Which Δm differences are real</h3><p class='caption'>Seed k of a method against seed k of its "
            "reference; 95 % paired t-interval; <em>real</em>: it excludes 0, <em>noise</em>: it does not, "
            "<em>?</em>: one paired seed, no interval. Seeds needed: for a true difference of the size observed to "
            "be judged real 4 times in 5.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def build_report(root: str | Path, out: str | Path | None = None, n_images: int = 4, cost: bool = True,
                 log: Callable[[str], None] = print) -> Report:
    root = Path(root)
    out = Path(out) if out else root / "report"
    runs = find_runs(root)
    groups, repeats = group_methods(runs, root)
    incomplete = [(str(r.path), r.problem) for r in runs if r.results is None or r in repeats]
    failures = study_failures(root)  # a study's failed runs: their error, not only "no results.json"
    incomplete = [(p, failures.pop(p, why)) for p, why in incomplete] + sorted(failures.items())
    if not groups:
        listed = "; ".join(f"{p}: {why}" for p, why in incomplete) or "no run folder (config.yaml) found"
        raise MtkdError(f"no finished run under {root} ({listed})")
    for path, why in incomplete:
        log(f"not in the tables: {path}: {why}")
    splits = by_dataset(groups)
    sections, tables, files = [], {}, []
    for name, members in splits.items():
        folder = out if len(splits) == 1 else out / slug(name)
        folder.mkdir(parents=True, exist_ok=True)
        costs = measure_costs(members) if cost else {}
        notes: list[str] = []
        rows = build_rows(members, costs, notes)
        tables[name] = rows
        text = caption(members, rows, costs) + (f" Δm undefined: {'; '.join(notes)}." if notes else "")
        for name_, content in (("table.md", markdown_table(rows)), ("table.csv", csv_table(rows)),
                               ("table.tex", latex_table(rows, caption=text)),
                               ("significance.csv", significance_csv(rows))):
            write_text(folder / name_, content)
            files.append(folder / name_)
        log(f"{name}: {len(members)} methods, drawing figures")
        figs = figures(members, rows, folder, n_images)
        files += [p for png, _ in figs if png is not None for p in (png, png.with_suffix(".pdf")) if p.exists()]
        sections.append(page.Section(name, text, html_table(rows), figs, significance_html(rows)))
    html_path = out / "report.html"
    intro = f"{sum(len(g.runs) for g in groups)} finished runs under {root.resolve()}."
    write_text(html_path, page.render(f"mtkd report: {root.name}", intro, sections, incomplete))
    return Report(html_path, tables, [*files, html_path], incomplete)
