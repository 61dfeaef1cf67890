"""A tiny two-layer multi-task model shared by the plumbing and DDP tests."""

import torch
from torch import nn

TASKS = ("a", "b", "c")


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(4, 6)
        self.heads = nn.ModuleDict({t: nn.Linear(6, 2) for t in TASKS})

    def forward(self, x):
        rep = torch.tanh(self.shared(x))
        return {t: h(rep) for t, h in self.heads.items()}, rep


def make_model(seed=0):
    torch.manual_seed(seed)
    return Tiny().double()


def make_batch(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = {t: torch.randn(n, 2, generator=g, dtype=torch.float64) * (k + 1) for k, t in enumerate(TASKS)}
    return x, y


def losses_of(model, x, y):
    preds, rep = model(x)
    L = {t: ((preds[t] - y[t]) ** 2).mean() * (k + 1) for k, t in enumerate(TASKS)}
    extra = 0.1 * (rep**2).mean()
    return L, extra, rep


def shared_params(model):
    m = model.module if hasattr(model, "module") else model
    return list(m.shared.parameters())


def expected_grads(name, options, x, y, rep_grad=False, method=None):
    """Reference: per-task gradients by autograd on the whole batch, combine from a fresh method, then the gradient
    of extra added to the shared parameters; heads get the plain gradients."""
    import mtkd.weighting as W

    model = make_model()
    L, extra, rep = losses_of(model, x, y)
    method = method if method is not None else W.get(name, **options)
    Lt = [torch.log(L[t] + 1e-8) if getattr(method, "log_losses", False) else L[t] for t in TASKS]
    sp = shared_params(model)
    if rep_grad:
        G = torch.stack([torch.autograd.grad(l, rep, retain_graph=True)[0].reshape(-1) for l in Lt])
        d = method.combine(G, losses=torch.stack([L[t].detach() for t in TASKS]))
        shared = torch.autograd.grad(rep, sp, grad_outputs=d.view_as(rep), retain_graph=True)
    else:
        G = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(l, sp, retain_graph=True)]) for l in Lt])
        d = method.combine(G, losses=torch.stack([L[t].detach() for t in TASKS]))
        shared, j = [], 0
        for p in sp:
            shared.append(d[j : j + p.numel()].view_as(p))
            j += p.numel()
    ex = torch.autograd.grad(extra, sp, retain_graph=True)
    shared = [s + e for s, e in zip(shared, ex)]
    heads = torch.autograd.grad(sum(Lt) + extra, [p for h in model.heads.values() for p in h.parameters()])
    return [s.detach() for s in shared], [h.detach() for h in heads]


# ---------------------------------------------------------------- DDP worker (spawned by test_ddp)
CONFIGS = [("pcgrad", {}, False), ("mgda", {"normalization": "loss"}, False), ("mgda", {}, True),
           ("imtl", {}, True), ("uw", {}, False),
           # issue 17: the Jacobian-descent projections (both modes), the α-fair solve, ConFIG, the stateful
           # ExcessMTL / MoCo (their state must evolve identically on every process), a learnable loss scale
           ("upgrad", {}, False), ("dualproj", {}, True), ("fairgrad", {"alpha": 2.0}, False), ("config", {}, True),
           ("excessmtl", {"step_size": 1.0}, False), ("moco", {"normalize_grads": True}, False), ("imtl_l", {}, False),
           ("stch", {"objective": "raw", "mu": 5.0}, False), ("gls", {}, False)]
STEPS = 2
# loss methods whose weights are computed from the (float32) loss values: DDP's averaged losses round differently
# from the union batch's, so their gradients agree to float32 precision only
FLOAT32_WEIGHTS = {"gls", "stch"}


def ddp_worker(rank, world, port, outdir):
    import os

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    import mtkd.weighting as W

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    counts = {"all_reduce": 0, "all_gather": 0}

    def counting(fn, key):
        def wrapped(*a, **k):
            counts[key] += 1
            return fn(*a, **k)
        return wrapped

    dist.all_reduce = counting(dist.all_reduce, "all_reduce")
    dist.all_gather = counting(dist.all_gather, "all_gather")
    results = []
    for name, options, rep_grad in CONFIGS:
        model = DDP(make_model())
        opts = dict(options, rep_grad=True) if rep_grad else options
        method = W.get(name, tasks=TASKS, **opts)
        steps = []
        for step in range(STEPS):
            x, y = make_batch(8, seed=10 + step)
            n = len(x) // world
            sl = slice(rank * n, (rank + 1) * n)
            model.zero_grad(set_to_none=True)
            method.zero_grad(set_to_none=True)
            L, extra, rep = losses_of(model, x[sl], {t: v[sl] for t, v in y.items()})
            for k in counts:
                counts[k] = 0
            weights = method.backward(L, extra=extra, shared_params=shared_params(model), rep=rep)
            steps.append({
                "shared": [p.grad.clone() for p in shared_params(model)],
                "heads": [p.grad.clone() for h in model.module.heads.values() for p in h.parameters()],
                "own": [p.grad.clone() for p in method.parameters()],
                "weights": weights,
                "counts": dict(counts),
            })
        results.append(steps)
    torch.save(results, os.path.join(outdir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()
