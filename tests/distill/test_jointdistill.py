"""JointDistill (seed 001): connector, feedback teacher weights (callback), knowledge trajectories."""

import csv
import hashlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mtkd.config import load_config, to_dict
from mtkd.engine.module import MultiTaskModule
from mtkd.distill import build_distiller
from mtkd.distill.feedback import FeedbackWeights
from mtkd.distill.losses import kd_loss, prediction_loss
from mtkd.checkpoints import load_checkpoint
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
                           feedback={"semseg": miou, "depth": abs_err})


def callback(d):
    """The feedback callback with its measurement on the feedback split replaced by the fake trainer's values."""
    cb = FeedbackWeights(d)
    cb.measure = lambda trainer, module, teachers: {"student": dict(trainer.feedback)}
    return cb


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
    cb = callback(d)
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
    cb = callback(d)
    for epoch in range(4):
        cb.on_validation_end(fake_trainer(epoch, 1.0, 5.0), module)
        assert bool((d.teacher_weights >= 0.1).all()) and bool((d.teacher_weights <= d.w_max).all())
    torch.testing.assert_close(d.teacher_weights, torch.tensor([0.1, 0.1]))


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


def _image_hashes(dataset):
    return {hashlib.sha1(dataset[i]["image"].numpy().tobytes()).hexdigest() for i in range(len(dataset))}


@pytest.mark.slow
def test_two_epoch_run_with_the_feedback_callback(tmp_path):
    """End to end, recording every image that enters the training path (a student forward with grad enabled — the
    training batches and the trajectory probes — and the teachers' inputs inside training steps, whose outputs are
    the KD targets): all of them are training images; no selection, feedback or test image reaches a gradient, while
    the feedback images are evaluated (no grad) by the feedback."""
    from mtkd.data.datamodule import MultiTaskDataModule
    from mtkd.distill.teachers import TeacherSet
    from mtkd.engine.run import build_datamodule
    from mtkd.models import MultiTaskModel

    for t in CH:
        train(load_config(None, tiny(tmp_path, f"name=single_{t}", f"data.tasks=[{t}]")))
    teach = [f"distill.teachers.{t}={tmp_path / 'runs' / f'single_{t}'}" for t in CH]
    overrides = tiny(tmp_path, "name=jd", "data.tasks=[semseg,depth]", "data.feedback_fraction=0.25",
                     "data.augment=false", "trainer.max_epochs=2", "distill.name=jointdistill", *teach,
                     "distill.options.num_probes=2", "distill.options.grid=[8,12]", "distill.options.channels=16")
    seen = {"grad": set(), "no_grad": set()}

    def record(module, args):
        if isinstance(module, (MultiTaskModel, TeacherSet)):
            key = "grad" if torch.is_grad_enabled() else "no_grad"
            seen[key] |= {hashlib.sha1(x.detach().cpu().numpy().tobytes()).hexdigest() for x in args[0]}

    handle = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        res = train(load_config(None, overrides))
    finally:
        handle.remove()
    dm = build_datamodule(to_dict(load_config(None, overrides)))
    assert isinstance(dm, MultiTaskDataModule)
    dm.setup("fit")
    splits = {"train": dm.train_set, "selection": dm.val_set, "feedback": dm.feedback_set, "test": dm.test_set}
    hashes = {k: _image_hashes(v) for k, v in splits.items()}
    ids = [set(dm.train_indices), set(dm.val_indices), set(dm.feedback_indices)]
    assert all(not (a & b) for i, a in enumerate(ids) for b in ids[i + 1:]) and len(dm.feedback_indices) == 3
    assert seen["grad"] and seen["grad"] <= hashes["train"]
    for held_out in ("selection", "feedback", "test"):
        assert not (seen["grad"] & hashes[held_out]), held_out
    assert hashes["feedback"] <= seen["no_grad"]  # the feedback was measured on its own split
    assert res["epochs"] == 2
    ckpt = load_checkpoint(tmp_path / "runs" / "jd" / "checkpoints" / "last.ckpt")
    state = ckpt["state_dict"]
    # the checkpoint of epoch e already holds the feedback update of epoch e (the callback runs before saving)
    assert int(state["distiller.last_update_epoch"]) == ckpt["epoch"]
    assert state["distiller.trajectories.length"].tolist() == [[ckpt["epoch"] + 1] * 2]
    assert not torch.equal(state["distiller.teacher_weights"], torch.ones(2))
    assert bool(torch.isfinite(state["distiller.teacher_metric"]).all())
    probes = {hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in state["distiller.probe_images"]}
    assert len(probes) == 2 and probes <= hashes["train"]
    rows = list(csv.DictReader((tmp_path / "runs" / "jd" / "logs" / "version_0" / "metrics.csv").open()))
    weights = [(float(r["feedback/weight/semseg"]), float(r["feedback/weight/depth"]))
               for r in rows if r.get("feedback/weight/semseg")]
    assert len(weights) == 2 and weights[0] != weights[1]  # one update per epoch (timeframe 1)
    assert all(min(w) >= 0.1 for w in weights)
    for name in ("train/kd/kd/semseg", "train/kd/connector/depth", "train/kd/trajectory"):
        assert any(r.get(name) for r in rows), name
    # configurations that would let a held-out split steer training are refused before training
    for bad, match in ((["data.select_on=test"], "select_on=test"), (["data.feedback_fraction=0"], "feedback split")):
        cfg = load_config(None, [*overrides, "name=jd_bad", *bad])
        with pytest.raises(MtkdError, match=match):
            MultiTaskModule(to_dict(cfg), {"semseg": 8, "depth": 1})


def test_feedback_scores_each_task_with_its_own_class_count():
    """parts (7 classes) beside semseg (3): each metric has its task's channels (the semseg count would drop or
    crash on parts ids ≥ 3); the value is mIoU from a NumPy confusion matrix over the feedback batch."""
    channels = {"semseg": 3, "parts": 7}
    taps = {"shared": (16, 4)}
    d = build_distiller("jointdistill", list(channels), taps, {t: taps for t in channels}, {"trajectory_weight": 0},
                        task_channels=channels)
    g = torch.Generator().manual_seed(5)
    preds = {t: torch.randn(2, c, 6, 8, generator=g) for t, c in channels.items()}
    batch = {"image": torch.zeros(2, 3, 6, 8), **{t: torch.randint(-1, c, (2, 6, 8), generator=g)
                                                   for t, c in channels.items()}}

    class Student(torch.nn.Module):
        def forward(self, image):
            return Output(preds, {})

    trainer = SimpleNamespace(datamodule=SimpleNamespace(feedback_dataloader=lambda: [batch]))
    module = SimpleNamespace(model=Student(), device=torch.device("cpu"))
    got = FeedbackWeights(d).measure(trainer, module, teachers=False)["student"]
    for t, c in channels.items():
        p, y = preds[t].argmax(1).numpy().ravel(), batch[t].numpy().ravel()
        p, y = p[y >= 0], y[y >= 0]
        cm = np.zeros((c, c))
        np.add.at(cm, (y, p), 1)
        inter, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
        assert got[t] == pytest.approx(100 * np.mean(inter[union > 0] / union[union > 0]), rel=1e-5)


def test_leaky_data_sections_are_refused_before_anything_is_written(tmp_path):
    from mtkd.engine.run import check_names

    base = ["data.tasks=[semseg,depth]", "distill.name=jointdistill", "distill.teachers.semseg=x",
            "distill.teachers.depth=x"]
    for bad, match in ((["data.feedback_fraction=0.15", "data.select_on=test"], "select_on=test"),
                       ([], "feedback split")):
        with pytest.raises(MtkdError, match=match):
            check_names(to_dict(load_config(None, tiny(tmp_path, *base, *bad))))
    check_names(to_dict(load_config(None, tiny(tmp_path, *base, "data.feedback_fraction=0.15"))))
