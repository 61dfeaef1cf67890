"""Studies: planning (dependency order, teachers paired by seed), refusals, reuse, and a killed study resumed."""

import json

import pytest
import yaml

import mtkd.engine.run as engine_run
from mtkd.errors import MtkdError
from mtkd.study import load_study, run_study
from mtkd.testing import tiny_run_overrides


def tiny_overrides(tmp_path):
    """The tiny-run overrides minus the training length, which a study's budget sets."""
    return [o for o in tiny_run_overrides(tmp_path) if not o.startswith(("trainer.max_epochs", "out_dir"))]


def write_study(tmp_path, **spec):
    base = {"name": "s", "out": str(tmp_path / "study"), "budget": {"epochs": 1}, "seeds": [0],
            "overrides": tiny_overrides(tmp_path)}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**base, **spec}, sort_keys=False))
    return path


TEACHERS = {"semseg": "single_semseg", "depth": "single_depth"}
KD_METHODS = {
    "kd": {"recipe": "rooms/kd", "overrides": {"data.tasks": ["semseg", "depth"]}},
    "single_semseg": "rooms/single_semseg",
    "single_depth": "rooms/single_depth",
}


def test_plan_puts_teachers_first_and_pairs_them_by_seed(tmp_path):
    study = load_study(write_study(tmp_path, seeds=[0, 1], teachers=TEACHERS, methods=KD_METHODS))
    plan = study.plan()
    assert [(r.method, r.seed) for r in plan] == [
        ("single_semseg", 0), ("single_depth", 0), ("kd", 0), ("single_semseg", 1), ("single_depth", 1), ("kd", 1)]
    kd1 = plan[-1]
    assert kd1.config["distill"]["teachers"] == {t: str(tmp_path / "study" / m / "seed1") for t, m in TEACHERS.items()}
    assert kd1.config["seed"] == 1 and kd1.config["data"]["seed"] == 0  # the validation split stays fixed
    assert kd1.path == tmp_path / "study" / "kd" / "seed1" and kd1.config["trainer"]["max_epochs"] == 1


def test_steps_budget_sets_max_steps(tmp_path):
    study = load_study(write_study(tmp_path, budget={"steps": 7}, methods={"ew": "rooms/mtl_ew"}))
    trainer = study.plan()[0].config["trainer"]
    assert trainer["max_steps"] == 7 and trainer["max_epochs"] == -1


@pytest.mark.parametrize("spec, message", [
    ({"methods": {"ew": "rooms/mtl_eww"}}, "did you mean 'rooms/mtl_ew'"),
    ({"methods": {"kd": "rooms/kd"}}, "needs teachers"),
    ({"methods": KD_METHODS, "teachers": {"semseg": "single_semseg", "depth": "single_dpth"}}, "'single_depth'"),
    ({"methods": KD_METHODS, "teachers": {"semseg": "single_semseg"}}, "no teacher for task"),
    ({"methods": {"ew": "rooms/mtl_ew"}, "overrides": ["trainer.max_epochs=3"]}, "budget"),
    ({"methods": {"ew": "rooms/mtl_ew"}, "budget": {"epoch": 3}}, "budget must be"),
    ({"methods": {"ew": "rooms/mtl_ew"}, "seed": [1]}, "did you mean 'seeds'"),
    ({"methods": {"ew": {"recipe": "rooms/mtl_ew", "teachers": "x"}}}, "distils nothing|no frozen"),
    ({"methods": {"a": {"recipe": "rooms/kd", "teachers": "b"}, "b": {"recipe": "rooms/kd", "teachers": "a"}}},
     "cycle"),
    ({"methods": {"ew": "rooms/mtl_ew"}, "seeds": [0, 0]}, "distinct"),
])
def test_bad_studies_are_refused_before_training(tmp_path, spec, message):
    with pytest.raises(MtkdError, match=message):
        load_study(write_study(tmp_path, **spec))


def test_killed_study_resumes_and_reuses_finished_runs(tmp_path, monkeypatch):
    path = write_study(tmp_path, teachers=TEACHERS, methods=KD_METHODS)
    real_train = engine_run.train
    trained = []

    def killed_on_second(cfg):  # as if killed after the run's last checkpoint, before its results
        res = real_train(cfg)
        trained.append(cfg.name)
        if len(trained) == 2:
            (tmp_path / "study" / cfg.name / "results.json").unlink()
            raise KeyboardInterrupt
        return res

    monkeypatch.setattr(engine_run, "train", killed_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_study(load_study(path))
    assert trained == ["single_semseg/seed0", "single_depth/seed0"]
    index = json.loads((tmp_path / "study" / "study.json").read_text())
    assert [r["status"] for r in index["runs"]] == ["done", "pending", "pending"]

    monkeypatch.setattr(engine_run, "train", real_train)
    lines = []
    records = run_study(load_study(path), log=lines.append)
    assert [r["status"] for r in records] == ["done"] * 3
    assert {"[1/3] single_semseg seed 0: finished earlier, reused", "[2/3] single_depth seed 0: resuming",
            "[3/3] kd seed 0: training"} <= set(lines)
    resumed = json.loads((tmp_path / "study" / "single_depth" / "seed0" / "results.json").read_text())
    assert resumed["epochs"] == 1  # continued from its checkpoint, not trained again
    assert json.loads((tmp_path / "study" / "kd" / "seed0" / "results.json").read_text())["config"]["distill"][
        "teachers"]["depth"] == str(tmp_path / "study" / "single_depth" / "seed0")

    lines.clear()
    run_study(load_study(path), log=lines.append)
    assert all("reused" in line for line in lines)


def test_changed_config_is_refused_not_overwritten(tmp_path):
    path = write_study(tmp_path, methods={"single_depth": "rooms/single_depth"})
    run_study(load_study(path), log=lambda _: None)
    before = (tmp_path / "study" / "single_depth" / "seed0" / "results.json").read_text()
    spec = yaml.safe_load(path.read_text())
    spec["overrides"].append("optim.lr=0.01")
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(MtkdError, match=r"different config \(optim.lr: 0.001 -> 0.01\)"):
        run_study(load_study(path))
    assert (tmp_path / "study" / "single_depth" / "seed0" / "results.json").read_text() == before


def test_failed_teacher_skips_its_students(tmp_path, monkeypatch):
    path = write_study(tmp_path, teachers=TEACHERS, methods=KD_METHODS)

    def diverges(cfg):
        raise MtkdError("step 3: loss is NaN")

    monkeypatch.setattr(engine_run, "train", diverges)
    records = run_study(load_study(path), log=lambda _: None)
    assert [r["status"] for r in records] == ["failed", "failed", "skipped"]
    assert "single_semseg" in records[2]["error"]


def test_shipped_studies_load(tmp_path):
    from mtkd.demo import STUDIES

    for file in sorted(STUDIES.glob("*.yaml")):
        if (yaml.safe_load(file.read_text()).get("overrides") or {}).get("data.root"):  # a protocol study:
            with pytest.raises(MtkdError, match="data.root .* is not a folder"):  # all checked up to the user's data
                load_study(file, out=tmp_path / file.stem)
            continue
        assert load_study(file, out=tmp_path / file.stem).plan()


def test_demo_method_selection_adds_baselines_and_teachers(tmp_path):
    from mtkd.demo import STUDIES, select_methods

    study = load_study(STUDIES / "rooms_full.yaml", out=tmp_path)
    select_methods(study, ["kdam", "uw"])
    assert list(study.methods) == ["single_semseg", "single_depth", "single_normal", "ew", "uw", "teacher_mtl_small",
                                   "kdam"]
    with pytest.raises(MtkdError, match="did you mean 'pcgrad'"):
        select_methods(load_study(STUDIES / "rooms_full.yaml", out=tmp_path), ["pcgard"])


def test_at_references_name_same_seed_runs_and_order_the_plan(tmp_path):
    refs = {"semseg": "@single_semseg", "depth": "@single_depth", "normal": "@single_normal"}
    methods = {"okd": {"recipe": "rooms/okd_mtl_pretrained_afd",
                       "overrides": {"distill.options.stl_checkpoints": refs}},
               "single_semseg": "rooms/single_semseg", "single_depth": "rooms/single_depth",
               "single_normal": "rooms/single_normal"}
    plan = load_study(write_study(tmp_path, seeds=[3], methods=methods)).plan()
    assert [r.method for r in plan] == ["single_semseg", "single_depth", "single_normal", "okd"]
    assert plan[-1].config["distill"]["options"]["stl_checkpoints"] == {
        t: str(tmp_path / "study" / m[1:] / "seed3") for t, m in refs.items()}
    methods["okd"]["overrides"]["distill.options.stl_checkpoints"]["depth"] = "@single_dpth"
    with pytest.raises(MtkdError, match="did you mean 'single_depth'"):
        load_study(write_study(tmp_path, methods=methods))
