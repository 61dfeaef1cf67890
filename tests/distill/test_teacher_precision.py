"""Teachers in bf16 autocast (outputs back in float32 for the losses) and channels_last: same outputs within
tolerance as the float32 contiguous teacher (issue 16)."""

import torch

from mtkd.distill.teachers import TeacherSet
from mtkd.models import build_model_from_config


def test_bf16_and_channels_last_teachers_match_fp32(tmp_path):
    torch.manual_seed(0)
    tasks = {"semseg": 5, "depth": 1}
    model = build_model_from_config({"backbone": "tiny", "pretrained": False}, tasks)
    torch.save(model.state_dict(), tmp_path / "t.pt")
    spec = {"weights": str(tmp_path / "t.pt"), "tasks": tasks, "model": {"backbone": "tiny"}}
    sources = {t: spec for t in tasks}
    image = torch.randn(2, 3, 32, 48)
    ref = TeacherSet(sources, bf16=False)(image)
    cl = TeacherSet(sources, bf16=False, channels_last=True)(image)
    bf = TeacherSet(sources, bf16=True)(image)
    for t in tasks:
        torch.testing.assert_close(cl[t].preds[t], ref[t].preds[t], rtol=1e-4, atol=1e-5)
        assert bf[t].preds[t].dtype == torch.float32 and all(v.dtype == torch.float32 for v in bf[t].features.values())
        err = (bf[t].preds[t] - ref[t].preds[t]).abs().max() / ref[t].preds[t].abs().max()
        assert err < 0.05, f"{t}: bf16 relative error {err:.3g}"
