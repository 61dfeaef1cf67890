"""mtkd's training step (Lightning module, manual optimisation, weighting, logging) vs a bare PyTorch loop.

Same model, batch and optimizer; both measured in this process, alternating rounds, median seconds per step.
The mtkd step is timed between Lightning's ``on_train_batch_start`` and ``on_train_batch_end`` hooks, so data
loading is excluded on both sides. Target ratio ≤ 1.05.

    python benchmarks/step_overhead.py [--steps 30] [--rounds 3] [--batch 8] [--method ew] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from bench_common import TASKS, add_device_arg, config, describe_device, lightning_step_times, make_batch, sync

from mtkd.engine.module import MultiTaskModule
from mtkd.tasks import get_task


def bare_step_times(module: MultiTaskModule, batch: dict, steps: int, device: str = "cpu") -> list[float]:
    model = module.model.to(device)
    batch = {k: v.to(device) for k, v in batch.items()}
    specs = {t: get_task(t) for t in TASKS}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(batch["image"])
        loss = sum(specs[t].loss(out.preds[t], batch[t]) for t in TASKS)
        loss.backward()
        opt.step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--method", default="ew")
    add_device_arg(ap)
    args = ap.parse_args()
    print(describe_device(args.device))
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    module = MultiTaskModule(config(f"weighting.name={args.method}"), TASKS)
    batch = make_batch(args.batch)
    bare, ours = [], []
    for _ in range(args.rounds):  # alternate so machine load hits both sides alike
        bare += bare_step_times(module, batch, args.steps, args.device)[3:]
        ours += lightning_step_times(module, batch, args.steps, device=args.device)
    b, m = statistics.median(bare), statistics.median(ours)
    print(f"batch {args.batch}x3x96x128, tiny backbone, "
          f"{len(bare)} steps each")
    print(f"bare PyTorch step : {b * 1e3:8.1f} ms (median)")
    print(f"mtkd step ({args.method:>4}) : {m * 1e3:8.1f} ms (median)")
    print(f"ratio mtkd / bare : {m / b:8.3f}   (target <= 1.05)")


if __name__ == "__main__":
    main()
