"""Studies: several methods × seeds on one dataset and one budget, trained in dependency order (teachers first).

A study file (YAML)::

    name: rooms-demo                       # optional: the file's stem
    out: runs/rooms-demo                   # optional: runs/<name>
    budget: {epochs: 6}                    # or {steps: 3000}; the same for every method
    seeds: [0, 1, 2]
    overrides: {data.rooms.n_train: 600}   # dotted keys applied to every run
    teachers: {semseg: single_semseg, depth: single_depth, normal: single_normal}
    methods:
      single_semseg: rooms/single_semseg   # a shipped recipe name or a YAML path (relative to the study file)
      ew: rooms/mtl_ew
      kd4mtl: rooms/kd4mtl                 # a distiller with frozen teachers gets the study's ``teachers``
      teacher_mtl: {recipe: rooms/mtl_ew, overrides: {model.backbone: small}}
      kdam: {recipe: rooms/kdam, teachers: teacher_mtl}   # one study method teaching every task
      okd_offline: {recipe: rooms/okd_mtl_pretrained_afd, overrides: {distill.options.stl_checkpoints:
                    {semseg: "@single_semseg", depth: "@single_depth", normal: "@single_normal"}}}

Runs live in ``<out>/<method>/seed<k>/``. A teacher is named by a study method and is that method's run **with the
same seed**, so seed-to-seed variation includes the teachers'. Anywhere else in a run's config, the string
``"@<method>"`` names that method's same-seed run folder (and makes it a dependency). Only ``seed`` changes between seeds: the
validation split (``data.seed``) stays fixed. Seeds are the outer loop, so a killed study already has complete
tables for its first seeds.

A finished run is reused when its resolved config equals the planned one, and an unfinished run continues from
its last checkpoint; a run folder holding a *different* config is refused (never overwritten). A run that fails
with a user-level error (a NaN loss, ...) is recorded in ``study.json`` and the study goes on without the runs
that need it. ``study.json`` indexes every run and its status; ``mtkd report <out>`` builds the tables.
Runs train one after another in this process, or concurrently as Ray tasks (``mtkd.study_ray``, ``--workers``).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from omegaconf import OmegaConf

import mtkd
from mtkd.config import load_config, read_yaml, resolve_recipe, to_dict
from mtkd.errors import MtkdError
from mtkd.lock import LOCK, FolderLock
from mtkd.paths import inside, output_folder
from mtkd.registry import suggest

STUDY_KEYS = ("name", "description", "out", "budget", "seeds", "overrides", "teachers", "methods")
METHOD_KEYS = ("recipe", "overrides", "teachers")
BUDGET_KEYS = ("trainer.max_epochs", "trainer.max_steps")
IGNORED_KEYS = (("resume",), ("trainer", "progress_bar"))  # differ between invocations without changing a result


@dataclass
class Method:
    name: str
    recipe: Path
    overrides: list[str] = field(default_factory=list)
    teachers: dict[str, str] | str | None = None  # task -> study method, or one study method for every task


@dataclass
class PlannedRun:
    method: str
    seed: int
    config: dict[str, Any]  # resolved, plain
    needs: tuple[str, ...]  # study methods whose same-seed runs teach this one

    @property
    def path(self) -> Path:
        return Path(self.config["out_dir"]) / self.config["name"]


@dataclass
class Study:
    name: str
    out: Path
    budget: list[str]
    seeds: list[int]
    overrides: list[str]
    teachers: dict[str, str] | str | None
    methods: dict[str, Method]
    source: dict[str, Any]

    def plan(self) -> list[PlannedRun]:
        """Every run, seeds outer, methods in dependency order (a teacher before its students)."""
        runs = []
        for seed in self.seeds:
            by_method = {name: self._planned(m, seed) for name, m in self.methods.items()}
            runs += [by_method[m] for m in self._order({m: r.needs for m, r in by_method.items()})]
        return runs

    def _order(self, needs: dict[str, tuple[str, ...]]) -> list[str]:
        """The study's method order, each method moved after the teachers it needs (a stable topological sort)."""
        order: list[str] = []
        while len(order) < len(needs):
            ready = [m for m in needs if m not in order and set(needs[m]) <= set(order)]
            if not ready:
                stuck = [m for m in needs if m not in order]
                raise MtkdError(f"study {self.name}: teachers form a cycle among {', '.join(stuck)}")
            order.append(ready[0])
        return order

    def _planned(self, method: Method, seed: int) -> PlannedRun:
        budget_keys = [o for o in [*self.overrides, *method.overrides] if o.split("=")[0] in BUDGET_KEYS]
        if budget_keys:
            raise MtkdError(f"study {self.name}: {budget_keys[0]!r} in overrides; the study's `budget:` sets the "
                            "training length, the same for every method")
        cfg = load_config(method.recipe, [
            *self.overrides, *method.overrides, *self.budget,
            f"seed={seed}", f"name={method.name}/seed{seed}", f"out_dir={self.out}", "resume=true",
        ])
        teachers = self._teacher_methods(method, cfg.distill.name, list(cfg.data.tasks))
        if teachers:
            cfg.distill.teachers = {t: str(self.out / m / f"seed{seed}") for t, m in teachers.items()}
        referenced: set[str] = set()
        config = self._resolve_references(to_dict(cfg), seed, referenced)
        if method.name in referenced:
            raise MtkdError(f"study method {method.name!r} refers to itself (@{method.name})")
        return PlannedRun(method.name, seed, config, tuple(sorted(set(teachers.values()) | referenced)))

    def _resolve_references(self, node: Any, seed: int, found: set[str]) -> Any:
        """``"@<study method>"`` anywhere in a run's config → that method's run folder with the same seed (for
        paths ``teachers:`` does not cover, e.g. OKD's ``distill.options.stl_checkpoints``); a dependency too."""
        if isinstance(node, dict):
            return {k: self._resolve_references(v, seed, found) for k, v in node.items()}
        if isinstance(node, list):
            return [self._resolve_references(v, seed, found) for v in node]
        if isinstance(node, str) and node.startswith("@"):
            if node[1:] not in self.methods:
                raise suggest(node[1:], self.methods, "study method (in an @reference)")
            found.add(node[1:])
            return str(self.out / node[1:] / f"seed{seed}")
        return node

    def _teacher_methods(self, method: Method, distiller: str, tasks: list[str]) -> dict[str, str]:
        """task -> teaching study method (empty for a method without frozen teachers)."""
        from mtkd.distill import needs_teachers

        if distiller == "none" or not needs_teachers(distiller):
            if method.teachers is not None:
                raise MtkdError(f"study method {method.name!r} names teachers, but its recipe has no frozen "
                                f"teachers (distill.name={distiller})")
            return {}
        spec = method.teachers if method.teachers is not None else self.teachers
        if spec is None:
            raise MtkdError(f"study method {method.name!r} ({distiller}) needs teachers: give `teachers: {{task: "
                            "study method}` in the method or at the top of the study")
        mapping = {t: spec for t in tasks} if isinstance(spec, str) else dict(spec)
        missing = [t for t in tasks if t not in mapping]
        if missing:
            raise MtkdError(f"study method {method.name!r}: no teacher for task(s) {', '.join(missing)}")
        for t in tasks:
            if mapping[t] not in self.methods:
                raise suggest(mapping[t], self.methods, f"teacher (a study method) of {method.name!r}")
            if mapping[t] == method.name:
                raise MtkdError(f"study method {method.name!r} cannot teach itself")
        return {t: mapping[t] for t in tasks}


def _dotted(overrides: Any, where: str) -> list[str]:
    """``{a.b: v}`` or ``["a.b=v"]`` → ``["a.b=v"]`` (values written as JSON, which OmegaConf reads as YAML)."""
    if overrides is None:
        return []
    if isinstance(overrides, dict):
        return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    if isinstance(overrides, list) and all(isinstance(o, str) for o in overrides):
        return list(overrides)
    raise MtkdError(f"{where}: overrides must be a mapping {{dotted.key: value}} or a list of 'key=value'")


def _check_keys(entry: dict[str, Any], valid: tuple[str, ...], where: str) -> None:
    for key in entry:
        if key not in valid:
            raise suggest(str(key), valid, f"key in {where}")


def budget_overrides(budget: Any, where: str) -> list[str]:
    """``{epochs: N}`` or ``{steps: N}`` → the trainer overrides that set it."""
    if not isinstance(budget, dict) or len(budget) != 1 or not set(budget) <= {"epochs", "steps"}:
        raise MtkdError(f"{where}: budget must be {{epochs: N}} or {{steps: N}}, got {budget!r}")
    (kind, n), = budget.items()
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise MtkdError(f"{where}: budget {kind} must be a positive integer, got {n!r}")
    if kind == "epochs":
        return [f"trainer.max_epochs={n}", "trainer.max_steps=-1"]
    return [f"trainer.max_steps={n}", "trainer.max_epochs=-1"]


def _method(name: str, entry: Any, base: Path, where: str) -> Method:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", str(name)):
        raise MtkdError(f"{where}: method name {name!r} must be letters, digits, _ . + - (it names a folder)")
    if isinstance(entry, str):
        entry = {"recipe": entry}
    if not isinstance(entry, dict) or "recipe" not in entry:
        raise MtkdError(f"{where}: method {name!r} must be a recipe name or {{recipe: ..., overrides: ...}}")
    _check_keys(entry, METHOD_KEYS, f"{where} method {name!r}")
    local = base / str(entry["recipe"])
    recipe = local if local.is_file() else resolve_recipe(entry["recipe"])
    teachers = entry.get("teachers")
    if teachers is not None and not isinstance(teachers, (str, dict)):
        raise MtkdError(f"{where}: teachers of {name!r} must be a study method or {{task: study method}}")
    return Method(str(name), recipe, _dotted(entry.get("overrides"), f"{where} method {name!r}"), teachers)


def load_study(path: str | Path, out: str | Path | None = None) -> Study:
    """Read and check a study file; every recipe and override is resolved now, before anything trains."""
    path = Path(path)
    if not path.is_file():
        raise MtkdError(f"study file {path} does not exist")
    spec = OmegaConf.to_container(read_yaml(path, "study"))
    if not isinstance(spec, dict) or not spec.get("methods"):
        raise MtkdError(f"study {path}: needs a `methods:` mapping of method name -> recipe")
    _check_keys(spec, STUDY_KEYS, f"study {path}")
    seeds = spec.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise MtkdError(f"study {path}: seeds must be a list of distinct integers, got {seeds!r}")
    name = str(spec.get("name") or path.stem)
    if "budget" not in spec:
        raise MtkdError(f"study {path}: needs a budget, {{epochs: N}} or {{steps: N}}, the same for every method")
    methods = {str(k): _method(k, v, path.parent, f"study {path}") for k, v in spec["methods"].items()}
    folder = Path(out or spec.get("out") or inside("runs", name, f"study {path}: name"))
    study = Study(name, folder, budget_overrides(spec["budget"], f"study {path}"),
                  seeds, _dotted(spec.get("overrides"), f"study {path}"), spec.get("teachers"), methods, spec)
    check_plan(study, study.plan())  # every config resolved and checked now: a typo fails before the first run
    return study


def check_plan(study: Study, plan: list[PlannedRun]) -> None:
    """Each method's run config checked as ``mtkd train`` checks it before making a folder (component names and
    options), plus what only a study can see: teachers outside the study exist, a folder dataset's root exists."""
    from mtkd.engine.run import check_names

    planned = {str(r.path) for r in plan}
    checked: set[str] = set()
    for run in plan:
        if run.method in checked:  # seeds differ in `seed` only
            continue
        checked.add(run.method)
        try:
            check_names(run.config)
            for task, teacher in (run.config["distill"]["teachers"] or {}).items():
                if str(teacher) not in planned and not Path(teacher).exists():
                    raise MtkdError(f"teacher of {task}, {teacher}, does not exist")
            data = run.config["data"]
            if data["dataset"] != "rooms" and not (data["root"] and Path(data["root"]).is_dir()):
                raise MtkdError(f"data.root {data['root']} is not a folder")
        except MtkdError as err:
            raise MtkdError(f"study {study.name}, method {run.method!r}: {err}") from None


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(config))
    if (out.get("data") or {}).get("root"):  # runs stored before data.root was made absolute
        out["data"]["root"] = str(Path(out["data"]["root"]).expanduser().absolute())
    for keys in IGNORED_KEYS:
        node = out
        for k in keys[:-1]:
            node = node.get(k, {})
        node.pop(keys[-1], None)
    return out


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [f"{prefix[:-1]}: {a!r} -> {b!r}"]


def run_status(run: PlannedRun) -> str:
    """``done`` (results with this config), ``resume`` (unfinished, same config) or ``new`` (also a run that failed
    before its first checkpoint: nothing to keep); a run folder holding a different config is refused, naming the
    keys that differ, and a folder mtkd did not make is refused."""
    from mtkd.engine.run import run_state

    state = run_state(run.path)
    if state in ("new", "unstarted"):
        return "new"
    results, saved = run.path / "results.json", run.path / "config.yaml"
    if results.is_file():
        existing = json.loads(results.read_text())["config"]
    elif saved.is_file():
        existing = to_dict(OmegaConf.load(saved))
    else:
        return "new"
    diff = _differences(_comparable(existing), _comparable(run.config))
    if diff:
        raise MtkdError(f"{run.path} holds a run with a different config ({'; '.join(diff[:3])}); delete or move "
                        "that folder, or rename the method in the study")
    return "done" if results.is_file() else "resume"


def write_index(study: Study, records: list[dict[str, Any]]) -> None:
    from mtkd.atomic import write_json

    study.out.mkdir(parents=True, exist_ok=True)
    write_json(study.out / "study.json", {"name": study.name, "study": study.source, "runs": records})


STUDY_MANIFEST = ".mtkd-study.json"  # written first into a study folder mtkd creates


def study_folder(study: Study) -> FolderLock:
    """Claim ``study.out`` for this process: a new or empty folder is marked with the manifest, a non-empty one
    must be an mtkd study folder already (manifest, or ``study.json`` from before manifests); returns its held
    lock (a second process on the same study is refused)."""
    from mtkd.atomic import write_json

    out = study.out
    if out.is_dir() and not (out / STUDY_MANIFEST).is_file() and not (out / "study.json").is_file() \
            and any(p.name != LOCK for p in out.iterdir()):
        raise MtkdError(f"study folder {out} exists and is not an mtkd study folder (no {STUDY_MANIFEST}); mtkd "
                        "never writes into it: choose another `out:` or --out")
    lock = FolderLock(output_folder(out, "study folder"), "study folder")
    lock.acquire()
    if not (out / STUDY_MANIFEST).is_file():
        write_json(out / STUDY_MANIFEST, {"mtkd": mtkd.__version__, "kind": "study", "name": study.name,
                                          "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return lock


def failed_runs(out: str | Path) -> str | None:
    """One line naming the failed and skipped runs of the study in ``out`` (from its ``study.json``); None when
    every run is done."""
    index = Path(out) / "study.json"
    records = json.loads(index.read_text())["runs"] if index.is_file() else []
    bad = [r for r in records if r["status"] in ("failed", "skipped")]
    if not bad:
        return None
    named = "; ".join(f"{r['method']} seed {r['seed']} {r['status']} ({r.get('error', '')})" for r in bad[:5])
    more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
    return (f"{len(bad)} of {len(records)} run(s) did not finish: {named}{more}; fix the cause and rerun the same "
            f"command (finished runs are reused; details in {index})")


def run_study(study: Study, log: Callable[[str], None] = print, executor: Any = None) -> list[dict[str, Any]]:
    """Train every planned run not already finished, holding the study folder's lock; returns the
    ``study.json`` records. ``executor`` (``mtkd.study_ray.RayExecutor``) trains runs concurrently; without it they
    train one after another in this process."""
    lock = study_folder(study)
    try:
        return _run_plan(study, log, executor)
    finally:
        lock.release()


@dataclass
class Step:
    """One planned run while a study executes: what to do before it trains and how to record its outcome (shared
    by the sequential loop and the Ray executor, so both decide and record alike)."""

    run: PlannedRun
    record: dict[str, Any]
    head: str

    def start(self, failed: set[tuple[str, int]], log: Callable[[str], None]) -> bool:
        """Skip (a teacher failed) or reuse (finished earlier), recording it; True when the run must train."""
        lost = [m for m in self.run.needs if (m, self.run.seed) in failed]
        status = run_status(self.run)
        if lost:
            self.record.update(status="skipped", error=f"teacher run(s) failed: {', '.join(lost)}")
            failed.add((self.run.method, self.run.seed))
            log(f"{self.head}: skipped, {self.record['error']}")
            return False
        if status == "done":
            self.record["status"] = "done"
            log(f"{self.head}: finished earlier, reused")
            return False
        log(f"{self.head}: {'resuming' if status == 'resume' else 'training'}")
        return True

    def finish(self, error: str | None, seconds: float, failed: set[tuple[str, int]],
               log: Callable[[str], None]) -> None:
        if error is not None:
            self.record.update(status="failed", error=error)
            failed.add((self.run.method, self.run.seed))
            log(f"{self.head}: FAILED: {error}")
        else:
            self.record["status"] = "done"
            log(f"{self.head}: done in {seconds:.0f} s")


def _run_plan(study: Study, log: Callable[[str], None], executor: Any = None) -> list[dict[str, Any]]:
    from mtkd.engine.run import train

    plan = study.plan()
    for run in plan:  # refuse a clashing folder before training anything
        run_status(run)
    records = [{"method": r.method, "seed": r.seed, "run": str(r.path), "status": "pending"} for r in plan]
    steps = [Step(r, rec, f"[{i}/{len(plan)}] {r.method} seed {r.seed}")
             for i, (r, rec) in enumerate(zip(plan, records), 1)]
    failed: set[tuple[str, int]] = set()
    if executor is not None:
        executor.run(steps, failed, lambda: write_index(study, records), log)
    else:
        for step in steps:
            if step.start(failed, log):
                start = time.time()
                try:
                    train(OmegaConf.create(step.run.config))
                except MtkdError as err:
                    step.finish(str(err), 0, failed, log)
                else:
                    step.finish(None, time.time() - start, failed, log)
            write_index(study, records)
    write_index(study, records)
    return records
