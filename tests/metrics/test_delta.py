"""delta_m / per_task_delta: OKD-MTL Eq. 4 (seed 002), checked against the paper's own Tables 1 and 2."""

import pytest

from mtkd.errors import MtkdError
from mtkd.metrics import METRIC_DIRECTIONS, delta_m, per_task_delta


def _nyu(row):
    miou, pacc, abs_, rel, a11, a22, a30, mean, med = row
    return {"semseg": {"mIoU": miou, "pAcc": pacc}, "depth": {"abs_err": abs_, "rel_err": rel},
            "normal": {"11.25": a11, "22.5": a22, "30": a30, "mean": mean, "median": med}}


def _city(row):
    miou, pacc, abs_, rel = row
    return {"semseg": {"mIoU": miou, "pAcc": pacc}, "depth": {"abs_err": abs_, "rel_err": rel}}


# seed 002 (OKD-MTL, WACV 2023), Table 1: 3-task NYUv2, ViT-tiny; baseline row "Baseline (MTL)"
T1_BASE = (50.47, 73.20, 0.4431, 0.1904, 29.98, 50.83, 59.94, 33.20, 23.87)
T1_ROWS = {
    "Single Task": ((51.29, 72.23, 0.4423, 0.1789, 34.88, 55.19, 63.27, 31.65, 21.14), 4.19),
    "DWA [20]": ((51.58, 73.76, 0.4137, 0.1743, 32.56, 53.49, 62.03, 32.33, 22.25), 4.79),
    "GradNorm [4]": ((51.28, 73.63, 0.4179, 0.1757, 33.17, 53.83, 62.33, 32.26, 22.02), 4.67),
    "RLW [7]": ((50.85, 73.63, 0.4158, 0.1744, 32.16, 53.34, 61.98, 32.30, 22.28), 4.32),
    "KD-MTL [8]": ((51.07, 73.82, 0.4102, 0.1717, 32.47, 53.31, 61.87, 32.35, 22.29), 4.92),
    "OKD-MTL": ((51.99, 73.75, 0.4112, 0.1701, 33.58, 54.74, 63.20, 31.82, 21.50), 6.22),
}
# seed 002, Table 2: 2-task Cityscapes, ViT-tiny; baseline row "Baseline (MTL)"
T2_BASE = (72.12, 92.76, 0.0110, 0.1575)
T2_ROWS = {
    "DWA [20]": ((73.90, 93.46, 0.0092, 0.1432), 7.17),
    "GradNorm [4]": ((73.65, 93.35, 0.0099, 0.1483), 4.65),
    "UW [19]": ((74.86, 93.72, 0.0095, 0.1413), 7.19),
    "RLW [7]": ((73.84, 93.36, 0.0092, 0.1396), 7.69),
    "Cross Stitch [1]": ((71.09, 92.56, 0.0101, 0.1551), 2.02),
    "KD-MTL [8]": ((73.81, 93.35, 0.0098, 0.1418), 5.96),
    "OKD-MTL": ((75.40, 93.97, 0.0091, 0.1360), 9.19),
}


@pytest.mark.parametrize("name", sorted(T1_ROWS))
def test_seed002_table1_nyuv2(name):
    row, printed = T1_ROWS[name]
    assert round(delta_m(_nyu(row), _nyu(T1_BASE)), 2) == pytest.approx(printed, abs=1e-9)


@pytest.mark.parametrize("name", sorted(T2_ROWS))
def test_seed002_table2_cityscapes(name):
    row, printed = T2_ROWS[name]
    assert round(delta_m(_city(row), _city(T2_BASE)), 2) == pytest.approx(printed, abs=1e-9)


def test_seed002_table1_known_mismatches():
    # Printed 4.57 (UW) and 0.58 (Cross Stitch) are not reproduced by Eq. 4 from the printed metrics
    uw = (51.21, 73.64, 0.4126, 0.1724, 32.27, 52.97, 61.59, 32.50, 22.46)
    cs = (47.98, 71.14, 0.4310, 0.1824, 31.46, 51.86, 60.55, 33.17, 23.35)
    assert round(delta_m(_nyu(uw), _nyu(T1_BASE)), 2) == pytest.approx(4.58)
    assert round(delta_m(_nyu(cs), _nyu(T1_BASE)), 2) == pytest.approx(0.55)


def test_per_task_and_sign_convention():
    base = {"semseg": {"mIoU": 50.0}, "depth": {"abs_err": 0.5, "delta1": 80.0}}
    res = {"semseg": {"mIoU": 55.0}, "depth": {"abs_err": 0.4, "delta1": 80.0}}
    pt = per_task_delta(res, base)
    assert pt == pytest.approx({"semseg": 10.0, "depth": 10.0})  # depth: (+20 + 0) / 2
    assert delta_m(res, base) == pytest.approx(10.0)
    assert delta_m(base, base) == 0.0
    # task-level averaging: a task with many metrics weighs as much as one with one
    res2 = {"semseg": {"mIoU": 50.0}, "depth": {"abs_err": 0.25, "delta1": 80.0}}
    assert delta_m(res2, base) == pytest.approx(12.5)


def test_only_common_metrics_count_and_errors():
    base = {"semseg": {"mIoU": 50.0, "pAcc": 70.0}, "normal": {"mean": 20.0}}
    res = {"semseg": {"mIoU": 60.0, "extra": 1.0}}
    assert delta_m(res, base) == pytest.approx(20.0)
    with pytest.raises(MtkdError, match="depth"):
        delta_m({"depth": {"abs_err": 0.4}}, base)
    with pytest.raises(MtkdError, match="in common"):
        delta_m({"semseg": {"foo": 1.0}}, base)
    with pytest.raises(MtkdError, match="direction"):
        delta_m({"semseg": {"foo": 2.0}}, {"semseg": {"foo": 1.0}})
    assert delta_m({"semseg": {"foo": 2.0}}, {"semseg": {"foo": 1.0}},
                   directions={"semseg": {"foo": False}}) == pytest.approx(-100.0)
    with pytest.raises(MtkdError, match="is 0"):
        delta_m({"semseg": {"mIoU": 2.0}}, {"semseg": {"mIoU": 0.0}})


def test_direction_table():
    assert METRIC_DIRECTIONS["depth"] == {"abs_err": False, "rel_err": False, "rmse": False, "log_rmse": False,
                                          "delta1": True}
    assert METRIC_DIRECTIONS["normal"]["median"] is False and METRIC_DIRECTIONS["normal"]["30"] is True
    assert all(METRIC_DIRECTIONS[t]["mIoU"] for t in ("semseg", "sal", "parts"))
    assert METRIC_DIRECTIONS["edge"] == {"odsF": True, "oisF": True, "F@0.5": True}
    assert list(METRIC_DIRECTIONS["edge"])[0] == "odsF"  # shown first in tables
