"""Moved to :mod:`mtkd.checkpoints` (below the engine, as data, distill, report, export and predict read checkpoints
too); this alias keeps old imports working."""

from mtkd.checkpoints import *  # noqa: F401,F403
from mtkd.checkpoints import AtomicCheckpointIO, load_checkpoint, load_model, read_training_checkpoint, \
    state_dict_mismatch  # noqa: F401
