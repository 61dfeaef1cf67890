"""SemsegMetrics against a NumPy confusion matrix over unequal batches; absent classes; invalid labels; DDP merge."""

import numpy as np
import pytest
import torch

from mtkd.errors import MtkdError
from mtkd.metrics import SemsegMetrics
from mtkd.testing import merged_and_whole


def _np_miou_pacc(preds, targets, c):
    p = np.concatenate([x.reshape(-1) for x in preds])
    t = np.concatenate([x.reshape(-1) for x in targets])
    v = t != -1
    p, t = p[v], t[v]
    ious = []
    for k in range(c):
        inter = np.sum((p == k) & (t == k))
        union = np.sum((p == k) | (t == k))
        if union:
            ious.append(inter / union)
    return 100 * np.mean(ious), 100 * np.mean(p == t)


def _data(rng, sizes, c=5, h=6, w=7):
    logits = [rng.normal(size=(b, c, h, w)).astype(np.float32) for b in sizes]
    targets = []
    for lg in logits:
        t = rng.integers(0, c, size=(lg.shape[0], h, w))
        t[rng.random(t.shape) < 0.3] = -1
        # bias the first image towards correct predictions so images differ in quality
        t[0] = np.where(rng.random(t[0].shape) < 0.7, lg[0].argmax(0), t[0])
        targets.append(t)
    return logits, targets


def test_against_numpy_unequal_batches():
    rng = np.random.default_rng(0)
    logits, targets = _data(rng, [3, 1])
    m = SemsegMetrics(5)
    per_batch = []
    for lg, t in zip(logits, targets):
        m.update(torch.from_numpy(lg), torch.from_numpy(t))
        per_batch.append(_np_miou_pacc([lg.argmax(1)], [t], 5))
    out = m.compute()
    ref = _np_miou_pacc([lg.argmax(1) for lg in logits], targets, 5)
    assert out["mIoU"].item() == pytest.approx(ref[0], abs=1e-4)
    assert out["pAcc"].item() == pytest.approx(ref[1], abs=1e-4)
    # a per-batch average differs, so the test can tell pooling from averaging
    avg = np.mean(per_batch, axis=0)
    assert abs(avg[0] - ref[0]) > 0.1 and abs(avg[1] - ref[1]) > 0.1


def test_label_input_equals_logit_input():
    rng = np.random.default_rng(1)
    logits, targets = _data(rng, [2])
    a, b = SemsegMetrics(5), SemsegMetrics(5)
    a.update(torch.from_numpy(logits[0]), torch.from_numpy(targets[0]))
    b.update(torch.from_numpy(logits[0].argmax(1)), torch.from_numpy(targets[0]))
    assert torch.equal(a.confmat, b.confmat)


def test_absent_class_left_out():
    # class 2 is never predicted nor present: mean over classes 0 and 1 only
    pred = torch.tensor([[[0, 0, 1, 1]]])
    target = torch.tensor([[[0, 1, 1, -1]]])
    m = SemsegMetrics(3)
    m.update(pred, target)
    out = m.compute()
    # IoU_0 = 1/2, IoU_1 = 1/2 ; pAcc = 2/3
    assert out["mIoU"].item() == pytest.approx(50.0)
    assert out["pAcc"].item() == pytest.approx(200 / 3, rel=1e-6)
    # present only in the prediction: counted, with IoU 0
    m2 = SemsegMetrics(3)
    m2.update(torch.tensor([[[2, 0]]]), torch.tensor([[[0, 0]]]))
    assert m2.compute()["mIoU"].item() == pytest.approx(25.0)  # IoU_0 = 1/2, IoU_2 = 0


def test_invalid_target_raises():
    m = SemsegMetrics(3)
    with pytest.raises(MtkdError, match="outside"):
        m.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 3]]]))
    with pytest.raises(MtkdError, match="outside"):
        m.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, -2]]]))
    m255 = SemsegMetrics(3, ignore_index=255)
    m255.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 255]]]))
    assert m255.compute()["pAcc"].item() == pytest.approx(100.0)


def test_merge_state_equals_single():
    rng = np.random.default_rng(2)
    logits, targets = _data(rng, [3, 1])
    r0, whole = merged_and_whole(lambda: SemsegMetrics(5), logits, targets)
    assert torch.equal(r0.confmat, whole.confmat)
    assert r0.compute()["mIoU"].item() == pytest.approx(whole.compute()["mIoU"].item())
