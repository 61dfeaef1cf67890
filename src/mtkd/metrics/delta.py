"""Multi-task performance relative to a baseline, Delta_m in %, as OKD-MTL (Jacob et al., WACV 2023) Eq. 4.

    Delta_m = 1/N_t sum_n 1/N_n sum_m (-1)^{l_{n,m}} (M_{n,m} - M^B_{n,m}) / M^B_{n,m} x 100

with l = 1 when lower is better (so an improvement is positive in every metric). Note that the paper's text says
"p = 1 if a higher value indicates better performance", the opposite sign; its own Tables 1 and 2 are reproduced
only with l = 1 for lower-is-better metrics (checked in ``tests/metrics/test_delta.py``), so that is what is used.
Each task is averaged over its own metrics first, then over tasks, so a task with five metrics weighs as much as one
with two. KDAM (Xu et al., ICCV 2023) reports the same quantity with one metric per task and the single-task
models as the baseline; pass the results and baseline that way to reproduce it.

``results`` and ``baseline`` are ``{task: {metric: value}}``. Only metrics present in both count; a task of
``results`` that the baseline lacks, a task with no metric in common, an unknown direction or a zero baseline value
raises :class:`MtkdError`.
"""

from __future__ import annotations

from collections.abc import Mapping

from mtkd.errors import MtkdError

__all__ = ["METRIC_DIRECTIONS", "delta_m", "per_task_delta"]

def __getattr__(name: str):
    """``METRIC_DIRECTIONS`` (task -> metric -> higher_is_better) is owned by :mod:`mtkd.tasks`, derived from the metric
    classes' ``higher_is_better_by_key``; read lazily as ``mtkd.tasks`` imports this package."""
    if name == "METRIC_DIRECTIONS":
        from mtkd.tasks import METRIC_DIRECTIONS
        return METRIC_DIRECTIONS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _direction(task: str, metric: str, directions: Mapping[str, Mapping[str, bool]] | None) -> bool:
    from mtkd.tasks import METRIC_DIRECTIONS

    for table in (directions, METRIC_DIRECTIONS):
        if table is not None and task in table and metric in table[task]:
            return bool(table[task][metric])
    raise MtkdError(f"delta_m: no direction (higher/lower is better) known for metric {task}.{metric}; "
                    f"pass directions={{'{task}': {{'{metric}': True|False}}}}")


def per_task_delta(results: Mapping[str, Mapping[str, float]], baseline: Mapping[str, Mapping[str, float]],
                   directions: Mapping[str, Mapping[str, bool]] | None = None) -> dict[str, float]:
    """``{task: mean over that task's common metrics of +-(M - M_B) / M_B x 100}`` (in %)."""
    out: dict[str, float] = {}
    for task, metrics in results.items():
        if task not in baseline:
            raise MtkdError(f"delta_m: task {task!r} is missing from the baseline (it has {sorted(baseline)})")
        base = baseline[task]
        common = [m for m in metrics if m in base]
        if not common:
            raise MtkdError(f"delta_m: task {task!r} has no metric in common with the baseline "
                            f"(results {sorted(metrics)}, baseline {sorted(base)})")
        terms = []
        for m in common:
            mb = float(base[m])
            if mb == 0:
                raise MtkdError(f"delta_m: baseline value of {task}.{m} is 0, the relative change is undefined")
            sign = 1.0 if _direction(task, m, directions) else -1.0
            terms.append(sign * (float(metrics[m]) - mb) / mb * 100.0)
        out[task] = sum(terms) / len(terms)
    return out


def delta_m(results: Mapping[str, Mapping[str, float]], baseline: Mapping[str, Mapping[str, float]],
            directions: Mapping[str, Mapping[str, bool]] | None = None) -> float:
    """Delta_m in %: the mean over the tasks of ``results`` of :func:`per_task_delta` (higher is better)."""
    per_task = per_task_delta(results, baseline, directions)
    if not per_task:
        raise MtkdError("delta_m: results hold no task")
    return sum(per_task.values()) / len(per_task)
