"""End-to-end smoke: train on a tiny rooms render, results and checkpoints, refuse/resume, eval, CLI errors."""

import json

import pytest
import torch

from mtkd.cli import main
from mtkd.config import load_config
from mtkd.engine.evaluate import evaluate
from mtkd.engine.run import train
from mtkd.errors import MtkdError
from mtkd.testing import tiny_run_overrides

pytestmark = pytest.mark.slow


def tiny(tmp_path, *extra):
    return tiny_run_overrides(tmp_path, *extra, n_train=20, n_test=6, epochs=2)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    cfg = load_config(None, tiny(tmp, "name=mtl", "data.tasks=[semseg,depth,normal,edge]"))
    return tmp, train(cfg)


def test_run_writes_results_and_checkpoints(finished):
    tmp, res = finished
    run = tmp / "runs" / "mtl"
    on_disk = json.loads((run / "results.json").read_text())
    assert on_disk["test"] == res["test"]
    assert set(res["test"]) == {"semseg", "depth", "normal", "edge"}
    assert 0 <= res["test"]["semseg"]["mIoU"] <= 100 and res["test"]["depth"]["abs_err"] > 0
    assert (run / "checkpoints" / "best.ckpt").exists() and (run / "checkpoints" / "last.ckpt").exists()
    assert (run / "config.yaml").exists() and res["parameters"] > 0 and res["steps"] == 2 * 4
    assert not list(run.rglob("*.tmp"))
    from mtkd.checkpoints import load_checkpoint

    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 1  # the latest epoch, best or not


def test_existing_run_is_refused(finished):
    tmp, _ = finished
    with pytest.raises(MtkdError, match="already"):
        train(load_config(None, tiny(tmp, "name=mtl", "data.tasks=[semseg,depth,normal,edge]")))


def test_eval_reproduces_test_metrics(finished):
    _, res = finished
    metrics = evaluate(res["best_checkpoint"])
    assert metrics["semseg"]["mIoU"] == pytest.approx(res["test"]["semseg"]["mIoU"], abs=1e-4)


def test_killed_run_resumes_from_last_checkpoint(tmp_path):
    first = train(load_config(None, tiny(tmp_path, "name=r", "data.tasks=[depth]", "trainer.max_epochs=1")))
    (tmp_path / "runs" / "r" / "results.json").unlink()  # as if killed after the epoch's checkpoint
    resumed = train(load_config(None, tiny(tmp_path, "name=r", "data.tasks=[depth]", "trainer.max_epochs=2",
                                          "resume=true")))
    assert first["steps"] == 4 and resumed["steps"] == 8


def test_resumed_run_reaches_the_uninterrupted_weights(tmp_path):
    """Killed after epoch 1 and resumed: the same data order, augmentation and weights as an uninterrupted run."""
    common = ("data.tasks=[semseg,depth]", "optim.scheduler=none", "weighting.name=rlw")  # RLW draws from torch's RNG
    whole = train(load_config(None, tiny(tmp_path, "name=whole", *common)))
    train(load_config(None, tiny(tmp_path, "name=cut", "trainer.max_epochs=1", *common)))
    (tmp_path / "runs" / "cut" / "results.json").unlink()
    train(load_config(None, tiny(tmp_path, "name=cut", "resume=true", *common)))
    from mtkd.checkpoints import load_checkpoint

    a = load_checkpoint(tmp_path / "runs" / "whole" / "checkpoints" / "last.ckpt")["state_dict"]
    b = load_checkpoint(tmp_path / "runs" / "cut" / "checkpoints" / "last.ckpt")["state_dict"]
    assert whole["steps"] == 8 and a.keys() == b.keys()
    tensors = [k for k in a if isinstance(a[k], torch.Tensor)]
    assert tensors and all(torch.equal(a[k], b[k]) for k in tensors)


def test_checkpoint_of_another_kind_is_refused(tmp_path):
    bogus = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, bogus)
    with pytest.raises(MtkdError, match="not an mtkd"):
        evaluate(str(bogus))
    with pytest.raises(MtkdError, match="does not exist"):
        evaluate(str(tmp_path / "missing.ckpt"))


def test_cli_prints_one_line_for_user_errors(capsys):
    assert main(["train", "nope.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtkd: error:") and err.count("\n") == 1
    assert main(["train", "configs/rooms/mtl_ew.yaml", "weighting.name=pcgard"]) == 2
    assert "pcgrad" in capsys.readouterr().err


@pytest.mark.parametrize("arch,method", [("cross_stitch", "ew"), ("mtan", "pcgrad"), ("shared", "mgda")])
def test_architectures_and_gradient_methods_train(tmp_path, arch, method):
    res = train(load_config(None, tiny(tmp_path, "name=a", "data.tasks=[semseg,depth]", f"model.arch={arch}",
                                       f"weighting.name={method}", "trainer.max_epochs=1")))
    assert res["steps"] == 4 and res["config"]["model"]["arch"] == arch
    assert evaluate(res["best_checkpoint"])["depth"]["abs_err"] == pytest.approx(res["test"]["depth"]["abs_err"],
                                                                                 rel=1e-5)


def test_single_task_run_refuses_a_multi_task_weighting(tmp_path):
    with pytest.raises(MtkdError, match="balances several tasks"):
        train(load_config(None, tiny(tmp_path, "data.tasks=[depth]", "weighting.name=uw")))
    assert not (tmp_path / "runs").exists()
