"""Helpers for smoke runs and tests: a run that trains in seconds on a tiny rooms render."""

from __future__ import annotations

from pathlib import Path


def tiny_run_overrides(tmp: Path, *extra: str, n_train: int = 16, n_test: int = 4, epochs: int = 1) -> list[str]:
    """``dotted.key=value`` overrides for a seconds-long run under ``tmp`` (32×48 rooms images, narrow decoder);
    ``extra`` overrides come last and win."""
    return [
        f"out_dir={tmp / 'runs'}", f"data.root={tmp / 'rooms'}", f"data.rooms.n_train={n_train}",
        f"data.rooms.n_test={n_test}", "data.rooms.height=32", "data.rooms.width=48", "data.batch_size=4",
        f"trainer.max_epochs={epochs}", "trainer.progress_bar=false", "trainer.log_every_n_steps=1",
        "model.decoder_channels=16", *extra,
    ]
