"""What a synthesizer part is (SynthPart): the one place where a part declares what the model,
the optimizer, growth and melodies need of it. DDSPModel.PARTS lists the parts in play order.

    decoder outputs [B, T, sum of heads] -> controls {name: [B, T, size]} -> audio [B, T * hop]
"""
from __future__ import annotations

import numpy as np
import torch

from .model_config import ModelConfig


class SynthPart:
    """One part of the synthesizer, built for a ModelConfig. A subclass declares:

    name          what it is, as messages and DDSPModel.part name it
    switch        the ModelConfig field that includes it (None: every model has it)
    gain          DDSPModel.synthesize's keyword that fades it, at frame rate [B or 1, T, C]
    stage_switch  the growth Stage field that says whether it sounds in a stage
    tail_seconds  how long it sounds on after its input stops (a melody is that much longer)
    weight_names  the weights it trains itself (top-level names of the model, in creation order)
    lr_scales     {weight name: multiple of the learning rate that weight trains at}
    control_max   {control name: its largest value}, each control its decoder heads make
    and, where it has them: heads (decoder outputs), initial_weights, controls, play,
    stage_gain and check_weights."""

    name = ""
    switch: str | None = None
    gain = ""
    stage_switch = ""
    tail_seconds = 0.0
    weight_names: tuple = ()
    lr_scales: dict = {}
    control_max: dict = {}

    def __init__(self, config: ModelConfig):
        self.config = config

    def heads(self) -> dict:
        """{control name: decoder outputs per frame}, in the decoder's output order."""
        return {}

    def initial_weights(self) -> dict:
        """{name: initial tensor} of its weight_names, in that order (the model registers them
        so, and the global random state is drawn in that order)."""
        return {}

    def controls(self, heads: dict, f0: torch.Tensor) -> dict:
        """The decoder's raw outputs {name: [B, T, size]} as this part's controls."""
        return {}

    def play(self, audio, f0, controls: dict, gain, weights: dict, waves=None, generator=None):
        """The audio so far [B, N] (None before the first part) with this part played into
        it -> [B, N] float32. `gain`: its frame-rate fade or None (in full); `weights` its own
        (initial_weights' names); `waves`, `generator`: see DDSPModel.synthesize."""
        raise NotImplementedError(f"{type(self).__name__} must say how it plays")

    def stage_gain(self, stage) -> np.ndarray:
        """How much it sounds in a growth stage: [C] (its gain's channels), 0 or 1 each."""
        return np.array([float(getattr(stage, self.stage_switch))])

    def check_weights(self, weights: dict) -> None:
        """Refuse its weights when they cannot be a trained part's (ValueError), before a
        render plays them."""
