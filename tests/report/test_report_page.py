"""The report page as a reader sees it: a failed run's error, a line for each figure not drawn, HTML tables that fit
the page, Δm vs EW undefined (–¹) for an architecture without its own EW run, the single-task point and the front."""

import json
import re

from mtkd.report.build import build_report
from mtkd.report.plots import tradeoff
from mtkd.report.runs import find_runs, group_methods
from mtkd.report.table import build_rows, grid, html_table, markdown_table
from mtkd.testing import finished_run

SEMSEG = {"semseg": {"mIoU": 40.0, "pAcc": 60.0}}
NORMAL = {"normal": {"mean": 30.0, "median": 25.0, "11.25": 20.0, "22.5": 45.0, "30": 60.0}}
DEPTH = {"depth": {"abs_err": 0.5, "rel_err": 0.2, "rmse": 0.7, "log_rmse": 0.3, "delta1": 70.0}}


def scaled(test, factor):
    return {t: {m: v * factor for m, v in ms.items()} for t, ms in test.items()}


def study(root):
    finished_run(root, "single_semseg/seed0", SEMSEG)
    finished_run(root, "single_depth/seed0", DEPTH)
    finished_run(root, "single_normal/seed0", NORMAL)
    every = {**SEMSEG, **DEPTH, **NORMAL}
    finished_run(root, "ew/seed0", scaled(every, 1.02))
    finished_run(root, "uw/seed0", scaled(every, 0.99), 0, "weighting.name=uw")  # EW is its reference
    finished_run(root, "cross_stitch/seed0", scaled(every, 1.01), 0, "model.arch=cross_stitch")
    (root / "kd" / "seed0").mkdir(parents=True)
    (root / "kd" / "seed0" / "config.yaml").write_text((root / "ew" / "seed0" / "config.yaml").read_text())
    (root / "study.json").write_text(json.dumps({"name": "s", "study": {}, "runs": [
        {"method": "kd", "seed": 0, "run": str(root / "kd" / "seed0"), "status": "failed",
         "error": "step 3: loss is NaN"},
        {"method": "kd2", "seed": 0, "run": str(root / "kd2" / "seed0"), "status": "skipped",
         "error": "teacher run(s) failed: kd"}]}))
    return root


def test_failed_runs_and_figures_not_drawn_are_said(tmp_path):
    report = build_report(study(tmp_path / "s"), n_images=0, cost=False, log=lambda _: None)
    html = report.html.read_text()
    assert "failed: step 3: loss is NaN" in html and "skipped: teacher run(s) failed: kd" in html
    assert "Δm against GFLOPs: not drawn, inference cost not measured (--no-cost)" in html
    assert "semseg curves: not drawn, no training loss of semseg was logged" in html
    assert "Distillation losses: not drawn" in html


def test_html_tables_fit_the_page_and_keep_every_column(tmp_path):
    root = study(tmp_path / "s")
    rows = build_rows(group_methods(find_runs(root), root)[0])
    header, _ = grid(rows)
    tables = re.findall(r"<table>.*?</table>", html_table(rows, width=9))
    heads = [re.findall(r"<th>(.*?)</th>", t) for t in tables]
    assert len(tables) > 1 and all(h[0] == "method" and len(h) <= 10 for h in heads)
    seen = [h for hs in heads for h in hs[1:]]
    assert sorted(seen) == sorted(header[1:])  # nothing hidden, nothing twice
    assert any("%" in h for h in seen) and any("°" in h for h in seen)  # units


def test_delta_m_vs_ew_is_undefined_for_an_architecture_without_its_own_ew(tmp_path):
    root = study(tmp_path / "s")
    rows = build_rows(group_methods(find_runs(root), root)[0])
    table = {line.split(" | ")[0][2:]: line for line in markdown_table(rows).splitlines()[2:]}
    assert "| –¹ |" in table["cross_stitch"] and "| –¹ |" not in table["ew"] and "| –¹ |" not in table["uw"]
    html = build_report(root, n_images=0, cost=False, log=lambda _: None).html.read_text()
    assert "–¹: no equal-weight model of this row&#x27;s architecture" in html


def test_tradeoff_reference_point_and_front(tmp_path):
    one = [{"label": "ew", "dm": 1.0, "gflops": 1.0}]  # a front of one point: no line, no legend entry for it
    assert tradeoff(one, tmp_path / "a")
    rows = [{"label": "ew", "dm": 1.0, "gflops": 1.0}, {"label": "kd", "dm": 2.0, "gflops": 2.0},
            {"label": "3 single-task models", "dm": 0.0, "gflops": 3.0, "reference": True}]
    assert tradeoff(rows, tmp_path / "b", colours={"ew": "C0", "kd": "C1"})
