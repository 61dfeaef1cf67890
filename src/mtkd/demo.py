"""``mtkd demo``: the embedded rooms data → single-task models and multi-task models → the comparison table.

Finished runs (with ``results.json``) are reused, a killed demo continues from its last checkpoints, and the
table goes to the terminal and to ``<out>/report.md``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console

from mtkd.config import load_config
from mtkd import weighting
from mtkd.distill import DISTILLERS, needs_teachers
from mtkd.engine.run import train, write_json
from mtkd.registry import suggest
from mtkd.report.table import markdown_table, rich_table

DEMO_TASKS = ("semseg", "depth", "normal")
DEFAULT_METHODS = ("ew", "kd4mtl", "kd")


MTL_TEACHER = "teacher-mtl-small"  # KDAM's one strong multi-task teacher: the "small" backbone, all tasks


def method_overrides(method: str, out_dir: Path) -> list[str]:
    """A demo row: a weighting name (teacher-free MTL) or a distillation method with the demo's teachers."""
    if method == MTL_TEACHER:
        return ["model.backbone=small"]
    if method not in DISTILLERS:
        return [f"weighting.name={method}"]
    if not needs_teachers(method):  # OKD-MTL trains its own single-task networks
        return [f"distill.name={method}"]
    source = {t: out_dir / (MTL_TEACHER if method == "kdam" else f"single-{t}") for t in DEMO_TASKS}
    extra = {"kd4mtl": ["distill.lr=0.01"], "fitnet": ["distill.lr=0.01"], "jointdistill": ["data.val_fraction=0.15"]}
    return [f"distill.name={method}", *[f"distill.teachers.{t}={p}" for t, p in source.items()], *extra.get(method, [])]


def demo_overrides(epochs: int, n_train: int, data_root: str) -> list[str]:
    return [
        f"trainer.max_epochs={epochs}", f"data.rooms.n_train={n_train}", "data.rooms.n_test=200",
        f"data.root={data_root}", "trainer.progress_bar=false",
    ]


def run_demo(out: str = "runs/demo", methods: tuple[str, ...] = DEFAULT_METHODS, epochs: int = 6, n_train: int = 600,
             console: Console | None = None) -> dict[str, dict[str, Any]]:
    """Train one single-task model per task (the Δm baseline and the teachers), then one multi-task model per entry of
    ``methods``: a weighting name (``ew``, ``uw``, ``pcgrad``, ...) or a distillation method (``kd4mtl``, ``kd``, ...)
    whose teachers are the single-task models."""
    console = console or Console(width=max(Console().width, 120))  # the table needs ~110 columns
    out_dir = Path(out)
    common = demo_overrides(epochs, n_train, str(out_dir / "data"))
    plans = [(f"single-{t}", [f"data.tasks=[{t}]"]) for t in DEMO_TASKS]
    if "kdam" in methods:
        methods = (MTL_TEACHER, *methods)
    for m in methods:  # refuse a typo before hours of training
        if m not in DISTILLERS and m != MTL_TEACHER and m not in weighting.names():
            raise suggest(m, [*weighting.names(), *DISTILLERS.names()], "demo method")
    all_tasks = f"data.tasks=[{','.join(DEMO_TASKS)}]"
    plans += [(m if m == MTL_TEACHER else f"mtl-{m}", [all_tasks, *method_overrides(m, out_dir)]) for m in methods]
    results: dict[str, dict[str, Any]] = {}
    start = time.time()
    for name, extra in plans:
        run_dir = out_dir / name
        cfg = load_config(None, [*common, *extra, f"name={name}", f"out_dir={out_dir}", "resume=true"])
        if (run_dir / "results.json").exists():
            import json

            results[name] = json.loads((run_dir / "results.json").read_text())
            console.print(f"[dim]reusing finished run {run_dir}[/dim]")
            continue
        console.print(f"[bold]training {name}[/bold] ({epochs} epochs)")
        results[name] = train(cfg)
        console.print(f"  done in {results[name]['wall_time_s']:.0f} s")
    console.print(rich_table(results, title="rooms: test split, model selected on a held-out validation split"))
    report = out_dir / "report.md"
    report.write_text(
        "# mtkd demo on rooms\n\nTest split; each model selected on a validation split held out of training. "
        "Δm: mean over tasks of the mean signed relative change vs the single-task models (seed 002, Eq. 4).\n\n"
        + markdown_table(results)
    )
    write_json(out_dir / "summary.json", {"wall_time_s": round(time.time() - start, 1), "runs": list(results)})
    console.print(f"table written to {report} (total {time.time() - start:.0f} s)")
    return results
