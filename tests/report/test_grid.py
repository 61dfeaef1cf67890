"""The report's prediction grid: one PNG and PDF per task, methods without a task skipped, foreign data refused."""

import copy

import pytest
import torch
from PIL import Image

from mtkd.config import load_config
from mtkd.checkpoints import load_checkpoint
from mtkd.engine.run import train
from mtkd.errors import MtkdError
from mtkd.report.grid import prediction_grid
from mtkd.testing import tiny_run_overrides

TASKS = ("semseg", "depth", "normal", "edge")


def derived_run(folder, ckpt, edit):
    """A run folder whose best.ckpt is ``ckpt`` changed by ``edit(checkpoint)`` (cheaper than training another)."""
    raw = copy.deepcopy(ckpt)
    edit(raw)
    (folder / "checkpoints").mkdir(parents=True)
    torch.save(raw, folder / "checkpoints" / "best.ckpt")
    return folder


def only_semseg(raw):
    """The same student with its semseg head alone: a single-task run."""
    raw["hyper_parameters"]["task_channels"] = {"semseg": raw["hyper_parameters"]["task_channels"]["semseg"]}
    raw["hyper_parameters"]["config"]["data"]["tasks"] = ["semseg"]
    raw["state_dict"] = {k: v for k, v in raw["state_dict"].items()
                         if not k.startswith("model.heads.") or k.startswith("model.heads.semseg.")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{label: run folder}: a four-task run, a semseg-only run and a run on other data (its root moved)."""
    tmp = tmp_path_factory.mktemp("grid")
    train(load_config(None, tiny_run_overrides(tmp, "name=mtl", f"data.tasks=[{','.join(TASKS)}]",
                                               n_train=8, n_test=3)))
    mtl = tmp / "runs" / "mtl"
    raw = load_checkpoint(mtl / "checkpoints" / "best.ckpt")

    def elsewhere(r):
        r["hyper_parameters"]["config"]["data"]["root"] = str(tmp / "elsewhere")

    return {"MTL (equal weights)": mtl, "semseg only": derived_run(tmp / "single", raw, only_semseg),
            "other data": derived_run(tmp / "other", raw, elsewhere)}


def test_one_png_and_pdf_per_task(runs, tmp_path, capsys):
    paths = prediction_grid(runs, tmp_path, n_images=2)
    assert sorted(p.name for p in paths) == sorted(f"predictions_{t}.{s}" for t in TASKS for s in ("png", "pdf"))
    assert all(p.stat().st_size > 1000 for p in paths) and not list(tmp_path.glob("*.tmp"))
    assert (tmp_path / "predictions_semseg.pdf").read_bytes().startswith(b"%PDF")
    semseg, edge = (Image.open(tmp_path / f"predictions_{t}.png") for t in ("semseg", "edge"))
    assert semseg.size[0] > edge.size[0]  # the semseg-only method has a column there, not in the edge figure
    err = capsys.readouterr().err
    assert "skipped other data" in err and "elsewhere" in err


def test_test_split_and_more_images_than_it_holds(runs, tmp_path):
    two = prediction_grid(runs, tmp_path / "a", n_images=2, split="test")
    all_of_them = prediction_grid(runs, tmp_path / "b", n_images=50, split="test")  # the test split holds 3
    height = {p.parent.name: Image.open(p).size[1] for p in two + all_of_them if p.name == "predictions_depth.png"}
    assert height["b"] > height["a"]


def test_bad_arguments_are_refused(runs, tmp_path):
    with pytest.raises(MtkdError, match="split 'train'"):
        prediction_grid(runs, tmp_path, split="train")
    with pytest.raises(MtkdError, match="no run with a readable checkpoint"):
        prediction_grid({"empty": tmp_path}, tmp_path)


def test_depth_predictions_at_or_below_zero_are_not_painted_invalid():
    """Only a label can be invalid (black); a prediction <= 0 is the colour scale's low end."""
    import numpy as np

    from mtkd.report.grid import task_figure

    truth = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])  # one invalid label pixel, valid range 1..3
    pred = np.array([[-0.5, 0.0], [2.0, 3.0]])
    fig = task_figure("depth", [{"image": torch.zeros(3, 2, 2), "depth": truth, "index": 0}], {"m": [pred]}, None,
                      None)
    label, shown = (np.asarray(ax.get_images()[0].get_array()) for ax in fig.axes[1:3])
    assert (label[0, 0] == 0).all()  # the invalid label pixel: black
    assert not (shown[0, 0] == 0).all() and (shown[0, 0] == shown[0, 1]).all()  # -0.5 and 0: the low end
