"""Find the runs under a folder and group them into methods: the runs of one method differ only in their seed.

A run folder is any folder holding a ``config.yaml`` written by ``mtkd train``; it is *finished* when it also holds
a readable ``results.json``. Runs are grouped by their resolved config with the seed, the name and the output
folder left out, so the seeds of one method form one row whether they came from a study (``<method>/seed<k>``) or
from separate ``mtkd train ... seed=k name=...`` calls. A group's label is its first run's path under the root,
without a trailing ``seed<k>`` / ``-s<k>``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from omegaconf import OmegaConf

from mtkd.errors import MtkdError

PER_SEED_KEYS = ("name", "seed", "out_dir", "resume")  # differ between the seeds of one method
SEED_SUFFIX = re.compile(r"(/seed|[-_]seed|[-_]s)\d+$")


@dataclass
class RunRecord:
    path: Path
    config: dict[str, Any]
    results: dict[str, Any] | None  # None: unfinished (or its results.json is unreadable)
    problem: str = ""  # why it is unfinished, for the report's list

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))


@dataclass
class MethodRuns:
    """One row of the table: the finished runs of one method (one per seed)."""

    label: str
    runs: list[RunRecord]

    @property
    def config(self) -> dict[str, Any]:
        return self.runs[0].config

    @property
    def tasks(self) -> list[str]:
        return list(self.runs[0].results["tasks"])

    @property
    def dataset(self) -> str:
        return str(self.runs[0].results.get("dataset", self.config["data"]["dataset"]))


def read_run(path: Path) -> RunRecord | None:
    """The run in ``path``, or None when ``path`` holds no mtkd run config."""
    try:
        config = OmegaConf.to_container(OmegaConf.load(path / "config.yaml"), resolve=True)
    except Exception:  # noqa: BLE001 - an unreadable config.yaml is not a run
        return None
    if not isinstance(config, dict) or "data" not in config or "model" not in config:
        return None
    results_path = path / "results.json"
    if not results_path.is_file():
        return RunRecord(path, config, None, "no results.json (still training, killed, or failed)")
    try:
        results = json.loads(results_path.read_text())
        results["test"], results["tasks"]  # noqa: B018 - the keys a report needs
    except (ValueError, KeyError, TypeError) as err:
        return RunRecord(path, config, None, f"unreadable results.json ({type(err).__name__})")
    return RunRecord(path, config, results)


def find_runs(root: str | Path) -> list[RunRecord]:
    """Every run folder under ``root`` (``root`` itself included), sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise MtkdError(f"{root} is not a folder of runs")
    runs = [read_run(p.parent) for p in sorted(root.rglob("config.yaml"))]
    return [r for r in runs if r is not None]


def method_key(config: dict[str, Any]) -> str:
    """What makes two runs the same method: the config without the per-seed keys, and with teacher run folders
    read without their seed suffix (a study pairs the student of seed k with the teachers of seed k)."""
    key = {k: v for k, v in config.items() if k not in PER_SEED_KEYS}
    teachers = (config.get("distill") or {}).get("teachers") or {}
    key["distill"] = {**config.get("distill", {}),
                      "teachers": {t: SEED_SUFFIX.sub("", str(p)) for t, p in teachers.items()}}
    return json.dumps(key, sort_keys=True)


def label_of(run: RunRecord, root: Path) -> str:
    rel = run.path.relative_to(root).as_posix() if run.path != root else run.path.name
    return SEED_SUFFIX.sub("", rel) or rel


def group_methods(runs: list[RunRecord], root: str | Path) -> tuple[list[MethodRuns], list[RunRecord]]:
    """Finished runs grouped by method (a study's order, else the order found), and the runs left out because
    their method already has a run with the same seed (a copy, or a re-run under another name)."""
    groups: dict[str, MethodRuns] = {}
    repeats = []
    for run in runs:
        if run.results is None:
            continue
        key = method_key(run.config)
        if key not in groups:
            groups[key] = MethodRuns(label_of(run, Path(root)), [run])
        elif run.seed in {r.seed for r in groups[key].runs}:
            run.problem = f"same config and seed as {groups[key].runs[0].path}: left out"
            repeats.append(run)
        else:
            groups[key].runs.append(run)
    seen: dict[str, int] = {}
    for group in groups.values():  # two configs sharing a label (a re-run with changed settings) stay apart
        seen[group.label] = seen.get(group.label, 0) + 1
        if seen[group.label] > 1:
            group.label += f" ({seen[group.label]})"
    return sorted(groups.values(), key=study_order(Path(root))), repeats


def study_order(root: Path) -> Callable[[MethodRuns], int]:
    """Sort key: a study's method order (``study.json``) when ``root`` is a study, else the order found."""
    index = root / "study.json"
    methods: list[str] = []
    if index.is_file():
        try:
            methods = list(dict.fromkeys(r["method"] for r in json.loads(index.read_text())["runs"]))
        except (ValueError, KeyError, TypeError):
            methods = []
    return lambda g: methods.index(g.label) if g.label in methods else len(methods)


def study_failures(root: Path) -> dict[str, str]:
    """``{run folder: why}`` for the runs a study (``root/study.json``) recorded as failed or skipped."""
    index = Path(root) / "study.json"
    try:
        records = json.loads(index.read_text())["runs"] if index.is_file() else []
    except (ValueError, KeyError, TypeError):
        return {}
    return {str(r["run"]): f"{r['status']}: {r.get('error', 'no error recorded')}" for r in records
            if isinstance(r, dict) and r.get("status") in ("failed", "skipped") and "run" in r}


def test_data(config: dict[str, Any]) -> str:
    """Which test split a run is scored on: the dataset, its folder, and for rooms the render parameters."""
    data = config["data"]
    return json.dumps([data["dataset"], data.get("root"), data.get("rooms") if data["dataset"] == "rooms" else None,
                       data.get("folders")], sort_keys=True)


def by_dataset(groups: list[MethodRuns]) -> dict[str, list[MethodRuns]]:
    """Methods split per test split: Δm and the best-value marks only compare rows scored on the same data.
    A split is named by its dataset, plus its folder when one dataset name covers several."""
    splits: dict[str, list[MethodRuns]] = {}
    for g in groups:
        splits.setdefault(test_data(g.config), []).append(g)
    names = [g[0].dataset for g in splits.values()]
    out = {}
    for i, (name, members) in enumerate(zip(names, splits.values()), 1):
        data = members[0].config["data"]
        where = data.get("root") or ", ".join(f"{k}={v}" for k, v in sorted((data.get("rooms") or {}).items()))
        key = name if names.count(name) == 1 else f"{name} ({where})"
        out[key if key not in out else f"{key} #{i}"] = members
    return out
