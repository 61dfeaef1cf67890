"""Two gloo processes with DistributedDataParallel, half a batch each: the plumbing must give every process the
gradients of the union batch computed single-process, with exactly one collective on the task-gradient matrix."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import mtkd.weighting as W

from weighting_tiny import (CONFIGS, FLOAT32_WEIGHTS, STEPS, TASKS, ddp_worker, expected_grads, losses_of, make_batch,
                            make_model)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(ddp_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.timeout(180)  # the fixture spawns two processes that import torch: most of it, and slow on a busy host
def test_ddp_matches_single_process_union_batch(ddp_results):
    for c, (name, options, rep_grad) in enumerate(CONFIGS):
        ref_method = W.get(name, tasks=TASKS, **(dict(options, rep_grad=True) if rep_grad else options))
        for step in range(STEPS):
            x, y = make_batch(8, seed=10 + step)
            label = f"{name} rep_grad={rep_grad} step {step}"
            tol = {"rtol": 1e-5, "atol": 1e-8} if name in FLOAT32_WEIGHTS else {"rtol": 1e-7, "atol": 1e-10}
            if ref_method.family == "gradient":
                ref_shared, ref_heads = expected_grads(name, options, x, y, rep_grad=rep_grad, method=ref_method)
                ref_own = []
            else:
                model = make_model()
                ref_method.zero_grad(set_to_none=True)
                L, extra, rep = losses_of(model, x, y)
                ref_method.backward(L, extra=extra, shared_params=list(model.shared.parameters()))
                ref_shared = [p.grad for p in model.shared.parameters()]
                ref_heads = [p.grad for h in model.heads.values() for p in h.parameters()]
                ref_own = [p.grad for p in ref_method.parameters()]
            for rank in range(2):
                got = ddp_results[rank][c][step]
                for a, b in zip(got["shared"], ref_shared):
                    torch.testing.assert_close(a, b, **tol, msg=f"shared grads, {label}")
                for a, b in zip(got["heads"], ref_heads):
                    torch.testing.assert_close(a, b, **tol, msg=f"head grads, {label}")
                for a, b in zip(got["own"], ref_own):
                    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=f"weighting grads (float32), {label}")
                counts = got["counts"]
                if ref_method.family == "gradient":
                    expected = {"all_reduce": 0, "all_gather": 1} if rep_grad else {"all_reduce": 1, "all_gather": 0}
                    assert counts == expected, (label, counts)
            assert ddp_results[0][c][step]["weights"] == ddp_results[1][c][step]["weights"], label
