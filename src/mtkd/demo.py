"""``mtkd demo``: the shipped rooms study (``studies/rooms_demo.yaml``; ``--full``: ``rooms_full.yaml``) → the report.

Single-task models (the Δm baseline and the teachers) → equal-weight MTL → weighting and distillation methods on
data mtkd renders itself, then ``mtkd report`` on the result. Finished runs are reused and a killed demo continues
where it stopped, because it is a study (``mtkd.study``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from mtkd.registry import suggest
from mtkd.report.build import Report, build_report
from mtkd.study import Study, budget_overrides, load_study, run_study

STUDIES = Path(__file__).parent / "studies"
ALWAYS = ("single_semseg", "single_depth", "single_normal", "ew")  # the baselines every demo table needs


def select_methods(study: Study, wanted: list[str]) -> None:
    """Keep the baselines, ``wanted`` and the teachers they need (a study method that is not a recipe)."""
    for name in wanted:
        if name not in study.methods:
            raise suggest(name, study.methods, "demo method")
    keep = list(dict.fromkeys([*ALWAYS, *wanted]))
    seed = study.seeds[0]
    while True:  # add teachers until nothing is missing
        needs = [m for k in keep for m in study._planned(study.methods[k], seed).needs if m not in keep]
        if not needs:
            break
        keep += list(dict.fromkeys(needs))
    study.methods = {k: m for k, m in study.methods.items() if k in keep}


def run_demo(out: str = "runs/demo", full: bool = False, methods: list[str] | None = None, epochs: int | None = None,
             seeds: list[int] | None = None, n_train: int | None = None, n_images: int = 4,
             log: Callable[[str], None] = print) -> Report:
    study = load_study(STUDIES / ("rooms_full.yaml" if full or methods else "rooms_demo.yaml"), out=out)
    study.overrides.append(f"data.root={Path(out) / 'data'}")  # the rendered rooms live beside the runs
    if n_train:
        study.overrides.append(f"data.rooms.n_train={n_train}")
    if epochs:
        study.budget = budget_overrides({"epochs": epochs}, "mtkd demo --epochs")
    if seeds:
        study.seeds = list(seeds)
    if methods:
        select_methods(study, methods)
    if not sys.stdout.isatty():  # a log file gets one line per run, a terminal also each run's progress bar
        study.overrides.append("trainer.progress_bar=false")
    run_study(study, log)
    return build_report(out, n_images=n_images, log=log)
