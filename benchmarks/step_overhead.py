"""mtkd's training step (Lightning module, manual optimisation, weighting, logging) vs a bare PyTorch loop.

Same model, batch and optimizer; both measured in this process, alternating rounds, median seconds per step.
The mtkd step is timed between Lightning's ``on_train_batch_start`` and ``on_train_batch_end`` hooks, so data
loading is excluded on both sides. Target ratio ≤ 1.05.

    python benchmarks/step_overhead.py [--steps 30] [--rounds 3] [--batch 8] [--method ew]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from mtkd.config import load_config, to_dict
from mtkd.engine.module import MultiTaskModule
from mtkd.tasks import get_task

TASKS = {"semseg": 8, "depth": 1, "normal": 3}


class FixedBatches(Dataset):
    """One pre-built batch repeated: no data-loading cost on either side."""

    def __init__(self, batch: dict[str, torch.Tensor], steps: int):
        self.batch, self.steps = batch, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.batch


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, *args) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        self.times.append(time.perf_counter() - self._t)


def make_batch(b: int, h: int = 96, w: int = 128) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    normal = torch.nn.functional.normalize(torch.randn(b, 3, h, w, generator=g), dim=1)
    return {"image": torch.randn(b, 3, h, w, generator=g), "semseg": torch.randint(-1, 8, (b, h, w), generator=g),
            "depth": torch.rand(b, 1, h, w, generator=g) * 5, "normal": normal}


def mtkd_step_times(module: MultiTaskModule, batch: dict, steps: int) -> list[float]:
    timer = StepTimer()
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[timer])
    loader = DataLoader(FixedBatches(batch, steps), batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    return timer.times


def bare_step_times(module: MultiTaskModule, batch: dict, steps: int) -> list[float]:
    model = module.model
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
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--method", default="ew")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    cfg = to_dict(load_config(None, [f"weighting.name={args.method}", "optim.scheduler=none"]))
    module = MultiTaskModule(cfg, TASKS)
    batch = make_batch(args.batch)
    bare, ours = [], []
    for _ in range(args.rounds):  # alternate so machine load hits both sides alike
        bare += bare_step_times(module, batch, args.steps)[3:]
        ours += mtkd_step_times(module, batch, args.steps)[3:]
    b, m = statistics.median(bare), statistics.median(ours)
    print(f"device: cpu ({torch.get_num_threads()} threads), batch {args.batch}x3x96x128, tiny backbone, "
          f"{len(bare)} steps each")
    print(f"bare PyTorch step : {b * 1e3:8.1f} ms (median)")
    print(f"mtkd step ({args.method:>4}) : {m * 1e3:8.1f} ms (median)")
    print(f"ratio mtkd / bare : {m / b:8.3f}   (target <= 1.05)")


if __name__ == "__main__":
    main()
