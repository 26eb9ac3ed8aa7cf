"""Pitch as MIDI note numbers and as Hz, for numpy arrays, torch tensors and floats alike.

    Hz [...] <-> MIDI note number [...] (float; 69 = A4 = 440 Hz, 60 = C4)
"""
from __future__ import annotations

import numpy as np
import torch


def hz_to_midi(f0):
    """Hz -> MIDI note number (float); works on numpy arrays and torch tensors."""
    log2 = torch.log2 if isinstance(f0, torch.Tensor) else np.log2
    return 12.0 * log2(f0 / 440.0) + 69.0


def midi_to_hz(midi):
    """MIDI note number -> Hz (the inverse of hz_to_midi); numpy arrays, tensors or floats."""
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)
