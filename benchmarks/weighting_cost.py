"""Cost of one training step per weighting method, relative to ``ew``, side by side.

    python benchmarks/weighting_cost.py [--quick] [--steps N] [--device cpu|cuda] [--methods a,b,...]
                                        [--update-every K] [--batched]
    python benchmarks/weighting_cost.py --grads [--device cpu|cuda]   # T backwards vs one batched backward

Every (method, mode) gets a fresh copy of the same model (same seed) and the same batch. Time: median over
``--steps`` steps after warm-up of forward + ``weighting.backward`` + optimizer step, all configurations timed in
one process, interleaved step by step (so load from other processes hits every method alike). Peak memory: on CUDA,
``torch.cuda.max_memory_allocated`` during one step above what was allocated before it; on CPU, each configuration
runs in its own fresh subprocess and the growth of its peak resident set size (VmHWM from ``/proc/self/status``,
``resource`` ru_maxrss where /proc is missing) over warm-up + 2 steps is reported (tracemalloc cannot see torch's tensor allocations; RSS includes
allocator caching, so CPU numbers are coarse). Gradient methods that support it are run twice:
``param`` (gradients w.r.t. the shared parameters) and ``rep`` (w.r.t. the shared representation). Methods with
``update_every`` get a ``param/u<k>`` row (``--update-every``, default 4) timed over k consecutive steps, so each
sample is the mean step of one cycle (one recomputation, k − 1 held steps); ``--batched`` adds ``param/batched``
rows (per-task gradients by one batched backward).

The model is mtkd's ``MultiTaskModel`` with the tiny backbone and mtkd's masked task losses.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from bench_common import add_device_arg, describe_device, peak_rss_kib, sync
from torch import nn

TASKS = ("semseg", "depth", "normal", "edge")
CLASSES = 13


def build_model() -> nn.Module:
    """mtkd's multi-task model (tiny backbone, FPN neck, one head per task), as trained by ``mtkd train``."""
    from mtkd.models import MultiTaskModel

    return MultiTaskModel("tiny", {t: CLASSES if t == "semseg" else {"normal": 3}.get(t, 1) for t in TASKS})


def make_batch(n: int, size: int, device: str):
    g = torch.Generator().manual_seed(0)
    b = {
        "image": torch.randn(n, 3, size, size, generator=g),
        "semseg": torch.randint(0, CLASSES, (n, size, size), generator=g),
        "depth": torch.rand(n, 1, size, size, generator=g) * 10,
        "normal": F.normalize(torch.randn(n, 3, size, size, generator=g), dim=1),
        "edge": (torch.rand(n, 1, size, size, generator=g) > 0.9).float(),
    }
    return {k: v.to(device) for k, v in b.items()}


def task_losses(preds, batch):
    """mtkd's own masked task losses."""
    from mtkd.tasks import get_task

    return {t: get_task(t).loss(preds[t], batch[t]) for t in TASKS}


def setup(method: str, mode: str, batch: int, size: int, device: str):
    """A closure running one training step of ``method`` (fresh model, same seed, same batch). ``mode`` is
    ``loss``, ``param`` or ``rep``, optionally with ``/u<k>`` (``update_every: k``) or ``/batched`` (per-task
    gradients by one batched backward: ``plumbing.PER_TASK_GRADS``)."""
    import mtkd.weighting as W
    from mtkd.weighting import plumbing

    base, *tags = mode.split("/")
    torch.manual_seed(0)
    model = build_model().to(device)
    options = {"rep_grad": True} if base == "rep" else {}
    options.update({"update_every": int(t[1:]) for t in tags if t.startswith("u")})
    grads = "batched" if "batched" in tags else "loop"
    weighting = W.get(method, tasks=TASKS, **options).to(device)
    opt = torch.optim.SGD(list(model.parameters()) + list(weighting.parameters()), lr=1e-3, momentum=0.9)
    data = make_batch(batch, size, device)

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(data["image"])
        losses = task_losses(out.preds, data)
        plumbing.PER_TASK_GRADS = grads
        try:
            weighting.backward(losses, extra=None, shared_params=model.shared_parameters(),
                               rep=out.features["shared"])
        finally:
            plumbing.PER_TASK_GRADS = "loop"
        opt.step()

    return step


def cpu_memory_worker(method: str, mode: str, warmup: int, batch: int, size: int) -> float:
    """Peak-RSS growth (MiB) over warm-up + 2 steps, in this fresh process."""
    step = setup(method, mode, batch, size, "cpu")
    rss0 = peak_rss_kib()
    for _ in range(warmup + 2):
        step()
    return (peak_rss_kib() - rss0) / 1024


def cuda_step_peak(step, device: str) -> float:
    """Peak allocated memory during one step above what was allocated before it (MiB)."""
    sync(device)
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step()
    sync(device)
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def configs(methods, update_every: int = 0, batched: bool = False):
    """(method, mode) rows: every gradient method in ``param`` (and ``rep`` where supported) mode, plus
    ``param/u<k>`` for the methods with ``update_every`` and ``param/batched`` when asked."""
    import mtkd.weighting as W

    out = []
    for m in methods:
        w = W.get(m, tasks=TASKS)
        if w.family == "gradient":
            out.append((m, "param"))
            if batched:
                out.append((m, "param/batched"))
            if update_every > 1 and "update_every" in w.opts:
                out.append((m, f"param/u{update_every}"))
            if w.supports_rep_grad:
                out.append((m, "rep"))
        else:
            out.append((m, "loss"))
    return out


def grads_comparison(batch: int, size: int, device: str, reps: int) -> None:
    """Per-task gradients of the shared parameters, T separate backwards vs one batched backward, side by side
    (interleaved, medians), after checking both give the same G and the same Gramian."""
    from mtkd.weighting.plumbing import per_task_grads

    torch.manual_seed(0)
    model = build_model().to(device)
    data = make_batch(batch, size, device)
    params = [p for p in model.shared_parameters() if p.requires_grad]

    def run(mode):
        L = task_losses(model(data["image"]).preds, data)
        return per_task_grads([L[t] for t in TASKS], params, mode=mode)

    def fwd():
        return task_losses(model(data["image"]).preds, data)

    Gl, Gb = run("loop"), run("batched")
    err = float((Gl - Gb).abs().max() / Gl.abs().max())
    gerr = float(((Gl @ Gl.T) - (Gb @ Gb.T)).abs().max() / (Gl @ Gl.T).abs().max())
    times = {"forward only": [], "loop": [], "batched": []}
    for _ in range(reps):
        for k in times:
            sync(device)
            t0 = time.perf_counter()
            fwd() if k == "forward only" else run(k)
            sync(device)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"per-task gradients of the shared parameters (T={len(TASKS)}, D={Gl.shape[1]}), forward included, "
          f"{reps} interleaved repetitions, medians; max |G_batched − G_loop| / max |G| = {err:.1e}, "
          f"same for GGᵀ = {gerr:.1e}")
    for k, v in med.items():
        print(f"  {k:<14}{1000 * v:>9.1f} ms{v / med['loop']:>8.2f} × loop")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny batch, few steps (a smoke run)")
    ap.add_argument("--steps", type=int, default=None)
    add_device_arg(ap)
    ap.add_argument("--update-every", type=int, default=4,
                    help="also time the methods with update_every at this k (0: no such rows)")
    ap.add_argument("--batched", action="store_true", help="also time param mode with batched per-task gradients")
    ap.add_argument("--grads", action="store_true",
                    help="only compare the per-task gradient computations (loop vs batched) and exit")
    ap.add_argument("--methods", default=None, help="comma-separated subset (ew is always included)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    steps = args.steps or (5 if args.quick else 20)
    warmup = 2 if args.quick else 5
    batch, size = (4, 32) if args.quick else (8, 96)

    if args.worker:
        method, mode = args.worker.split(":")
        torch.set_num_threads(args.threads)
        print(json.dumps({"peak_mib": cpu_memory_worker(method, mode, warmup, batch, size)}))
        return

    import mtkd.weighting as W

    torch.set_num_threads(args.threads)
    print(describe_device(args.device), flush=True)
    if args.grads:
        return grads_comparison(batch, size, args.device, steps)
    methods = W.names() if not args.methods else ["ew"] + [m for m in args.methods.split(",") if m != "ew"]
    cfgs = configs(methods, args.update_every, args.batched)
    # timing: all configurations in this process, interleaved step by step, so load from other processes on the
    # machine spreads evenly over the methods instead of hitting whichever ran at the wrong moment
    steps_of = {c: setup(*c, batch, size, args.device) for c in cfgs}
    for c in cfgs:
        for _ in range(warmup):
            steps_of[c]()
    times = {c: [] for c in cfgs}
    # an update_every=k row is timed over k consecutive steps (one recomputation + k−1 held steps), per step
    cycle = {c: next((int(t[1:]) for t in c[1].split("/")[1:] if t.startswith("u")), 1) for c in cfgs}
    for _ in range(steps):
        for c in cfgs:
            sync(args.device)
            t0 = time.perf_counter()
            for _ in range(cycle[c]):
                steps_of[c]()
            sync(args.device)
            times[c].append((time.perf_counter() - t0) / cycle[c])
    rows = []
    for c in cfgs:
        r = {"time_ms": 1000 * statistics.median(times[c]), "peak_mib": float("nan")}
        if args.no_memory:
            pass
        elif args.device.startswith("cuda"):
            r["peak_mib"] = cuda_step_peak(steps_of[c], args.device)
        else:
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", f"{c[0]}:{c[1]}", "--threads",
                   str(args.threads)] + (["--quick"] if args.quick else [])
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode == 0:
                r["peak_mib"] = json.loads(res.stdout.strip().splitlines()[-1])["peak_mib"]
            else:
                print(f"memory run of {c} failed: {res.stderr.strip()[-300:]}", file=sys.stderr)
        rows.append((c[0], c[1], r, ""))
        print(f"  measured {c[0]}:{c[1]}", file=sys.stderr, flush=True)

    base = next(r[2] for r in rows if r[0] == "ew")
    mem_kind = "not measured (--no-memory)" if args.no_memory else ("peak of torch.cuda.max_memory_allocated during one step above the memory allocated before it"
                if args.device.startswith("cuda") else
                "growth of the peak RSS (VmHWM) of a fresh process over warm-up + 2 steps")
    print(f"device={args.device} batch={batch}x3x{size}x{size} tasks={len(TASKS)} steps={steps} (median) "
          f"warmup={warmup}; memory = {mem_kind}")
    print(f"{'method':<12}{'mode':<15}{'ms/step':>10}{'× ew':>8}{'peak MiB':>11}{'× ew':>8}")
    for m, mode, r, _ in rows:
        tr = r["time_ms"] / base["time_ms"]
        mr = r["peak_mib"] / base["peak_mib"] if base["peak_mib"] > 0 else float("nan")
        print(f"{m:<12}{mode:<15}{r['time_ms']:>10.1f}{tr:>8.2f}{r['peak_mib']:>11.1f}{mr:>8.2f}")


if __name__ == "__main__":
    main()
