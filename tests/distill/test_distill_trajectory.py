import io

import numpy as np
import pytest
import torch

from distill_testutil import maps
from mtkd.distill.losses import TrajectoryBuffer, attention_map, topk_points, trajectory_loss
from mtkd.errors import MtkdError


def test_attention_map_golden():
    f = maps((2, 3, 4, 5), 90)
    att = attention_map(f)
    fn = f.double().numpy()
    for i in range(2):
        a = np.zeros((4, 5))
        for y in range(4):
            for x in range(5):
                a[y, x] = sum(fn[i, c, y, x] ** 2 for c in range(3)) / 3
        a = a / np.sqrt((a**2).sum())
        assert att[i].numpy() == pytest.approx(a, rel=1e-5)
    assert att.dtype == torch.float32
    assert attention_map(f, size=(8, 10)).shape == (2, 8, 10)
    assert attention_map(f.bfloat16()).dtype == torch.float32


def test_topk_points():
    att = attention_map(maps((2, 3, 4, 5), 91))
    idx = topk_points(att, k=4)
    for i in range(2):
        order = np.argsort(-att[i].numpy().ravel(), kind="stable")[:4]
        assert idx[i].tolist() == order.tolist()
    with pytest.raises(MtkdError):
        topk_points(att, k=21)


def frames(n, seed):
    return [attention_map(maps((3, 2, 4, 4), seed + j)) for j in range(n)]


def ref_loss(student, recorded_frames, k):
    """recorded_frames: list of B×H×W connector maps that are still in the buffer."""
    errs = []
    for fr in recorded_frames:
        for i in range(student.shape[0]):
            flat = fr[i].numpy().ravel()
            top = np.argsort(-flat, kind="stable")[:k]
            for p in top:
                errs.append(abs(student[i].detach().numpy().ravel()[p] - flat[p]))
    return float(np.mean(errs))


def test_buffer_ring_keeps_last_t_and_loss_golden():
    buf = TrajectoryBuffer(["semseg", "depth"], num_slots=3, size=(4, 4), k=3, t=5)
    fr = frames(7, 92)
    for f in fr:
        buf.record("depth", f)
    assert buf.length[1].tolist() == [5, 5, 5] and buf.length[0].tolist() == [0, 0, 0]
    student = attention_map(maps((3, 2, 4, 4), 99)).requires_grad_(True)
    loss = trajectory_loss(student, buf, "depth")
    assert loss.item() == pytest.approx(ref_loss(student, fr[2:], 3), rel=1e-5)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    # nothing recorded for semseg yet: zero, still differentiable
    z = trajectory_loss(student, buf, "semseg")
    assert z.item() == 0.0
    z.backward()


def test_buffer_partial_and_slots():
    buf = TrajectoryBuffer(["semseg"], num_slots=4, size=(4, 4), k=2, t=3)
    fr = frames(2, 93)
    buf.record("semseg", fr[0], slots=[0, 2, 3])
    buf.record("semseg", fr[1][:2], slots=[2, 3])
    assert buf.length[0].tolist() == [1, 0, 2, 2]
    student = attention_map(maps((2, 2, 4, 4), 94))
    got = trajectory_loss(student, buf, "semseg", slots=[2, 3])
    # slot 2 saw fr[0][1] then fr[1][0]; slot 3 saw fr[0][2] then fr[1][1]
    errs = []
    for i, hist in enumerate([[fr[0][1], fr[1][0]], [fr[0][2], fr[1][1]]]):
        for h in hist:
            flat = h.numpy().ravel()
            for p in np.argsort(-flat, kind="stable")[:2]:
                errs.append(abs(student[i].numpy().ravel()[p] - flat[p]))
    assert got.item() == pytest.approx(float(np.mean(errs)), rel=1e-5)
    with pytest.raises(MtkdError, match="duplicate"):
        buf.record("semseg", fr[0][:2], slots=[1, 1])
    with pytest.raises(MtkdError, match="slots"):
        buf.record("semseg", fr[0])  # 3 maps, 4 slots, no slots=
    with pytest.raises(MtkdError, match="did you mean"):
        buf.record("semsegg", fr[0], slots=[0, 1, 2])


def test_buffer_state_dict_round_trip_continues_identically():
    a = TrajectoryBuffer(["semseg", "depth"], num_slots=3, size=(4, 4), k=3, t=4)
    fr = frames(9, 95)
    for f in fr[:3]:
        a.record("semseg", f)
        a.record("depth", f.flip(-1))
    blob = io.BytesIO()
    torch.save(a.state_dict(), blob)
    b = TrajectoryBuffer(["semseg", "depth"], num_slots=3, size=(4, 4), k=3, t=4)
    b.load_state_dict(torch.load(io.BytesIO(blob.getvalue())))
    assert set(a.state_dict()) == {"indices", "values", "length", "head"}
    student = attention_map(maps((3, 2, 4, 4), 96))
    for f in fr[3:]:  # past the wrap-around of the ring
        for buf in (a, b):
            buf.record("semseg", f)
            buf.record("depth", f.flip(-1))
        for task in ("semseg", "depth"):
            assert trajectory_loss(student, a, task).item() == trajectory_loss(student, b, task).item()
    for key, val in a.state_dict().items():
        assert torch.equal(val, b.state_dict()[key])
