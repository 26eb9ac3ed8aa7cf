"""grown_timbres/pitch.py: MIDI note numbers and Hz, for numpy, torch and floats alike."""
import numpy as np
import pytest
import torch

from grown_timbres.pitch import hz_to_midi, midi_to_hz


def test_hz_to_midi_numpy_and_torch():
    assert hz_to_midi(np.float64(440.0)) == pytest.approx(69.0)
    assert hz_to_midi(np.array([261.6256]))[0] == pytest.approx(60.0, abs=1e-3)
    assert torch.allclose(hz_to_midi(torch.tensor([220.0, 880.0])), torch.tensor([57.0, 81.0]))


def test_midi_to_hz_inverts_hz_to_midi():
    assert midi_to_hz(69) == 440.0 and midi_to_hz(np.float64(57.0)) == pytest.approx(220.0)
    midi = np.array([0.0, 60.0, 69.5, 127.0])
    np.testing.assert_allclose(hz_to_midi(midi_to_hz(midi)), midi, rtol=0, atol=1e-9)
    tensor = torch.tensor([21.0, 108.0], dtype=torch.float64)
    torch.testing.assert_close(hz_to_midi(midi_to_hz(tensor)), tensor)
