"""Task losses against NumPy re-derivations; masks; all-invalid batches."""

import numpy as np
import pytest
import torch
from torchmetrics import Metric

from mtkd.errors import MtkdError
from mtkd.tasks import METRIC_DIRECTIONS, TASKS, get_task


def test_semseg_loss_matches_numpy_over_labelled_pixels():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 4, 5, 6, generator=g)
    target = torch.randint(-1, 4, (2, 5, 6), generator=g)
    p, t = pred.numpy().astype(np.float64), target.numpy()
    logp = p - np.log(np.exp(p).sum(1, keepdims=True))
    vals = [-logp[b, t[b, i, j], i, j] for b in range(2) for i in range(5) for j in range(6) if t[b, i, j] >= 0]
    assert get_task("semseg").loss(pred, target).item() == pytest.approx(np.mean(vals), rel=1e-5)


def test_depth_loss_skips_invalid_pixels():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = torch.tensor([[[[2.0, 0.0], [1.0, float("nan")]]]])
    assert get_task("depth").loss(pred, target).item() == pytest.approx((1.0 + 2.0) / 2)


def test_normal_loss_normalises_prediction_and_skips_zero_targets():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(1, 3, 4, 4, generator=g) * 3
    target = torch.nn.functional.normalize(torch.randn(1, 3, 4, 4, generator=g), dim=1)
    target[:, :, 0] = 0
    p = pred.numpy() / np.linalg.norm(pred.numpy(), axis=1, keepdims=True)
    cos = (p * target.numpy()).sum(1)[:, 1:]
    assert get_task("normal").loss(pred, target).item() == pytest.approx(np.mean(1 - cos), rel=1e-5)


def test_edge_loss_weights_positives():
    pred = torch.tensor([[[[0.3, -0.2, 1.0]]]])
    target = torch.tensor([[[[1.0, 0.0, -1.0]]]])
    sig = 1 / (1 + np.exp(-np.array([0.3, -0.2])))
    expected = (-0.95 * np.log(sig[0]) - 0.05 * np.log(1 - sig[1])) / 2
    assert get_task("edge").loss(pred, target).item() == pytest.approx(expected, rel=1e-5)
    heavier = get_task("edge", edge_pos_weight=0.5).loss(pred, target).item()
    assert heavier != pytest.approx(expected)


@pytest.mark.parametrize("task,target", [
    ("semseg", torch.full((2, 3, 3), -1)), ("depth", torch.zeros(2, 1, 3, 3)),
    ("normal", torch.zeros(2, 3, 3, 3)), ("edge", torch.full((2, 1, 3, 3), -1.0)),
])
def test_unlabelled_batch_gives_zero_loss_that_backpropagates(task, target):
    channels = {"semseg": 4, "depth": 1, "normal": 3, "edge": 1}[task]
    pred = torch.randn(2, channels, 3, 3, requires_grad=True)
    loss = get_task(task).loss(pred, target)
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None and torch.all(pred.grad == 0)


def test_unknown_task_suggests_closest():
    with pytest.raises(MtkdError, match="semseg"):
        get_task("segsem")


def test_saliency_loss_and_parts_follow_their_masks():
    pred = torch.tensor([[[[0.5, -1.0, 2.0]]]])
    target = torch.tensor([[[[0.8, 0.0, -1.0]]]])
    p = 1 / (1 + np.exp(-np.array([0.5, -1.0])))
    expected = np.mean([-(0.8 * np.log(p[0]) + 0.2 * np.log(1 - p[0])), -np.log(1 - p[1])])
    assert get_task("sal").loss(pred, target).item() == pytest.approx(expected, rel=1e-5)
    metric = get_task("sal").metrics(1)
    metric.update(torch.full((1, 1, 2, 2), 5.0), torch.ones(1, 1, 2, 2))  # logits: sigmoid applied inside
    assert metric.compute()["maxF"] == pytest.approx(100.0)
    assert get_task("parts").metrics(7).num_classes == 7


def test_deep_supervision_folds_aux_terms_into_the_task_loss():
    """L(pred) + w·Σ L(up(aux)): an aux equal to the final prediction adds w·L; a coarse aux is upsampled to the
    target and receives gradient; no aux (or w = 0) is the plain loss."""
    import torch.nn.functional as F

    from mtkd.tasks import TASKS, supervised_loss

    torch.manual_seed(0)
    spec = TASKS["semseg"]
    pred = torch.randn(2, 5, 8, 8)
    target = torch.randint(-1, 5, (2, 8, 8))
    plain = spec.loss(pred, target)
    assert torch.equal(supervised_loss(spec, pred, target), plain)
    assert torch.allclose(supervised_loss(spec, pred, target, [pred.clone()], aux_weight=0.4), 1.4 * plain)
    coarse = torch.randn(2, 5, 4, 4, requires_grad=True)
    assert torch.equal(supervised_loss(spec, pred, target, [coarse], aux_weight=0.0), plain)
    total = supervised_loss(spec, pred, target, [coarse], aux_weight=1.0)
    # the coarse term by hand: bilinear upsampling of a constant map is that constant
    const = torch.zeros(2, 5, 4, 4)
    const[:, 2] = 3.0
    by_hand = F.cross_entropy(const[:, :, :1, :1].expand(2, 5, 8, 8), target.clamp(min=0), reduction="none")
    assert torch.allclose(supervised_loss(spec, pred, target, [const]) - plain,
                          by_hand[target >= 0].mean(), atol=1e-6)
    total.backward()
    assert coarse.grad is not None and coarse.grad.abs().sum() > 0


# ---------------------------------------------------------------- task facts have one owner (mtkd.tasks)
def _weighted_bce(logits, y, pos_weight):
    x = logits.astype(np.float64)
    w = np.where(y > 0.5, pos_weight, 1 - pos_weight)
    return np.mean(w * (np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))))


def test_task_kinds_and_the_files_that_read_them():
    from mtkd.distill.losses.cauchy_schwarz import SEGMENTATION_TASKS
    from mtkd.tasks import TASKS
    import mtkd.weighting as W

    kinds = {name: spec.kind for name, spec in TASKS.items()}
    assert kinds == {"semseg": "classes", "parts": "classes", "edge": "binary", "sal": "binary",
                     "depth": "regression", "normal": "regression"}
    assert SEGMENTATION_TASKS == {"semseg", "parts"} and SEGMENTATION_TASKS <= set(TASKS)  # no "human_parts"
    # UW: exp(−s)L for every cross-entropy task (semseg, parts, edge, sal), ½exp(−s)L for regression
    tasks = ["semseg", "parts", "sal", "edge", "depth", "normal"]
    w = W.get("uw", tasks=tasks).backward({t: torch.tensor(1.0, requires_grad=True) for t in tasks})
    assert w == {"semseg": 1.0, "parts": 1.0, "sal": 1.0, "edge": 1.0, "depth": 0.5, "normal": 0.5}


def test_edge_pos_weight_reaches_every_network_a_method_trains():
    """loss.edge_pos_weight = 0.7 scores edges in OKD's single-task nets and JointDistill's connector too."""
    from mtkd.distill import build_distiller

    g = torch.Generator().manual_seed(3)
    pred = torch.randn(2, 1, 6, 7, generator=g)
    target = (torch.rand(2, 1, 6, 7, generator=g) > 0.8).float()
    want = _weighted_bce(pred.numpy(), target.numpy(), 0.7)
    channels = {"semseg": 4, "edge": 1}
    taps = {"stage1": (8, 2), "shared": (16, 4)}
    okd = build_distiller("okd", list(channels), taps, {}, {"afd": False, "otw": False},
                          model_config={"backbone": "tiny", "decoder_channels": 8}, task_channels=channels,
                          edge_pos_weight=0.7)
    jd = build_distiller("jointdistill", list(channels), taps, {t: taps for t in channels}, {"trajectory_weight": 0},
                         task_channels=channels, edge_pos_weight=0.7)
    for d in (okd, jd):
        assert d.specs["edge"].loss(pred, target).item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_declares_every_fact(name):
    """Adding a task to ``TASKS`` fails here until each fact the components derive from is declared."""
    from mtkd.visualize import colorize, to_prediction

    spec = TASKS[name]
    assert spec.name == name and spec.kind in ("classes", "binary", "regression")
    # channels: fixed for binary / regression tasks, from the data (the class count) for class tasks
    assert (spec.channels is None) == (spec.kind == "classes")
    assert spec.kind != "binary" or spec.channels == 1
    c = spec.channels or 4
    # loss: a scalar on a random prediction and a valid target of the task's layout
    pred = torch.randn(2, c, 5, 6, requires_grad=True)
    target = (torch.randint(0, c, (2, 5, 6)) if spec.kind == "classes" else
              torch.rand(2, c, 5, 6) + (spec.kind == "regression") * 0.5)
    loss = spec.loss(pred, target)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    # metrics, each with a declared direction; the monitors among them
    assert spec.metric_classes and isinstance(spec.metrics(c), Metric)
    directions = spec.directions
    assert directions and all(isinstance(v, bool) for v in directions.values())
    assert spec.monitor in directions and (spec.test_monitor or spec.monitor) in directions
    assert METRIC_DIRECTIONS[name] == directions
    # colouriser and prediction rule
    assert spec.picture in ("classes", "depth", "normal", "gray")
    array = to_prediction(name, pred[0].detach())
    picture = colorize(name, array, num_classes=c if spec.kind == "classes" else None)
    assert picture.dtype == np.uint8 and picture.shape == (5, 6, 3)
    # flips: the negated channels exist
    assert all(0 <= k < c for k in spec.flip_negates)


def test_metric_directions_are_derived_from_the_metric_classes():
    from mtkd.metrics import METRIC_DIRECTIONS as public

    assert public is METRIC_DIRECTIONS
    assert list(METRIC_DIRECTIONS["edge"]) == ["odsF", "oisF", "F@0.5"]  # the test split's benchmark first
