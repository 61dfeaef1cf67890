"""Folder safety: nothing mtkd did not make is deleted or overwritten, nothing is written outside the named folder.

Each refusal goes through ``mtkd.cli.main`` in-process and asserts exit code 2, one stderr line naming the problem,
no traceback, and a byte-identical tree (every file of the test's sandbox, the cwd included, before and after).
"""

import json
import re
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

import mtkd.engine.run as engine_run
from mtkd.atomic import write_atomic, write_json
from mtkd.cli import main
from mtkd.config import load_config
from mtkd.engine.run import MANIFEST, train
from mtkd.study import STUDY_MANIFEST
from mtkd.testing import refused, snapshot, tiny_run_overrides


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """``tmp_path/cwd`` as the working folder (relative outputs land there), with a user file beside it."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (tmp_path / "precious.txt").write_text("user data")
    monkeypatch.chdir(cwd)
    return tmp_path


def tiny(root, *extra):
    return tiny_run_overrides(root, *extra, n_train=8, n_test=4)


# ---------------------------------------------------------------------------------------------- run names
@pytest.mark.parametrize("name, match", [
    ("../../x", "run name '../../x' must be folder names"),
    ("a/../../b", "must be folder names"),
    ("/tmp/mtkd-abs-run", "is an absolute path"),
    ("x/...", "must be folder names"),
    (".hidden", "must be folder names"),
    ("a//b", "must be folder names"),
    ("a\\\\b", "backslash"),
])
def test_run_names_that_leave_out_dir_are_refused(sandbox, capsys, name, match):
    refused(capsys, sandbox, ["train", "rooms/mtl_ew", *tiny(sandbox / "cwd"), f"name={name}"], match)


def test_out_dir_that_is_a_file_is_refused(sandbox, capsys):
    refused(capsys, sandbox, ["train", "rooms/mtl_ew", *tiny(sandbox, f"out_dir={sandbox / 'precious.txt'}")],
            "precious.txt.*(file|folder)")


@pytest.mark.parametrize("resume", ["true", "false"])
def test_a_user_folder_is_never_deleted_even_with_resume(sandbox, capsys, resume):
    """The data-loss bug: ``name=X resume=true`` on a folder without ``last.ckpt`` used to ``rmtree`` it."""
    mine = sandbox / "runs" / "thesis"
    (mine / "chapter").mkdir(parents=True)
    (mine / "chapter" / "draft.tex").write_text("weeks of work")
    refused(capsys, sandbox, ["train", "rooms/mtl_ew", *tiny(sandbox, "name=thesis", f"resume={resume}")],
            r"not an mtkd run folder \(no \.mtkd-run\.json\)")


def test_a_file_named_like_the_run_is_refused(sandbox, capsys):
    (sandbox / "runs").mkdir()
    (sandbox / "runs" / "r").write_text("not a folder")
    refused(capsys, sandbox, ["train", "rooms/mtl_ew", *tiny(sandbox, "name=r")], "is an existing file")


def fake_run(folder, *, last=False, results=False):
    """A run folder as mtkd leaves it (manifest, config), optionally with a last checkpoint or results."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / MANIFEST).write_text("{}")
    (folder / "config.yaml").write_text("name: r\n")
    if last:
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    if results:
        (folder / "results.json").write_text("{}")


def test_an_unfinished_run_needs_resume(sandbox, capsys):
    fake_run(sandbox / "runs" / "r", last=True)
    refused(capsys, sandbox, ["train", "rooms/mtl_ew", *tiny(sandbox, "name=r")], "pass resume=true")


@pytest.mark.parametrize("resume", ["true", "false"])
def test_a_finished_run_is_never_overwritten(sandbox, capsys, resume):
    fake_run(sandbox / "runs" / "r", last=True, results=True)
    refused(capsys, sandbox, ["train", "rooms/mtl_ew", *tiny(sandbox, "name=r", f"resume={resume}")],
            "already finished")


def test_env_interpolation_is_refused_before_anything_is_written(sandbox, capsys):
    recipe = sandbox / "cwd" / "env.yaml"
    recipe.write_text("model:\n  backbone_options: {token: '${oc.env:HOME}'}\n")
    refused(capsys, sandbox, ["train", str(recipe), *tiny(sandbox)],
            r"model.backbone_options.token: .*oc\.env.*environment")


def test_a_relative_data_root_is_stored_absolute(sandbox):
    cfg = load_config(None, ["data.root=rooms", "name=r"])
    assert cfg.data.root == str(sandbox / "cwd" / "rooms")


# ---------------------------------------------------------------------------------------------------- studies
def write_study(path, **spec):
    base = {"budget": {"epochs": 1}, "seeds": [0], "methods": {"ew": "rooms/mtl_ew"},
            "overrides": [o for o in tiny(path.parent) if not o.startswith(("trainer.max_epochs", "out_dir"))]}
    path.write_text(yaml.safe_dump({**base, **spec}, sort_keys=False))
    return path


@pytest.mark.parametrize("name, match", [
    ("../escaped", "name '../escaped' must be folder names.*inside runs"),
    ("/tmp/mtkd-abs-study", "is an absolute path"),
    ("a/../../b", "must be folder names"),
])
def test_study_names_without_out_stay_inside_runs(sandbox, capsys, name, match):
    study = write_study(sandbox / "cwd" / "s.yaml", name=name)
    refused(capsys, sandbox, ["study", str(study)], match)


@pytest.mark.parametrize("method", ["..", "../x", "a/b", ".m"])
def test_study_method_names_are_folder_names(sandbox, capsys, method):
    study = write_study(sandbox / "cwd" / "s.yaml", out=str(sandbox / "st"), methods={method: "rooms/mtl_ew"})
    refused(capsys, sandbox, ["study", str(study)], "method name .* names a folder")


def test_study_out_that_is_a_user_folder_is_refused(sandbox, capsys):
    (sandbox / "docs").mkdir()
    (sandbox / "docs" / "notes.md").write_text("mine")
    study = write_study(sandbox / "cwd" / "s.yaml")
    refused(capsys, sandbox, ["study", str(study), "--out", str(sandbox / "docs")],
            r"not an mtkd study folder \(no \.mtkd-study\.json\)")


def test_study_out_that_is_a_file_is_refused(sandbox, capsys):
    study = write_study(sandbox / "cwd" / "s.yaml")
    refused(capsys, sandbox, ["study", str(study), "--out", str(sandbox / "precious.txt")], "existing file")


@pytest.mark.parametrize("methods, match", [
    ({"t": "rooms/single_depth", "kd": {"recipe": "rooms/kd", "teachers": "t",
                                        "overrides": {"data.tasks": ["depth"], "distill.options.temprature": 2}}},
     "method 'kd': distillation method 'kd' has no option temprature"),
    ({"ew": {"recipe": "rooms/mtl_ew", "overrides": {"weighting.name": "dwaa"}}}, "method 'ew'.*did you mean 'dwa'"),
    ({"ew": {"recipe": "rooms/mtl_ew", "overrides": {"data.dataset": "folder", "data.root": "/nonexistent/nyu"}}},
     "method 'ew'.*nonexistent"),
])
def test_every_method_is_checked_before_the_first_run(sandbox, capsys, methods, match):
    """A typo in the last method fails before the first (a teacher) trains: no folder is made."""
    study = write_study(sandbox / "cwd" / "s.yaml", out=str(sandbox / "st"),
                        methods={"first": "rooms/single_semseg", **methods})
    refused(capsys, sandbox, ["study", str(study)], match)


def test_a_study_with_a_failed_method_exits_2_naming_it(sandbox, capsys, monkeypatch):
    """The other methods still run; the command fails, naming the failed and the skipped runs."""
    trained = []

    def fake_train(cfg):
        trained.append(str(cfg.name))
        if cfg.name.startswith("bad/"):
            raise engine_run.MtkdError("step 3: loss is NaN")
        return {}

    monkeypatch.setattr(engine_run, "train", fake_train)
    study = write_study(sandbox / "cwd" / "s.yaml", out=str(sandbox / "st"), methods={
        "bad": "rooms/single_depth", "good": "rooms/mtl_ew",
        "student": {"recipe": "rooms/kd", "teachers": "bad", "overrides": {"data.tasks": ["depth"]}}})
    code = main(["study", str(study), "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and trained == ["bad/seed0", "good/seed0"]
    assert re.search(r"2 of 3 run\(s\) did not finish: bad seed 0 failed \(step 3: loss is NaN\); student seed 0 "
                     r"skipped", err[0]), err[0]
    assert (sandbox / "st" / STUDY_MANIFEST).is_file() and not (sandbox / "st" / ".mtkd.lock").exists()


# -------------------------------------------------------------------------------------------------- atomic
@pytest.mark.parametrize("fault", [OSError(28, "No space left on device"), KeyboardInterrupt(), ValueError("x")])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_tmp(tmp_path, fault):
    path = tmp_path / "results.json"
    write_json(path, {"old": 1})

    def half_then_fail(f):
        f.write(b'{"new": ')
        raise fault

    with pytest.raises(type(fault)):
        write_atomic(path, half_then_fail)
    assert json.loads(path.read_text()) == {"old": 1} and [p.name for p in tmp_path.iterdir()] == ["results.json"]


# ---------------------------------------------------------------------- trained runs (predict, export, rerun)
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("folders")
    train(load_config(None, tiny(tmp, "name=m", "data.tasks=[semseg,depth]")))
    return tmp / "runs" / "m" / "checkpoints" / "best.ckpt"


@pytest.mark.slow
@pytest.mark.parametrize("image", ["...png", "..png"])
def test_predict_image_names_cannot_leave_out(ckpt, sandbox, capsys, image):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(sandbox / "cwd" / image, format="PNG")
    refused(capsys, sandbox, ["predict", str(ckpt), str(sandbox / "cwd" / image), "--out", str(sandbox / "o")],
            "its output folder '\\.\\.?' must be folder names")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "export"])
def test_out_naming_an_existing_file_is_refused(ckpt, sandbox, capsys, command):
    Image.new("RGB", (8, 8)).save(sandbox / "cwd" / "x.png")
    args = [str(sandbox / "cwd" / "x.png")] if command == "predict" else []
    refused(capsys, sandbox, [command, str(ckpt), *args, "--out", str(sandbox / "precious.txt")], "existing file")
    refused(capsys, sandbox, [command, str(ckpt), *args, "--out", str(sandbox / "precious.txt" / "sub")],
            "is a file, not a folder")


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["downloads", "home/checkpoints"])
def test_export_of_a_loose_checkpoint_writes_beside_it(ckpt, sandbox, capsys, folder):
    """Also from a user's own ``checkpoints/`` folder that is not in an mtkd run: never into its parent."""
    loose = sandbox / folder / "model.ckpt"
    loose.parent.mkdir(parents=True)
    shutil.copy(ckpt, loose)
    before = snapshot(sandbox)
    assert main(["export", str(loose)]) == 0
    new = set(snapshot(sandbox)) - set(before)
    assert new and all(p.startswith(f"{folder}/model-export") for p in new), new


@pytest.mark.slow
def test_a_run_that_failed_before_its_first_checkpoint_reruns_without_resume(sandbox, capsys):
    """The corrected command is accepted with the same name; nothing the failed attempt left is deleted."""
    run = sandbox / "runs" / "r"
    run.mkdir(parents=True)
    (run / MANIFEST).write_text("{}")
    (run / "config.yaml").write_text("optim: {lr: 1.0e+30}\n")
    (run / "logs" / "version_0").mkdir(parents=True)
    (run / "logs" / "version_0" / "metrics.csv").write_text("epoch\n")
    assert main(["train", "rooms/mtl_ew", *tiny(sandbox, "name=r", "data.tasks=[depth]")]) == 0
    assert (run / "results.json").is_file() and (run / "logs" / "version_0" / "metrics.csv").read_text() == "epoch\n"
    assert "lr: 0.001" in (run / "config.yaml").read_text() and not (run / ".mtkd.lock").exists()
    assert not list(sandbox.rglob("*.tmp"))


def test_ctrl_c_in_a_study_exits_130_saying_how_to_resume(sandbox, capsys, monkeypatch):
    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine_run, "train", interrupted)
    study = write_study(sandbox / "cwd" / "s.yaml", out=str(sandbox / "st"))
    assert main(["study", str(study)]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["mtkd: interrupted; rerun the same command to continue"]
    assert not (sandbox / "st" / ".mtkd.lock").exists()  # released: the rerun is not refused
