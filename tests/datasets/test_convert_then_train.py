"""A converted tiny release trains end to end: converter output → folder loader → engine → results."""

import pytest
from conftest import make_cityscapes, make_pascal

from mtkd.config import load_config
from mtkd.datasets.convert import convert
from mtkd.engine.run import train

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("release,maker,tasks", [
    ("pascal_context", make_pascal, "[semseg,parts,sal,normal,edge]"),
    ("cityscapes", make_cityscapes, "[semseg,depth]"),
])
def test_converted_release_trains(tmp_path, release, maker, tasks):
    maker(tmp_path / "raw")
    out = convert(release, tmp_path / "raw", tmp_path / "data", progress=False)
    folders = ["data.folders.semseg=label_19"] if release == "cityscapes" else []
    cfg = load_config(None, [
        "data.dataset=folder", f"data.root={out}", f"data.tasks={tasks}", "data.batch_size=2", "data.val_fraction=0.4",
        "trainer.max_epochs=1", "trainer.progress_bar=false", f"out_dir={tmp_path / 'runs'}", "name=r",
        "model.decoder_channels=8", *folders,
    ])
    res = train(cfg)
    assert set(res["test"]) == set(tasks.strip("[]").split(","))
