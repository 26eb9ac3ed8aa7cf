"""The noise part: uniform noise through a linear-phase filter the decoder shapes per frame.

    noise_magnitudes [B, T, M] -> audio [B, T * hop]
"""
from __future__ import annotations

from .part import SynthPart
from .synth import exp_sigmoid, filtered_noise

NOISE_INITIAL_BIAS = -5.0  # magenta: start with quiet noise so harmonics are learned first


class NoisePart(SynthPart):
    name = "noise"
    gain = "noise_gain"  # [B or 1, T, 1]
    stage_switch = "noise"
    control_max = {"noise_magnitudes": 2.0}  # exp_sigmoid tops out at 2

    def heads(self) -> dict:
        return {"noise_magnitudes": self.config.n_noise_bands}

    def controls(self, heads: dict, f0):
        return {"noise_magnitudes": exp_sigmoid(heads["noise_magnitudes"] + NOISE_INITIAL_BIAS)}

    def play(self, audio, f0, controls: dict, gain, weights: dict, waves=None, generator=None):
        magnitudes = controls["noise_magnitudes"]
        if gain is not None:
            magnitudes = magnitudes * gain
        played = filtered_noise(magnitudes, self.config.hop_length, generator)
        return played if audio is None else audio + played
