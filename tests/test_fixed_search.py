"""The tuned fixed-weight baseline: candidates, the generated study, and the paired-seed choice on validation."""

import json

import pytest

from mtkd.errors import MtkdError
from mtkd.fixed_search import add_fixed_search, best_fixed, candidates
from mtkd.study import load_study


def test_candidates_grid_and_random():
    grid = candidates(["semseg", "depth", "normal"], levels=(0.5, 1, 2))
    assert grid[0] == {"semseg": 1.0, "depth": 1.0, "normal": 1.0}
    assert len(grid) == 9 and all(c["semseg"] == 1.0 for c in grid)  # 3² combinations, EW among them once
    assert {"semseg": 1.0, "depth": 0.5, "normal": 2.0} in grid
    a = candidates(["a", "b"], levels=(), n_random=5, seed=3)
    assert a == candidates(["a", "b"], levels=(), n_random=5, seed=3) and len(a) == 6
    assert all(0.1 <= c["b"] <= 10 for c in a)
    assert a != candidates(["a", "b"], levels=(), n_random=5, seed=4)


def test_candidates_bad_input():
    with pytest.raises(MtkdError, match="at least 2 tasks"):
        candidates(["semseg"])
    with pytest.raises(MtkdError, match="levels must be finite numbers > 0"):
        candidates(["a", "b"], levels=(0, 1))
    with pytest.raises(MtkdError, match="n_random must be an integer"):
        candidates(["a", "b"], n_random=-1)


def test_generated_study_plans_every_candidate(tmp_path):
    base = tmp_path / "s.yaml"
    base.write_text("budget: {epochs: 1}\nseeds: [0]\nmethods:\n  ew: rooms/mtl_ew\n")
    out = add_fixed_search(base, tmp_path / "tuned.yaml", levels=(2,))
    study = load_study(out, out=tmp_path / "runs")
    fixed = [r for r in study.plan() if r.method.startswith("fixed_")]
    assert len(fixed) == 2  # EW + the 1-point grid {semseg: 1, depth: 2, normal: 2}
    w = {r.method: r.config["weighting"]["options"]["weights"] for r in fixed}
    assert w["fixed_000"] == {"semseg": 1.0, "depth": 1.0, "normal": 1.0}
    assert all(r.config["weighting"]["name"] == "fixed" for r in fixed)
    with pytest.raises(MtkdError, match="exists"):
        add_fixed_search(base, out)


def _result(root, method, seed, val, weights):
    run = root / method / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({
        "best_val_loss": val, "test": {}, "config": {"weighting": {"name": "fixed", "options": {"weights": weights}}}}))


def test_best_fixed_pairs_seeds_and_uses_validation(tmp_path):
    _result(tmp_path, "fixed_000", 0, 1.0, {"a": 1, "b": 1})
    _result(tmp_path, "fixed_000", 1, 1.0, {"a": 1, "b": 1})
    _result(tmp_path, "fixed_001", 0, 0.9, {"a": 1, "b": 2})
    _result(tmp_path, "fixed_001", 1, 1.2, {"a": 1, "b": 2})  # mean 1.05: worse on the paired seeds
    _result(tmp_path, "fixed_002", 0, 0.5, {"a": 1, "b": 4})  # best on seed 0 only, seed 1 unfinished
    best = best_fixed(tmp_path)
    assert best["seeds"] == [0]  # only seed 0 is shared by every candidate
    assert best["best"] == "fixed_002" and best["weights"] == {"a": 1, "b": 4}
    _result(tmp_path, "fixed_002", 1, 2.0, {"a": 1, "b": 4})
    best = best_fixed(tmp_path)
    assert best["seeds"] == [0, 1] and best["best"] == "fixed_000"
    assert [r["method"] for r in best["ranking"]] == ["fixed_000", "fixed_001", "fixed_002"]
    with pytest.raises(MtkdError, match="run the study first"):
        best_fixed(tmp_path / "nothing")
