"""The harmonic part: oscillators at every multiple of f0 below Nyquist, their amplitudes from
the decoder (an overall amplitude times a distribution over the harmonics).

    amplitude [B, T, 1], harmonic_distribution [B, T, H], f0 [B, T, 1] Hz -> audio [B, T * hop]
"""
from __future__ import annotations

import numpy as np

from .part import SynthPart
from .synth import exp_sigmoid, harmonic_synth, normalize_harmonic_distribution


def harmonic_mask(stage, n_harmonics: int) -> np.ndarray:
    """[H] bool: the harmonics that sound in a growth stage (stage.n_harmonics, None = all)."""
    count = n_harmonics if stage.n_harmonics is None else stage.n_harmonics
    return np.arange(n_harmonics) < count


class HarmonicPart(SynthPart):
    name = "harmonic"
    gain = "harmonic_gain"  # [B or 1, T, H]: a growth stage sounds some of the harmonics
    stage_switch = "n_harmonics"
    # exp_sigmoid tops out at 2; a harmonic's share of the distribution at 1
    control_max = {"amplitude": 2.0, "harmonic_distribution": 1.0}

    def heads(self) -> dict:
        return {"amplitude": 1, "harmonic_distribution": self.config.n_harmonics}

    def controls(self, heads: dict, f0):
        return {"amplitude": exp_sigmoid(heads["amplitude"]),
                "harmonic_distribution": normalize_harmonic_distribution(
                    exp_sigmoid(heads["harmonic_distribution"]), f0.float(),
                    self.config.sample_rate)}

    def play(self, audio, f0, controls: dict, gain, weights: dict, waves=None, generator=None):
        amplitudes = controls["amplitude"] * controls["harmonic_distribution"]
        if gain is not None:
            amplitudes = amplitudes * gain
        played = harmonic_synth(f0, amplitudes, self.config.sample_rate, self.config.hop_length,
                                waves)
        return played if audio is None else audio + played

    def stage_gain(self, stage) -> np.ndarray:
        return harmonic_mask(stage, self.config.n_harmonics).astype(np.float64)
