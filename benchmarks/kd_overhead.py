"""Distillation training steps vs one plain multi-task step of the same student, teachers' forward timed apart.

For each method: the median step time, its ratio to the equal-weight MTL step, and its ratio to "MTL step +
teachers' forward" (issue 5's target for frozen-teacher methods: ≤ 1.10). Teachers: three tiny single-task
models (KDAM: one "small" multi-task model; OKD-MTL trains its own three single-task networks, no frozen teacher).
All methods are measured in one process on the same batch, alternating with the MTL step round by round.

    python benchmarks/kd_overhead.py [--steps 20] [--rounds 2] [--batch 8] [--methods kd4mtl kd ...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from bench_common import TASKS, config, lightning_step_times, make_batch, save_teacher

from mtkd.engine.module import MultiTaskModule

METHODS = ("kd4mtl", "kd", "dist", "cwd", "fitnet", "kdam", "jointdistill", "okd")


def teacher_forward_times(module: MultiTaskModule, batch: dict, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        module.teachers(batch["image"])
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    batch = make_batch(args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        mtl = MultiTaskModule(config(), TASKS)
        modules = {m: build(m, Path(tmp)) for m in args.methods}
        mtl_t: list[float] = []
        kd_t: dict[str, list[float]] = {m: [] for m in modules}
        teach_t: dict[str, list[float]] = {m: [] for m in modules}
        for _ in range(args.rounds):
            mtl_t += lightning_step_times(mtl, batch, args.steps)
            for m, module in modules.items():
                kd_t[m] += lightning_step_times(module, batch, args.steps)
                if module.teachers is not None:
                    teach_t[m] += teacher_forward_times(module, batch, args.steps)
    base = statistics.median(mtl_t)
    print(f"device: cpu ({torch.get_num_threads()} threads), batch {args.batch}x3x96x128, tiny student, "
          f"{args.rounds}x{args.steps} steps each, medians")
    print(f"{'method':<13}{'step ms':>9}{'× MTL':>8}{'teachers ms':>13}{'× (MTL+teachers)':>18}")
    print(f"{'mtl (ew)':<13}{base * 1e3:>9.1f}{1.0:>8.2f}")
    for m in modules:
        k = statistics.median(kd_t[m])
        t = statistics.median(teach_t[m]) if teach_t[m] else 0.0
        if teach_t[m]:
            print(f"{m:<13}{k * 1e3:>9.1f}{k / base:>8.2f}{t * 1e3:>13.1f}{k / (base + t):>18.2f}")
        else:
            print(f"{m:<13}{k * 1e3:>9.1f}{k / base:>8.2f}{'–':>13}{'no frozen teacher':>18}")


if __name__ == "__main__":
    main()
