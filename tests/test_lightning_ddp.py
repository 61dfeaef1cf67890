"""The engine under Lightning's own DDP (two CPU processes, gloo): gradient methods and distillation train."""

import pytest
import torch

from mtkd.config import load_config
from mtkd.engine.run import train

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("method", ["pcgrad", "mgda"])
def test_two_process_ddp_run(tmp_path, method):
    torch.multiprocessing.set_sharing_strategy("file_system")  # this sandbox cannot pass tensors as shm fds
    cfg = load_config(None, [
        f"out_dir={tmp_path / 'runs'}", f"data.root={tmp_path / 'rooms'}", "data.rooms.n_train=16",
        "data.rooms.n_test=4", "data.rooms.height=32", "data.rooms.width=48", "data.batch_size=4",
        "data.tasks=[semseg,depth]", f"weighting.name={method}", "trainer.max_epochs=1", "trainer.progress_bar=false",
        "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp_spawn", "model.decoder_channels=8",
        "name=ddp",
    ])
    res = train(cfg)
    # 14 training images (2 held out) split over 2 processes → 7 each, batch 4, last partial batch dropped → 1 step
    assert res["steps"] == 1 and set(res["test"]) == {"semseg", "depth"}
