"""JointDistill (seed 001): connector, feedback teacher weights (callback), knowledge trajectories."""

import csv
from types import SimpleNamespace

import pytest
import torch

from mtkd.config import load_config
from mtkd.distill import build_distiller
from mtkd.distill.feedback import FeedbackWeights
from mtkd.distill.losses import kd_loss, prediction_loss
from mtkd.engine.checkpoint_io import load_checkpoint
from mtkd.engine.run import train
from mtkd.errors import MtkdError
from mtkd.models import Output
from mtkd.testing import tiny_run_overrides

CH = {"semseg": 8, "depth": 1}
TAPS = {"shared": (16, 4), "head.semseg": (16, 4), "head.depth": (16, 4)}


def tiny(tmp, *extra):
    return tiny_run_overrides(tmp, *extra, n_train=12)


def make(**options):
    return build_distiller("jointdistill", list(CH), TAPS, {t: TAPS for t in CH}, options, task_channels=dict(CH))


def outs(seed, b=2, h=32, w=48):
    g = torch.Generator().manual_seed(seed)
    return Output({t: torch.randn(b, c, h, w, generator=g) for t, c in CH.items()},
                  {"shared": torch.randn(b, 16, h // 4, w // 4, generator=g)})


def fake_trainer(epoch, miou, abs_err):
    return SimpleNamespace(sanity_checking=False, current_epoch=epoch, logger=None, global_step=epoch,
                           callback_metrics={"val/semseg/mIoU": torch.tensor(miou),
                                             "val/depth/abs_err": torch.tensor(abs_err)})


def test_forward_connector_losses_and_weighted_kd():
    d = make(trajectory_weight=0.0, weights={"depth": 2.0})
    d.teacher_weights.copy_(torch.tensor([0.5, 1.5]))
    s, t = outs(0), outs(1)
    batch = {"image": torch.randn(2, 3, 32, 48), "semseg": torch.randint(0, 8, (2, 32, 48)),
             "depth": torch.rand(2, 1, 32, 48)}
    losses = d(s, {k: t for k in CH}, batch)
    assert set(losses) == {"connector/semseg", "connector/depth", "kd/semseg", "kd/depth"}
    conn, _ = d.connector_outputs({k: t for k in CH}, (32, 48))
    torch.testing.assert_close(losses["kd/semseg"], 0.5 * kd_loss(s.preds["semseg"], conn["semseg"]))
    torch.testing.assert_close(losses["kd/depth"], 2.0 * 1.5 * prediction_loss(s.preds["depth"], conn["depth"]))
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in d.connector.parameters())


def test_feedback_formula_golden_values():
    d = make(trajectory_weight=0.0, center=False, alpha=1.5)
    d.teacher_metric.copy_(torch.tensor([50.0, 0.5]))  # teacher mIoU 50 (↑), abs_err 0.5 (↓)
    score = d.update_weights({"semseg": 40.0, "depth": 0.6}, epoch=0)  # both 20 % behind
    torch.testing.assert_close(score, torch.tensor([0.2, 0.2]))
    torch.testing.assert_close(d.teacher_weights, torch.tensor([0.7, 0.7]))
    d2 = make(trajectory_weight=0.0)  # centred: the task further behind loses weight, the other gains it
    d2.teacher_metric.copy_(torch.tensor([50.0, 0.5]))
    d2.update_weights({"semseg": 40.0, "depth": 0.5}, epoch=0)
    torch.testing.assert_close(d2.teacher_weights, torch.tensor([1.0 - 1.5 * 0.1, 1.0 + 1.5 * 0.1]))


def test_weights_change_only_at_timeframe_boundaries_and_never_below_w_min():
    d = make(trajectory_weight=0.0, timeframe=2, center=False, alpha=0.2)
    d.teacher_metric.copy_(torch.tensor([50.0, 0.5]))
    cb = FeedbackWeights(d)
    module = SimpleNamespace(teachers=object())  # teacher metric already measured: the set is never run
    history = []
    for epoch in range(6):
        before = d.teacher_weights.clone()
        cb.on_validation_end(fake_trainer(epoch, 40.0, 0.6), module)
        cb.on_validation_end(fake_trainer(epoch, 40.0, 0.6), module)  # a second validation: no second update
        history.append(not torch.equal(before, d.teacher_weights))
    assert history == [False, True, False, True, False, True]
    torch.testing.assert_close(d.teacher_weights, torch.full((2,), 1.0 - 3 * 0.2 * 0.2))
    sanity = fake_trainer(7, 0.0, 9.0)
    sanity.sanity_checking = True
    cb.on_validation_end(sanity, module)
    assert int(d.last_update_epoch) == 5
    # a student far behind: w is clamped at w_min (no collapse to 0), never below it
    d = make(trajectory_weight=0.0, center=False, alpha=2.0, w_min=0.1)
    d.teacher_metric.copy_(torch.tensor([50.0, 0.5]))
    cb = FeedbackWeights(d)
    for epoch in range(4):
        cb.on_validation_end(fake_trainer(epoch, 1.0, 5.0), module)
        assert bool((d.teacher_weights >= 0.1).all()) and bool((d.teacher_weights <= d.w_max).all())
    torch.testing.assert_close(d.teacher_weights, torch.tensor([0.1, 0.1]))
    with pytest.raises(MtkdError, match="val/semseg/mIoU"):
        t = fake_trainer(7, 1.0, 1.0)
        t.callback_metrics.pop("val/semseg/mIoU")
        cb.on_validation_end(t, module)


def test_state_dict_round_trip_continues_exactly():
    torch.manual_seed(0)
    a = make(num_probes=2, grid=[8, 12])
    a.teacher_metric.copy_(torch.tensor([50.0, 0.5]))
    a.update_weights({"semseg": 30.0, "depth": 0.55}, epoch=0)
    a.probe_images = torch.randn(2, 3, 32, 48)
    teacher_set = lambda image: {k: outs(3, b=image.shape[0]) for k in CH}  # noqa: E731
    a.record_trajectories(teacher_set)
    b = make(num_probes=2, grid=[8, 12])
    b.load_state_dict(a.state_dict())
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    for d in (a, b):
        d.update_weights({"semseg": 45.0, "depth": 0.7}, epoch=1)
        d.record_trajectories(teacher_set)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert int(a.trajectories.length.min()) == 2


def test_bad_options_are_refused():
    for bad in ({"timeframe": 0}, {"alpha": -1}, {"w_min": 1.5, "w_max": 1.0}, {"weight_on": "head"},
                {"metrics": {"semseg": "acc"}}, {"tap": "nope"}):
        with pytest.raises(MtkdError):
            make(**bad)


@pytest.mark.slow
def test_two_epoch_run_with_the_feedback_callback(tmp_path):
    for t in CH:
        train(load_config(None, tiny(tmp_path, f"name=single_{t}", f"data.tasks=[{t}]")))
    teach = [f"distill.teachers.{t}={tmp_path / 'runs' / f'single_{t}'}" for t in CH]
    res = train(load_config(None, tiny(
        tmp_path, "name=jd", "data.tasks=[semseg,depth]", "data.val_fraction=0.15", "trainer.max_epochs=2",
        "distill.name=jointdistill", *teach, "distill.options.num_probes=2", "distill.options.grid=[8,12]",
        "distill.options.channels=16")))
    assert res["epochs"] == 2
    ckpt = load_checkpoint(tmp_path / "runs" / "jd" / "checkpoints" / "last.ckpt")
    state = ckpt["state_dict"]
    # the checkpoint of epoch e already holds the feedback update of epoch e (the callback runs before saving)
    assert int(state["distiller.last_update_epoch"]) == ckpt["epoch"]
    assert state["distiller.trajectories.length"].tolist() == [[ckpt["epoch"] + 1] * 2]
    assert not torch.equal(state["distiller.teacher_weights"], torch.ones(2))
    assert bool(torch.isfinite(state["distiller.teacher_metric"]).all())
    assert tuple(state["distiller.probe_images"].shape) == (2, 3, 32, 48)
    rows = list(csv.DictReader((tmp_path / "runs" / "jd" / "logs" / "version_0" / "metrics.csv").open()))
    weights = [(float(r["feedback/weight/semseg"]), float(r["feedback/weight/depth"]))
               for r in rows if r.get("feedback/weight/semseg")]
    assert len(weights) == 2 and weights[0] != weights[1]  # one update per epoch (timeframe 1)
    assert all(min(w) >= 0.1 for w in weights)
    for name in ("train/kd/kd/semseg", "train/kd/connector/depth", "train/kd/trajectory"):
        assert any(r.get(name) for r in rows), name
