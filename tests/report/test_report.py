"""``mtkd report``: grouping runs into methods, the table (exact text, Δm by hand), bad folders, every file."""

import csv
import io
import json

import pytest

from mtkd.cli import main
from mtkd.errors import MtkdError
from mtkd.report.build import build_report
from mtkd.report.runs import find_runs, group_methods
from mtkd.report.table import build_rows, csv_table, latex_table, markdown_table
from mtkd.testing import finished_run as make_run

SEG = {"single_semseg": {"semseg": {"mIoU": 40.0, "pAcc": 60.0}}}
DEPTH = {"single_depth": {"depth": {"abs_err": 0.5, "rel_err": 0.2}}}


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "study"
    make_run(root, "single_semseg/seed0", SEG["single_semseg"])
    make_run(root, "single_depth/seed0", DEPTH["single_depth"])
    make_run(root, "ew/seed0", {"semseg": {"mIoU": 44.0, "pAcc": 60.0}, "depth": {"abs_err": 0.45, "rel_err": 0.2}})
    make_run(root, "ew/seed1", {"semseg": {"mIoU": 48.0, "pAcc": 60.0}, "depth": {"abs_err": 0.45, "rel_err": 0.2}},
             1, minutes=3.0)
    make_run(root, "uw/seed0", {"semseg": {"mIoU": 40.0, "pAcc": 66.0}, "depth": {"abs_err": 0.55, "rel_err": 0.1}},
             0, "weighting.name=uw")
    return root


def test_seeds_group_into_one_method(runs):
    groups, repeats = group_methods(find_runs(runs), runs)
    assert [(g.label, [r.seed for r in g.runs]) for g in groups] == [
        ("ew", [0, 1]), ("single_depth", [0]), ("single_semseg", [0]), ("uw", [0])] and not repeats


def test_table_text_and_delta_m_by_hand(runs):
    groups, _ = group_methods(find_runs(runs), runs)
    rows = build_rows(groups)
    # Δm by hand (Eq. 4, lower-is-better metrics negated), vs single-task semseg (40, 60) and depth (0.5, 0.2):
    #   ew seed 0: semseg (+10% + 0) / 2 = 5, depth (+10% + 0) / 2 = 5 -> 5.0; seed 1: semseg (+20 + 0)/2 = 10 -> 7.5
    #   uw: semseg (0 + 10)/2 = 5, depth (-10 + 50)/2 = 20 -> 12.5;  uw vs ew means (46, 60, 0.45, 0.2):
    #   semseg ((40-46)/46 + (66-60)/60)/2 = (-13.043 + 10)/2 = -1.522, depth (-(0.55-0.45)/0.45 - (0.1-0.2)/0.2)/2
    #   = (-22.222 + 50)/2 = 13.889 -> 6.18; ew vs its own mean: 0 ± the spread of its seeds
    std = ((5 - 6.25) ** 2 + (7.5 - 6.25) ** 2) ** 0.5  # sample std of 5 and 7.5 = 1.77
    assert f"{std:.2f}" == "1.77"
    assert markdown_table(rows) == (
        "| method | seeds | semseg mIoU % ↑ | semseg pAcc % ↑ | depth abs_err ↓ | depth rel_err ↓ | Δm % ↑ | Δm vs EW % ↑ "
        "| train min |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        "| single_semseg | 1 | 40.00 | 60.00 | – | – | +0.00 | – | 1.0 |\n"
        "| single_depth | 1 | – | – | 0.5 | 0.2 | +0.00 | – | 1.0 |\n"
        "| ew | 2 | **46.00 ± 2.83** | 60.00 ± 0.00 | **0.45 ± 0.00** | 0.2 ± 0.0 | +6.25 ± 1.77 | +0.00 ± 1.54 "
        "| 2.0 |\n"
        "| uw | 1 | 40.00 | **66.00** | 0.55 | **0.1** | **+12.50** | **+6.18** | 1.0 |\n"
    )


def test_delta_m_recomputes_from_the_tables_own_rows(runs):
    """Δm is linear in the metrics: the mean row's Δm equals the mean of the per-seed Δm (what the table shows)."""
    groups, _ = group_methods(find_runs(runs), runs)
    table = list(csv.DictReader(io.StringIO(csv_table(build_rows(groups)))))
    row = {r["method"]: r for r in table}
    ew = row["ew"]
    semseg = ((float(ew["semseg mIoU % ↑"]) - 40) / 40 + (float(ew["semseg pAcc % ↑"]) - 60) / 60) / 2
    depth = (-(float(ew["depth abs_err ↓"]) - 0.5) / 0.5 - (float(ew["depth rel_err ↓"]) - 0.2) / 0.2) / 2
    assert float(ew["Δm % ↑"]) == pytest.approx(100 * (semseg + depth) / 2)
    assert float(ew["Δm % ↑ std"]) == pytest.approx(1.7678, abs=1e-4)


def test_latex_is_booktabs_with_bold_best(runs):
    groups, _ = group_methods(find_runs(runs), runs)
    tex = latex_table(build_rows(groups), caption="Δm in %")
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "\\textbf{+12.50}" in tex and "46.00 $\\pm$ 2.83" in tex and "$\\Delta$m \\% $\\uparrow$" in tex


def test_incomplete_and_repeated_runs_are_listed_not_fatal(runs, tmp_path):
    (runs / "kd" / "seed0").mkdir(parents=True)
    (runs / "kd" / "seed0" / "config.yaml").write_text((runs / "ew" / "seed0" / "config.yaml").read_text())
    make_run(runs, "ew-copy", {"semseg": {"mIoU": 1.0, "pAcc": 1.0}, "depth": {"abs_err": 1.0, "rel_err": 1.0}})
    report = build_report(runs, n_images=0, cost=False, log=lambda _: None)
    why = dict(report.incomplete)
    assert "no results.json" in why[str(runs / "kd" / "seed0")]
    assert "same config and seed" in why[str(runs / "ew-copy")]
    assert [r.label for r in report.tables["rooms"]] == ["single_semseg", "single_depth", "ew", "uw"]
    html = report.html.read_text()
    assert "Runs not in the tables" in html and "kd/seed0" in html


def test_datasets_are_split_into_sections(runs):
    make_run(runs, "other/single_semseg", SEG["single_semseg"], 0, "data.rooms.n_test=50")
    report = build_report(runs, n_images=0, cost=False, log=lambda _: None)
    assert len(report.tables) == 2
    sizes = sorted(len(rows) for rows in report.tables.values())
    assert sizes == [1, 4]


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(MtkdError, match="no finished run"):
        build_report(tmp_path, log=lambda _: None)
    assert main(["report", str(tmp_path / "missing")]) == 2


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """A real two-seed study (single-task teachers, EW, UW, KD) trained for one epoch, through the CLI."""
    import yaml

    from mtkd.testing import tiny_run_overrides

    tmp = tmp_path_factory.mktemp("tiny_study")
    tiny = tiny_run_overrides(tmp)
    both = {"overrides": {"data.tasks": ["semseg", "normal"]}}  # no depth: its δ1 is 0 after so few steps
    spec = {"budget": {"epochs": 1}, "seeds": [0, 1], "out": str(tmp / "study"),
            "overrides": [o for o in tiny if not o.startswith(("trainer.max_epochs", "out_dir"))],
            "teachers": {"semseg": "single_semseg", "normal": "single_normal"},
            "methods": {"single_semseg": "rooms/single_semseg", "single_normal": "rooms/single_normal",
                        "ew": {"recipe": "rooms/mtl_ew", **both}, "uw": {"recipe": "rooms/mtl_uw", **both},
                        "kd": {"recipe": "rooms/kd", **both}}}
    (tmp / "study.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert main(["study", str(tmp / "study.yaml"), "--no-report"]) == 0
    return tmp / "study"


@pytest.mark.slow
def test_report_of_a_real_study_writes_every_file(tiny_study):
    assert main(["report", str(tiny_study), "--images", "2"]) == 0
    out = tiny_study / "report"
    expected = ["table.md", "table.csv", "table.tex", "report.html", "delta_m", "tradeoff_gflops",
                "tradeoff_latency_ms", "curves_semseg", "curves_normal", "curves_val_loss", "weights", "kd_losses",
                "predictions_semseg", "predictions_normal"]
    for name in expected:
        files = [out / name] if "." in name else [out / f"{name}.png", out / f"{name}.pdf"]
        for f in files:
            assert f.is_file() and f.stat().st_size > 0, f
    table = (out / "table.md").read_text()
    assert [line.split(" | ")[0][2:] for line in table.splitlines()[2:]] == [
        "single_semseg", "single_normal", "ew", "uw", "kd"]
    assert all(" | 2 | " in line for line in table.splitlines()[2:])  # two seeds per method
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 10 and "<img src='http" not in html
    cost = json.loads((tiny_study / "ew" / "seed0" / "cost.json").read_text())
    assert cost["gflops"] > 0 and cost["latency_ms"] > 0 and cost["input"] == [32, 48]


def test_zero_delta_m_prints_without_a_minus_sign():
    from mtkd.report.table import columns, Row

    row = Row("ew", 2, ["depth"], {"depth": {"abs_err": (0.5, 0.1)}}, dm_single=(-3.6e-15, 2.48))
    dm = next(c for c in columns([row]) if c.title == "Δm % ↑")
    assert dm.fmt(-3.6e-15) == "+0.00" and dm.fmt(-0.004) == "+0.00" and dm.fmt(-0.006) == "-0.01"
