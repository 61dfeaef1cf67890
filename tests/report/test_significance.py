"""Significance in the report: paired t-intervals recomputed independently (scipy's paired t-test, Δm by hand), the
table markers, significance.csv, the one-seed note and the seeds-needed rule against the exact t-test power."""

import csv
import io
import math

import numpy as np
import pytest
from scipy import stats

from mtkd.report.build import build_report
from mtkd.report.runs import find_runs, group_methods
from mtkd.report.significance import paired, pooled_sd, seeds_needed
from mtkd.report.table import build_rows, csv_table, latex_table, markdown_table
from mtkd.testing import finished_run

# Three seeds of each method: (mIoU, pAcc, abs_err, rel_err) per seed.
SEEDS = {
    "single_semseg": [(40.0, 60.0, None, None), (42.0, 61.0, None, None), (41.0, 62.0, None, None)],
    "single_depth": [(None, None, 0.50, 0.20), (None, None, 0.52, 0.21), (None, None, 0.48, 0.19)],
    "ew": [(44.0, 61.0, 0.47, 0.19), (45.0, 62.0, 0.49, 0.20), (43.5, 62.5, 0.46, 0.18)],
    "uw": [(40.5, 61.0, 0.50, 0.20), (43.0, 60.0, 0.53, 0.20), (40.0, 63.0, 0.47, 0.20)],
}


def metrics_of(values):
    miou, pacc, abs_err, rel_err = values
    out = {}
    if miou is not None:
        out["semseg"] = {"mIoU": miou, "pAcc": pacc}
    if abs_err is not None:
        out["depth"] = {"abs_err": abs_err, "rel_err": rel_err}
    return out


@pytest.fixture
def study(tmp_path):
    root = tmp_path / "study"
    for method, seeds in SEEDS.items():
        for seed, values in enumerate(seeds):
            finished_run(root, f"{method}/seed{seed}", metrics_of(values), seed,
                         *(["weighting.name=uw"] if method == "uw" else []))
    return root


def rows_of(root):
    groups, _ = group_methods(find_runs(root), root)
    return {r.label: r for r in build_rows(groups)}


def hand_delta_m(values, base):
    """Eq. 4 written out: semseg (mIoU, pAcc) higher is better, depth (abs_err, rel_err) lower is better."""
    miou, pacc, abs_err, rel_err = values
    semseg = ((miou - base[0]) / base[0] + (pacc - base[1]) / base[1]) / 2
    depth = (-(abs_err - base[2]) / base[2] - (rel_err - base[3]) / base[3]) / 2
    return 100 * (semseg + depth) / 2


def single_task_seed(k):
    return (*SEEDS["single_semseg"][k][:2], *SEEDS["single_depth"][k][2:])


def test_paired_interval_matches_scipy_and_the_closed_form():
    a, b = [44.0, 45.0, 43.5], [40.0, 42.0, 41.0]
    c = paired([x - y for x, y in zip(a, b)])
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (c.low, c.high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    d = np.subtract(a, b)  # closed form with t_{0.975, 2} = 4.302652729911275 from a table
    half = 4.302652729911275 * d.std(ddof=1) / math.sqrt(3)
    assert c.mean == pytest.approx(d.mean()) and c.high - c.mean == pytest.approx(half, rel=1e-9)
    assert paired([1.5]).low is None and not paired([1.5]).significant


def test_metric_and_delta_m_intervals_recomputed_by_hand(study):
    rows = rows_of(study)
    ew, uw = rows["ew"], rows["uw"]
    for name, index in (("semseg/mIoU", 0), ("depth/abs_err", 2)):
        method = [s[index] for s in SEEDS["ew"]]
        single = [single_task_seed(k)[index] for k in range(3)]
        ci = stats.ttest_rel(method, single).confidence_interval(0.95)
        got = ew.vs_single[name]
        assert (got.n, got.mean, got.low, got.high) == pytest.approx((3, np.mean(method) - np.mean(single),
                                                                      ci.low, ci.high))
    base = np.mean([single_task_seed(k) for k in range(3)], axis=0)  # Δm's fixed baseline: the single-task means
    diffs = [hand_delta_m(SEEDS["ew"][k], base) - hand_delta_m(single_task_seed(k), base) for k in range(3)]
    ci = stats.ttest_1samp(diffs, 0).confidence_interval(0.95)
    dm = ew.vs_single["Δm"]
    assert (dm.low, dm.high) == pytest.approx((ci.low, ci.high))
    assert dm.mean == pytest.approx(ew.dm_single[0])  # the mean paired difference is the table's Δm
    assert dm.significant and ci.low > 0
    ew_base = np.mean(SEEDS["ew"], axis=0)  # vs EW: Δm against the EW means, seed k of UW against seed k of EW
    diffs = [hand_delta_m(SEEDS["uw"][k], ew_base) - hand_delta_m(SEEDS["ew"][k], ew_base) for k in range(3)]
    ci = stats.ttest_1samp(diffs, 0).confidence_interval(0.95)
    assert (uw.vs_ew["Δm"].low, uw.vs_ew["Δm"].high) == pytest.approx((ci.low, ci.high))
    assert uw.vs_ew["Δm"].significant == (ci.low > 0 or ci.high < 0)
    assert "Δm" not in rows["single_semseg"].vs_single and not ew.vs_ew  # a reference is not compared to itself


def test_markers_in_every_table_and_significance_csv(study):
    rows = rows_of(study)
    real = {(r.label, key) for r in rows.values() for key, c in r.vs_single.items() if c.significant}
    assert ("ew", "Δm") in real
    md = {line.split(" | ")[0][2:]: line.split(" | ") for line in markdown_table(list(rows.values())).splitlines()[2:]}
    header = markdown_table(list(rows.values())).splitlines()[0].split(" | ")
    assert md["ew"][header.index("Δm % ↑")].endswith("†")
    for (label, key) in real:  # every marked metric cell is a judged difference, and the other way round
        if key != "Δm":
            task, metric = key.split("/")
            title = next(h for h in header if h.startswith(f"{task} {metric} "))
            assert "†" in md[label][header.index(title)]
    assert sum("†" in c for line in md.values() for c in line) == len(real)
    assert "$^\\dagger$" in latex_table(list(rows.values()))
    table = {r["method"]: r for r in csv.DictReader(io.StringIO(csv_table(list(rows.values()))))}
    assert table["ew"]["Δm % ↑ sig"] == "†" and table["single_semseg"]["Δm % ↑ sig"] == ""
    report = build_report(study, n_images=0, cost=False, log=lambda _: None)
    lines = list(csv.DictReader((report.html.parent / "significance.csv").open()))
    dm = next(r for r in lines if r["method"] == "ew" and r["quantity"] == "Δm" and r["vs"] == "single-task")
    assert dm["judged"] == "real" and float(dm["95% low"]) == pytest.approx(rows["ew"].vs_single["Δm"].low)
    html = report.html.read_text()
    assert "95 % t-interval" in html and "delta_m_ew" in html


def test_one_seed_says_nothing_can_be_judged(tmp_path):
    root = tmp_path / "one"
    for method in SEEDS:
        finished_run(root, f"{method}/seed0", metrics_of(SEEDS[method][0]), 0,
                     *(["weighting.name=uw"] if method == "uw" else []))
    report = build_report(root, n_images=0, cost=False, log=lambda _: None)
    html = report.html.read_text()
    assert "no difference in this table can be judged" in html and "spread is unknown" in html
    assert "†" not in (report.html.parent / "table.md").read_text()
    # one method with three seeds gives the spread: seeds needed from its std
    for seed in (1, 2):
        finished_run(root, f"ew/seed{seed}", metrics_of(SEEDS["ew"][seed]), seed)
    html = build_report(root, n_images=0, cost=False, log=lambda _: None).html.read_text()
    assert "seed std of Δm observed in this report is" in html and "Seeds needed" in html


def test_seeds_needed_reaches_the_power_of_an_exact_t_test():
    for diff, sd in ((1.0, 1.0), (2.0, 3.0), (0.5, 0.2)):
        n = seeds_needed(diff, sd)

        def power(k):  # two-sided one-sample t-test at 5 %: noncentral t with δ√k/sd
            crit = stats.t.ppf(0.975, k - 1)
            nc = diff * math.sqrt(k) / sd
            return stats.nct.sf(crit, k - 1, nc) + stats.nct.cdf(-crit, k - 1, nc)

        assert power(n) >= 0.75 and (n == 2 or power(n - 1) < 0.8), (diff, sd, n, power(n))
    assert seeds_needed(0.01, 10.0) is None


def test_pooled_sd():
    assert pooled_sd([(2.0, 3), (None, 1), (1.0, 2)]) == pytest.approx(math.sqrt((2 * 4 + 1) / 3))
    assert pooled_sd([(None, 1)]) is None
