"""The edge task end to end: validation logs the F@0.5 proxy, the test split (end of training, ``mtkd eval``) gets
odsF / oisF with the run's ``eval.edge`` options, equal to the previous implementation run on the model's own
test predictions; the pool gives the same numbers; the report and Delta_m read odsF."""

import csv
import math

import numpy as np
import pytest
import torch

from mtkd.config import load_config
from mtkd.engine.evaluate import evaluate, module_from_checkpoint
from mtkd.engine.run import build_datamodule, train
from mtkd.metrics import METRIC_DIRECTIONS, delta_m
from mtkd.tasks import BoundaryFromLogits, build_test_metric, get_task
from mtkd.testing import tiny_run_overrides

pytestmark = pytest.mark.slow

EVAL = ["eval.edge.max_dist=0.03", "eval.edge.thresholds=9"]


def _reference_ods(probs, gts, thresholds, max_dist):
    ref = pytest.importorskip("boundary_reference")
    total = np.zeros((len(thresholds), 4))
    for p, g in zip(probs, gts):
        if (g >= 0).any():
            total += ref.image_counts(p, g, thresholds, max_dist)
    P = np.divide(total[:, 0], total[:, 1], out=np.zeros(len(total)), where=total[:, 1] > 0)
    R = np.divide(total[:, 2], total[:, 3], out=np.zeros(len(total)), where=total[:, 3] > 0)
    return 100 * np.max(np.divide(2 * P * R, P + R, out=np.zeros(len(total)), where=P + R > 0))


def test_edge_is_scored_with_odsf_on_test_and_proxy_on_val(tmp_path):
    cfg = load_config(None, tiny_run_overrides(tmp_path, "name=e", "data.tasks=[semseg,edge]", *EVAL, epochs=1))
    res = train(cfg)
    assert set(res["test"]["edge"]) == {"odsF", "oisF"}  # the benchmark only: no proxy in results or Delta_m
    assert 0 <= res["test"]["edge"]["odsF"] <= res["test"]["edge"]["oisF"] <= 100
    logs = next((tmp_path / "runs" / "e" / "logs").rglob("metrics.csv"))
    header = next(csv.reader(logs.open()))
    assert "val/edge/F@0.5" in header and "val/edge/odsF" not in header and "val/edge/F" not in header

    # mtkd eval, scored in a worker process this time, gives the same numbers
    got = evaluate(res["best_checkpoint"], overrides=["eval.edge.workers=1"])
    assert got["edge"] == pytest.approx(res["test"]["edge"], abs=1e-9)

    # and they are the previous implementation's odsF on the model's own test predictions
    module, config = module_from_checkpoint(res["best_checkpoint"])
    dm = build_datamodule(config)
    dm.setup("test")
    probs, gts = [], []
    module.eval()
    with torch.no_grad():
        for batch in dm.test_dataloader():
            probs += list(torch.sigmoid(module(batch["image"]).preds["edge"].float())[:, 0].double().numpy())
            gts += list(batch["edge"][:, 0].numpy())
    ths = np.linspace(0.1, 0.9, 9)
    assert res["test"]["edge"]["odsF"] == pytest.approx(_reference_ods(probs, gts, ths, 0.03), abs=1e-4)


def test_test_metric_takes_the_eval_options_and_old_checkpoints_get_defaults():
    m = build_test_metric(get_task("edge"), 1, {"max_dist": 0.011, "thresholds": 5, "nms": True})
    assert isinstance(m, BoundaryFromLogits) and m.max_dist == 0.011 and len(m.thresholds) == 5 and m.nms
    assert math.isclose(m.thresholds[0], 1 / 6)
    assert type(build_test_metric(get_task("semseg"), 4, None)).__name__ == "SemsegMetrics"  # same as validation
    # logits in: the sigmoid is applied before the [0, 1] check
    m.update(torch.randn(1, 1, 12, 12) * 10, torch.zeros(1, 1, 12, 12))
    assert m.n_images.item() == 1
    assert get_task("edge").monitor == "F@0.5" and get_task("edge").test_monitor == "odsF"


def test_report_and_delta_m_read_odsf():
    assert list(METRIC_DIRECTIONS["edge"])[0] == "odsF" and METRIC_DIRECTIONS["edge"]["odsF"]
    base = {"edge": {"odsF": 70.0, "oisF": 72.0}}
    assert delta_m({"edge": {"odsF": 77.0, "oisF": 72.0}}, base) == pytest.approx(5.0)  # (10 % + 0 %) / 2
