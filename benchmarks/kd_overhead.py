"""Distillation training steps vs one plain multi-task step of the same student, teachers' forward timed apart.

For each method: the median step time, its ratio to the equal-weight MTL step, and its ratio to "MTL step +
teachers' forward" (issue 5's target for frozen-teacher methods: ≤ 1.10), and the growth of peak resident memory
while it trains 3 steps in a fresh subprocess (CPU; includes the teachers and allocator caching, so coarse). Teachers: three tiny single-task
models (KDAM: one "small" multi-task model; OKD-MTL trains its own three single-task networks, no frozen teacher).
All methods are measured in one process on the same batch, alternating with the MTL step round by round.

    python benchmarks/kd_overhead.py [--steps 20] [--rounds 2] [--batch 8] [--methods kd4mtl kd ...] [--device cpu|cuda]

On cuda the peak-memory column is not measured (the RSS subprocesses are CPU-only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from bench_common import (TASKS, add_device_arg, config, describe_device, lightning_step_times, make_batch, peak_rss_kib,
                          save_teacher, sync)

from mtkd.engine.module import MultiTaskModule

METHODS = ("kd4mtl", "kd", "dist", "cwd", "fitnet", "kdam", "jointdistill", "okd")


def teacher_forward_times(module: MultiTaskModule, batch: dict, steps: int, device: str = "cpu") -> list[float]:
    module.to(device)
    image = batch["image"].to(device)
    times = []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        module.teachers(image)
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def build(method: str, tmp: Path) -> MultiTaskModule:
    if method == "okd":
        return MultiTaskModule(config("distill.name=okd"), TASKS)
    if method == "kdam":
        path = tmp / "mtl.ckpt"
        if not path.exists():
            save_teacher(path, list(TASKS), backbone="small")
        sources = {t: path for t in TASKS}
    else:
        sources = {t: tmp / f"{t}.ckpt" for t in TASKS}
        for t, p in sources.items():
            if not p.exists():
                save_teacher(p, [t])
    teachers = [f"distill.teachers.{t}={p}" for t, p in sources.items()]
    return MultiTaskModule(config(f"distill.name={method}", *teachers), TASKS)


def memory_worker(method: str, steps: int, batch_size: int) -> None:
    """In a fresh process: peak-RSS growth (MiB) while ``method`` (or ``mtl``) trains ``steps`` steps."""
    torch.manual_seed(0)
    batch = make_batch(batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        module = MultiTaskModule(config(), TASKS) if method == "mtl" else build(method, Path(tmp))
        rss0 = peak_rss_kib()
        lightning_step_times(module, batch, steps, warmup=1)
        print(json.dumps({"peak_mib": (peak_rss_kib() - rss0) / 1024}))


def peak_memory(method: str, steps: int, batch_size: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--memory-worker", method, "--steps", str(steps),
                          "--batch", str(batch_size)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--no-memory", action="store_true", help="skip the per-method peak-memory subprocesses")
    ap.add_argument("--memory-worker", help=argparse.SUPPRESS)
    add_device_arg(ap)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if args.memory_worker:
        return memory_worker(args.memory_worker, 3, args.batch)
    print(describe_device(args.device))
    torch.manual_seed(0)
    batch = make_batch(args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        mtl = MultiTaskModule(config(), TASKS)
        modules = {m: build(m, Path(tmp)) for m in args.methods}
        mtl_t: list[float] = []
        kd_t: dict[str, list[float]] = {m: [] for m in modules}
        teach_t: dict[str, list[float]] = {m: [] for m in modules}
        for _ in range(args.rounds):
            mtl_t += lightning_step_times(mtl, batch, args.steps, device=args.device)
            for m, module in modules.items():
                kd_t[m] += lightning_step_times(module, batch, args.steps, device=args.device)
                if module.teachers is not None:
                    teach_t[m] += teacher_forward_times(module, batch, args.steps, args.device)
    mem = {} if args.no_memory or args.device == "cuda" else {m: peak_memory(m, 3, args.batch) for m in ["mtl", *modules]}
    base = statistics.median(mtl_t)
    print(f"batch {args.batch}x3x96x128, tiny student, "
          f"{args.rounds}x{args.steps} steps each, medians")
    print(f"{'method':<13}{'step ms':>9}{'× MTL':>8}{'teachers ms':>13}{'× (MTL+teachers)':>18}{'peak MiB':>10}")
    print(f"{'mtl (ew)':<13}{base * 1e3:>9.1f}{1.0:>8.2f}{'':>31}{mem.get('mtl', float('nan')):>10.0f}")
    for m in modules:
        k = statistics.median(kd_t[m])
        t = statistics.median(teach_t[m]) if teach_t[m] else 0.0
        if teach_t[m]:
            row = f"{m:<13}{k * 1e3:>9.1f}{k / base:>8.2f}{t * 1e3:>13.1f}{k / (base + t):>18.2f}"
        else:
            row = f"{m:<13}{k * 1e3:>9.1f}{k / base:>8.2f}{'–':>13}{'no frozen teacher':>18}"
        print(f"{row}{mem.get(m, float('nan')):>10.0f}")


if __name__ == "__main__":
    main()
