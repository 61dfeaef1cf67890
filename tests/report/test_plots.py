"""mtkd.report.plots: merging the CSV logs of a run's attempts, and each figure written (or not) from small runs."""

import csv
import math
from pathlib import Path

import pytest

from mtkd.report.plots import (delta_m_bars, kd_losses, method_colours, pareto_front, read_logs, tradeoff,
                               training_curves, weights_over_time)

COLUMNS = ["epoch", "step", "train/loss/semseg", "train/loss/depth", "train/weight/semseg", "train/weight/depth",
           "train/kd/kd/semseg", "train/distill/otw/semseg", "val/loss", "val/semseg/mIoU", "val/depth/abs_err"]


def write_version(run: Path, version: int, rows: list[dict]) -> None:
    """One attempt's ``metrics.csv`` as Lightning writes it: every column in the header, sparse rows."""
    folder = run / "logs" / f"version_{version}"
    folder.mkdir(parents=True)
    with (folder / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def training(run: Path, version: int = 0, epochs: int = 3, steps: int = 4, scale: float = 1.0, start: int = 0) -> Path:
    """An attempt logging losses and moving weights every step and validating at each epoch end; the step count
    starts at ``start`` (a resumed attempt)."""
    rows = []
    for epoch in range(start // steps, epochs):
        for i in range(steps):
            step = epoch * steps + i
            rows.append({"epoch": epoch, "step": step, "train/loss/semseg": scale * 2 / (step + 1),
                         "train/loss/depth": scale / (step + 1), "train/weight/semseg": 1 + 0.1 * step,
                         "train/weight/depth": 1 - 0.05 * step, "train/kd/kd/semseg": scale * 10.0 ** -step,
                         "train/distill/otw/semseg": 0.5 + 0.1 * i})
        rows.append({"epoch": epoch, "step": epoch * steps + steps - 1, "val/loss": scale * 3 / (epoch + 1),
                     "val/semseg/mIoU": 20.0 + epoch, "val/depth/abs_err": scale * 0.9 / (epoch + 1)})
    write_version(run, version, rows)
    return run


@pytest.fixture
def methods(tmp_path: Path) -> dict[str, list[Path]]:
    """A method with two seeds (the second resumed once) and one with one seed."""
    a0 = training(tmp_path / "a-s0")
    a1 = training(training(tmp_path / "a-s1", epochs=2, scale=1.2), version=1, scale=1.1, start=4)
    return {"a": [a0, a1], "b": [training(tmp_path / "b", scale=0.8)]}


def written(paths: list[Path]) -> set[str]:
    assert all(p.stat().st_size > 0 for p in paths)
    return {p.name for p in paths}


def test_read_logs_merges_versions_by_step_the_later_winning(tmp_path):
    write_version(tmp_path, 0, [{"epoch": 0, "step": 0, "train/loss/depth": 4.0},
                                {"epoch": 0, "step": 1, "train/loss/depth": 3.0},
                                {"epoch": 0, "step": 1, "val/loss": 9.0},
                                {"epoch": 1, "step": 2, "train/loss/depth": 2.5}])
    write_version(tmp_path, 1, [{"epoch": 1, "step": 2, "train/loss/depth": 2.0},
                                {"epoch": 1, "step": 3, "train/loss/depth": 1.0, "val/loss": 8.0}])
    assert read_logs(tmp_path) == {"epoch": [(0, 0.0), (1, 0.0), (2, 1.0), (3, 1.0)],
                                   "train/loss/depth": [(0, 4.0), (1, 3.0), (2, 2.0), (3, 1.0)],
                                   "val/loss": [(1, 9.0), (3, 8.0)]}


def test_read_logs_takes_versions_in_numeric_order(tmp_path):
    for version, value in [(2, 1.0), (10, 2.0)]:  # as text, version_10 would come first and lose
        write_version(tmp_path, version, [{"epoch": 0, "step": 5, "val/loss": value}])
    assert read_logs(tmp_path)["val/loss"] == [(5, 2.0)]


def test_read_logs_skips_empty_and_non_finite_cells(tmp_path):
    write_version(tmp_path, 0, [{"epoch": 0, "step": 0, "val/loss": "nan", "train/loss/depth": "inf"},
                                {"epoch": 0, "step": 1, "val/loss": 1.5}])
    assert read_logs(tmp_path) == {"epoch": [(0, 0.0), (1, 0.0)], "val/loss": [(1, 1.5)]}


def test_read_logs_of_a_run_without_logs_is_empty(tmp_path):
    assert read_logs(tmp_path / "missing") == {}
    (tmp_path / "logs" / "version_0").mkdir(parents=True)
    assert read_logs(tmp_path) == {}
    (tmp_path / "logs" / "version_0" / "metrics.csv").write_text("")
    assert read_logs(tmp_path) == {}


def test_training_curves_one_figure_per_task_and_val_loss(methods, tmp_path):
    paths = training_curves(methods, tmp_path / "out")
    assert written(paths) == {f"curves_{n}.{ext}" for n in ("semseg", "depth", "val_loss") for ext in ("png", "pdf")}


def test_weights_over_time_leaves_constant_weights_out(tmp_path):
    """Equal weighting logs a constant 1 per task: nothing to plot, so no figure."""
    run = tmp_path / "ew"
    write_version(run, 0, [{"epoch": 0, "step": s, "train/weight/semseg": 1.0, "train/weight/depth": 1.0}
                           for s in range(5)])
    assert weights_over_time({"ew": [run]}, tmp_path / "out") == []
    assert not (tmp_path / "out").exists()


def test_kd_losses_and_weights_from_seeds(methods, tmp_path):
    assert written(kd_losses(methods, tmp_path / "out")) == {"kd_losses.png", "kd_losses.pdf"}
    assert written(weights_over_time(methods, tmp_path / "out")) == {"weights.png", "weights.pdf"}


def test_delta_m_bars_with_and_without_std(tmp_path):
    rows = [{"label": "okd", "dm": 2.5, "dm_std": 0.4, "n": 3}, {"label": "ew", "dm": -1.0, "dm_std": None, "n": 1},
            {"label": "uw", "dm": 0.3, "dm_std": math.nan, "n": 2}]
    assert written(delta_m_bars(rows, tmp_path)) == {"delta_m.png", "delta_m.pdf"}
    rows[0]["ci"], rows[2]["ci"] = (1.2, 3.8), (-0.4, 1.0)  # 95 % intervals: one excludes 0, one does not
    assert written(delta_m_bars(rows, tmp_path, "EW", "delta_m_ew")) == {"delta_m_ew.png", "delta_m_ew.pdf"}


def test_tradeoff_skips_rows_without_cost(tmp_path):
    rows = [{"label": "okd", "dm": 2.5, "dm_std": 0.4, "gflops": 1.3}, {"label": "ew", "dm": -1.0, "gflops": 1.2},
            {"label": "teacher", "dm": 6.0, "dm_std": None, "gflops": 30.0}, {"label": "no cost", "dm": 9.0}]
    assert written(tradeoff(rows, tmp_path)) == {"tradeoff_gflops.png", "tradeoff_gflops.pdf"}
    assert tradeoff(rows[3:], tmp_path / "none") == []


def test_pareto_front_keeps_the_points_nothing_beats():
    points = [(1.2, -1.0), (1.3, 2.5), (1.3, 1.0), (2.0, 2.0), (30.0, 6.0), (1.2, -2.0)]
    assert pareto_front(points) == [(1.2, -1.0), (1.3, 2.5), (30.0, 6.0)]


def test_nothing_to_show_writes_nothing(tmp_path):
    out, empty = tmp_path / "out", tmp_path / "no-logs"
    empty.mkdir()
    for plot in (training_curves, weights_over_time, kd_losses):
        assert plot({}, out) == [] and plot({"x": [empty]}, out) == []
    assert delta_m_bars([], out) == [] and delta_m_bars([{"label": "x", "dm": None, "n": 0}], out) == []
    assert tradeoff([], out) == []
    assert not out.exists()


def test_method_colours_follow_the_given_order():
    colours = method_colours(["b", "a", "b", "c"])
    assert list(colours) == ["b", "a", "c"]
    assert colours == method_colours(["b", "a", "c"]) and len(set(colours.values())) == 3
