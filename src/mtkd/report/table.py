"""The comparison table a paper prints: every metric of every task per method, and Δm vs the single-task models."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from mtkd.metrics import METRIC_DIRECTIONS, delta_m


def single_task_baseline(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The baseline of Δm: each task's metrics from the run that trained that task alone."""
    base: dict[str, dict[str, float]] = {}
    for res in runs.values():
        if len(res["tasks"]) == 1:
            task = res["tasks"][0]
            base[task] = res["test"][task]
    return base


def table_rows(runs: dict[str, dict[str, Any]], metrics: int | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows: ``method | task/metric ... | Δm``; a task a run did not train is shown as '–'.

    ``metrics`` keeps the first few metrics of each task (a terminal is narrower than a report); Δm uses them all.
    """
    tasks: list[str] = []
    for res in runs.values():
        tasks += [t for t in res["tasks"] if t not in tasks]
    columns = [(t, m) for t in tasks for m in list(METRIC_DIRECTIONS[t])[:metrics]
               if any(m in r["test"].get(t, {}) for r in runs.values())]
    base = single_task_baseline(runs)
    header = ["method"] + [f"{t} {m} {'↑' if METRIC_DIRECTIONS[t][m] else '↓'}" for t, m in columns] + ["Δm % ↑"]
    rows = []
    for name, res in runs.items():
        cells = [name]
        for t, m in columns:
            value = res["test"].get(t, {}).get(m)
            cells.append("–" if value is None else f"{value:.4g}" if abs(value) < 10 else f"{value:.2f}")
        has_base = all(t in base for t in res["tasks"])
        dm = delta_m({t: res["test"][t] for t in res["tasks"]}, base) if has_base else None
        cells.append("–" if dm is None else f"{dm:+.2f}")
        rows.append(cells)
    return header, rows


def markdown_table(runs: dict[str, dict[str, Any]]) -> str:
    header, rows = table_rows(runs)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def rich_table(runs: dict[str, dict[str, Any]], title: str = "") -> Table:
    header, rows = table_rows(runs, metrics=2)
    table = Table(title=title)
    for h in header:
        table.add_column(h, justify="left" if h == "method" else "right", no_wrap=h == "method")
    for r in rows:
        table.add_row(*r)
    return table
