"""Training engine: one LightningModule for every method, run folders, checkpoints and results."""
