"""A tuned fixed-weight baseline for studies: candidate task weights, the study that trains them, the best one.

A recent comparison argues that well-tuned fixed task weights match most adaptive weighting methods, so a table
should show every method against the best fixed weights found **on the same budget**. This module adds that
baseline to any study without changing the study format: candidates become ordinary study methods
(``weighting.name: fixed``), so they train under the study's budget, seeds and overrides, reuse finished runs and
resume like every other method.

    from mtkd.fixed_search import add_fixed_search, best_fixed
    add_fixed_search("studies/rooms.yaml", "studies/rooms_tuned.yaml", levels=(0.5, 1, 2))   # grid
    add_fixed_search("studies/rooms.yaml", "studies/rooms_tuned.yaml", levels=(), n_random=8)  # random search
    # mtkd study studies/rooms_tuned.yaml ; then
    best_fixed("runs/rooms_tuned")  # -> {"best": "fixed_003", "weights": {...}, "ranking": [...], "seeds": [...]}

Candidates: the first task's weight is 1 (a common scale changes only the effective learning rate); ``levels``
gives a grid (every combination of the levels for the other tasks, |levels|^(T−1) runs), ``n_random`` adds
log-uniform draws in [``low``, ``high``] from a seeded generator; equal weights (EW) are always candidate 0.

Selection is on validation only: each candidate's ``best_val_loss`` (the summed unweighted validation loss its
checkpoint was selected on; ``results.json``) averaged over the seeds where **every** candidate finished (seeds
paired, so a candidate is never favoured by an easier seed). The test split is never used to choose.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mtkd.errors import MtkdError

PREFIX = "fixed_"


def candidates(tasks: Sequence[str], *, levels: Sequence[float] = (0.5, 1.0, 2.0), n_random: int = 0,
               seed: int = 0, low: float = 0.1, high: float = 10.0) -> list[dict[str, float]]:
    """Candidate weight dicts {task: λ}: equal weights first, then the grid, then the random draws (no repeats)."""
    tasks = list(tasks)
    if len(tasks) < 2:
        raise MtkdError(f"a fixed-weight search needs at least 2 tasks, got {tasks}")
    if len(set(tasks)) != len(tasks):
        raise MtkdError(f"fixed-weight search: duplicate task names {tasks}")
    for v in levels:
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise MtkdError(f"fixed-weight search: levels must be finite numbers > 0, got {list(levels)}")
    if not isinstance(n_random, int) or n_random < 0:
        raise MtkdError(f"fixed-weight search: n_random must be an integer ≥ 0, got {n_random!r}")
    if not (0 < low < high and math.isfinite(high)):
        raise MtkdError(f"fixed-weight search: need 0 < low < high, got low={low!r}, high={high!r}")
    out: list[dict[str, float]] = [{t: 1.0 for t in tasks}]
    for combo in itertools.product(sorted(set(float(v) for v in levels)), repeat=len(tasks) - 1):
        out.append({tasks[0]: 1.0, **dict(zip(tasks[1:], combo))})
    rng = random.Random(seed)
    for _ in range(n_random):
        out.append({tasks[0]: 1.0, **{t: round(math.exp(rng.uniform(math.log(low), math.log(high))), 4)
                                      for t in tasks[1:]}})
    unique: list[dict[str, float]] = []
    for c in out:
        if c not in unique:
            unique.append(c)
    return unique


def search_methods(tasks: Sequence[str], recipe: str = "rooms/mtl_ew", **options: Any) -> dict[str, Any]:
    """Study ``methods`` entries, one per candidate: ``fixed_000`` (equal weights), ``fixed_001``, ..."""
    return {f"{PREFIX}{i:03d}": {"recipe": recipe,
                                 "overrides": {"weighting.name": "fixed", "weighting.options": {"weights": c}}}
            for i, c in enumerate(candidates(tasks, **options))}


def add_fixed_search(study_file: str | Path, out_file: str | Path, *, tasks: Sequence[str] | None = None,
                     recipe: str = "rooms/mtl_ew", **options: Any) -> Path:
    """Write a copy of ``study_file`` at ``out_file`` with the candidates added as methods; returns its path.

    ``tasks`` defaults to the recipe's ``data.tasks``; recipes given as paths are made absolute so the new file
    can live anywhere. An existing ``out_file`` is refused (mtkd never overwrites what it did not create)."""
    from mtkd.config import load_config, read_yaml, resolve_recipe

    study_file, out_file = Path(study_file), Path(out_file)
    if out_file.exists():
        raise MtkdError(f"{out_file} exists; choose another file for the study with the fixed-weight search")
    spec = OmegaConf.to_container(read_yaml(study_file, "study"))
    methods = dict(spec.get("methods") or {})
    for name, entry in methods.items():
        rec = entry.get("recipe") if isinstance(entry, dict) else entry
        if isinstance(rec, str) and rec.endswith((".yaml", ".yml")) and not Path(rec).is_absolute():
            absolute = str((study_file.parent / rec).resolve())
            methods[name] = {**entry, "recipe": absolute} if isinstance(entry, dict) else absolute
    if tasks is None:
        tasks = list(load_config(resolve_recipe(recipe), []).data.tasks)
    added = search_methods(tasks, recipe, **options)
    clash = sorted(set(added) & set(methods))
    if clash:
        raise MtkdError(f"study {study_file} already has methods named {clash}; the search adds {PREFIX}NNN")
    spec["methods"] = {**methods, **added}
    spec["name"] = spec.get("name") or study_file.stem
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(OmegaConf.to_yaml(OmegaConf.create(spec)))
    return out_file


def best_fixed(study_out: str | Path, prefix: str = PREFIX) -> dict[str, Any]:
    """The candidate with the lowest mean validation loss over the seeds every candidate finished (paired)."""
    root = Path(study_out)
    found: dict[str, dict[int, float]] = {}
    weights: dict[str, Any] = {}
    for res in sorted(root.glob(f"{prefix}*/seed*/results.json")):
        method, seed = res.parent.parent.name, int(res.parent.name[len("seed"):])
        data = json.loads(res.read_text())
        value = float(data.get("best_val_loss", float("nan")))
        if math.isfinite(value):
            found.setdefault(method, {})[seed] = value
            weights[method] = ((data.get("config") or {}).get("weighting") or {}).get("options", {}).get("weights")
    if not found:
        raise MtkdError(f"no finished {prefix}* runs with a validation loss under {root}; run the study first")
    seeds = sorted(set.intersection(*(set(v) for v in found.values())))
    if not seeds:
        raise MtkdError(f"the {prefix}* candidates under {root} share no finished seed; finish the study's runs")
    ranking = sorted(((sum(v[s] for s in seeds) / len(seeds), m) for m, v in found.items()))
    return {"best": ranking[0][1], "weights": weights.get(ranking[0][1]), "seeds": seeds,
            "ranking": [{"method": m, "mean_val_loss": x} for x, m in ranking]}
