"""Which differences in a report are real: paired comparisons over seeds, with 95 % t-intervals.

A method is compared with a reference (the single-task models, or the equal-weight model of its architecture) seed
by seed: seed k of the method against seed k of the reference (a study pairs teachers the same way, so the shared
randomness of a seed cancels). For each quantity q (Δm, and every test metric the two share) the differences
d_k = q(method, seed k) − q(reference, seed k) over the n common seeds give

    mean d ± t_{0.975, n−1} · s_d / √n           (paired t-interval, 95 %)

For Δm, q is Δm against the fixed baseline the table's column uses (the mean over seeds of the reference), so Δm
is linear in the metrics and the mean difference *is* the column's value when both have the same seeds.

Why a t-interval and not a bootstrap: with 3–5 seeds a bootstrap resamples from 3–5 numbers (10 distinct resamples
for n = 3), so its percentile interval never reaches beyond the observed differences and covers far less than 95 %;
the t-interval widens for small n through t_{0.975, n−1} (4.30 for n = 3, 2.78 for n = 5) and is exact when the
seed-to-seed differences are normal. With one common seed there is no spread, hence no interval:
:func:`seeds_needed` then says how many seeds a difference of a given size would need, from the spread of the
methods that do have several seeds (assumed shared by all methods).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

from mtkd.errors import MtkdError
from mtkd.metrics import delta_m

LEVEL = 0.95
POWER = 0.8  # seeds_needed: the chance that a real difference of the given size is then judged real
MAX_SEEDS = 100
DM = "Δm"  # the key of the Δm comparison (metrics are keyed "<task>/<metric>")

Results = Mapping[str, Mapping[str, float]]  # task -> metric -> value (one run's test metrics)


@dataclass(frozen=True)
class Comparison:
    """A paired difference (method − reference) over ``n`` seeds; ``low``/``high`` None below two seeds."""

    n: int
    mean: float
    low: float | None = None
    high: float | None = None
    sd: float | None = None  # sample std of the per-seed differences

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.low is not None and (self.low > 0 or self.high < 0)


def paired(diffs: Sequence[float], level: float = LEVEL) -> Comparison:
    """Mean of the per-seed differences and its two-sided t-interval (none for a single difference)."""
    n, mean = len(diffs), statistics.fmean(diffs)
    if n < 2:
        return Comparison(n, mean)
    sd = statistics.stdev(diffs)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return Comparison(n, mean, mean - half, mean + half, sd)


def compare(method: Mapping[int, Results], reference: Mapping[int, Results],
            baseline: Results | None) -> dict[str, Comparison]:
    """``{"Δm" or "<task>/<metric>": Comparison}`` of ``method`` − ``reference`` ({seed: test metrics}) over their
    common seeds and the method's tasks; Δm against ``baseline`` (left out when None or undefined)."""
    seeds = sorted(set(method) & set(reference))
    if not seeds:
        return {}
    tasks = [t for t in method[seeds[0]] if all(t in reference[s] for s in seeds)]
    out = {}
    for t in tasks:
        for m in method[seeds[0]][t]:
            if all(m in reference[s][t] and m in method[s][t] for s in seeds):
                out[f"{t}/{m}"] = paired([method[s][t][m] - reference[s][t][m] for s in seeds])
    if baseline is not None and len(tasks) == len(method[seeds[0]]):
        try:
            out[DM] = paired([delta_m({t: method[s][t] for t in tasks}, baseline)
                              - delta_m({t: reference[s][t] for t in tasks}, baseline) for s in seeds])
        except MtkdError:  # a zero baseline metric: the table's caption says why Δm is undefined
            pass
    return out


def seeds_needed(difference: float, sd: float, level: float = LEVEL, power: float = POWER) -> int | None:
    """The fewest seeds n for which a true paired difference ``difference`` with per-seed spread ``sd`` gives a
    ``level`` interval excluding zero with probability ``power``: (t_{1−α/2,n−1} + t_{power,n−1}) · sd / √n ≤
    |difference| (the usual normal-approximation sample size, with t quantiles); None beyond :data:`MAX_SEEDS`."""
    if sd == 0:
        return 2
    for n in range(2, MAX_SEEDS + 1):
        if (stats.t.ppf(0.5 + level / 2, n - 1) + stats.t.ppf(power, n - 1)) * sd / math.sqrt(n) <= abs(difference):
            return n
    return None


def pooled_sd(spreads: Sequence[tuple[float | None, int]]) -> float | None:
    """The pooled sample std of groups given as ``(std, n)`` (each method's Δm std over its n seeds):
    √(Σ (n−1)·s² / Σ (n−1)); None without a group of two or more."""
    groups = [(s, n) for s, n in spreads if s is not None and n > 1]
    dof = sum(n - 1 for _, n in groups)
    return math.sqrt(sum((n - 1) * s * s for s, n in groups) / dof) if dof else None


def one_seed_note(differences: Mapping[str, float], spread: float | None) -> str:
    """What the report says when methods have one seed: nothing can be judged, and how many seeds would be needed
    for the observed Δm differences given ``spread`` (the seed std of Δm seen elsewhere, or None)."""
    text = ("With one seed of a method and its reference, no difference in this table can be judged real or "
            "noise.")
    if spread is None:
        return text + (" No method has several seeds, so the seed-to-seed spread is unknown; run at least 3 seeds "
                       "(study `seeds: [0, 1, 2]`) for intervals.")
    sd = math.sqrt(2) * spread  # the difference of two independent runs
    sizes = []
    for label, diff in differences.items():
        n = seeds_needed(diff, sd)
        sizes.append(f"{label} ({diff:+.2f}): {n if n is not None else f'more than {MAX_SEEDS}'}")
    need = f" Seeds needed for the observed Δm difference to be judged ({POWER:.0%} power): " + "; ".join(sizes) \
        if sizes else ""
    return text + f" The seed std of Δm observed in this report is {spread:.2f} %." + need + "."


HEADER = ["method", "vs", "quantity", "seeds", "mean difference", "95% low", "95% high", "judged", "seeds needed"]


def records(rows: Sequence) -> list[list]:
    """One line per comparison of the report's rows (:class:`~mtkd.report.table.Row`): method, reference, quantity
    (Δm or task/metric), n, mean difference, interval, ``real`` / ``noise`` / ``?`` (one seed), and the seeds a
    difference of this size would need (80 % power) when not judged real."""
    out = []
    for r in rows:
        for ref, found in (("single-task", r.vs_single), (r.ew_label, r.vs_ew)):
            for key, c in found.items():
                judged = "?" if c.low is None else "real" if c.significant else "noise"
                need = None
                if c.sd is not None and not c.significant:
                    need = seeds_needed(c.mean, c.sd) or f"more than {MAX_SEEDS}"
                out.append([r.label, ref, key, c.n, c.mean, c.low, c.high, judged, need])
    return out
