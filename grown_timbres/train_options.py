"""How train runs: TrainOptions, one dataclass of the loop's options, each checked when made,
and train's keywords merged into them.

    TrainOptions(batch_size, sync_every, progress, desc, checkpoint_path, checkpoint_every,
                 capture, precompute_waves, lr_schedule, scaler, amp_dtype)
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Callable

import torch

from .capture import checked_capture
from .config import checked_number


@dataclass(frozen=True)
class TrainOptions:
    """How train runs; each value is checked when the options are made (a ValueError names it).

    batch_size: examples a step (None: as many as fit the device, step.examples_per_step)
    sync_every: steps between the host's waits for the device, to read the losses, take honest
        wall times and check for trouble (None: 25 on CUDA, 1 on CPU)
    progress, desc: the tqdm bar and its label
    checkpoint_path, checkpoint_every: a resumable checkpoint (resume.save_training_checkpoint,
        atomic) every so many steps and when training stops
    capture: record the step once as a CUDA graph and replay it (CUDA, an optimizer from
        make_optimizer(model, capturable=True)); a capture that fails or disagrees with the
        eager step falls back to it with a warning; step batches stay eager unless "always"
    precompute_waves: while all examples fit one step, compute the harmonic waves once
    lr_schedule: step -> factor: each parameter group's initial rate times it, every step
        (steps counted over the whole history from 0); None: the optimizer's rates as they are
    scaler, amp_dtype: a GradScaler and the autocast dtype of the model's forward"""

    batch_size: int | None = None
    sync_every: int | None = None
    progress: bool = True
    desc: str = "training"
    checkpoint_path: str | os.PathLike | None = None
    checkpoint_every: int = 100
    capture: bool | str = False
    precompute_waves: bool = False
    lr_schedule: Callable[[int], float] | None = None
    scaler: torch.amp.GradScaler | None = None
    amp_dtype: torch.dtype | None = None

    def __post_init__(self):
        for name in ("batch_size", "sync_every"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, checked_number(
                    name, getattr(self, name), whole=True, at_least=1))
        object.__setattr__(self, "checkpoint_every", checked_number(
            "checkpoint_every", self.checkpoint_every, whole=True, at_least=1))
        checked_capture(self.capture)
        if self.lr_schedule is not None and not callable(self.lr_schedule):
            raise ValueError(f"lr_schedule must be a function of the step, not "
                             f"{self.lr_schedule!r}")
        if self.lr_schedule is not None and self.capture:
            raise ValueError("lr_schedule needs the eager step: a captured CUDA graph replays "
                             "the learning rate it was recorded with")
        if self.amp_dtype is not None and not isinstance(self.amp_dtype, torch.dtype):
            raise ValueError(f"amp_dtype must be a torch dtype or None, not {self.amp_dtype!r}")


OPTION_NAMES = tuple(f.name for f in dataclasses.fields(TrainOptions))


def merged_options(options: TrainOptions | None, fields: dict) -> TrainOptions:
    """`options` (default TrainOptions()) with `fields` (train's keywords) put in."""
    unknown = sorted(set(fields) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(f"train has no option {', '.join(map(repr, unknown))} (TrainOptions: "
                        f"{', '.join(OPTION_NAMES)})")
    if options is not None and not isinstance(options, TrainOptions):
        raise TypeError(f"options must be TrainOptions, not {type(options).__name__}")
    return dataclasses.replace(options or TrainOptions(), **fields)
