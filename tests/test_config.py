"""grown_timbres/config.py: one sample rate and one hop, which every stage takes from here."""
from grown_timbres.audio import MIN_AUDIO_SAMPLES
from grown_timbres.config import FFT_SIZES, FRAME_RATE, HOP_LENGTH, N_MFCC, SAMPLE_RATE
from grown_timbres.features import FEATURE_SETTINGS
from grown_timbres.model import DDSPModel


def test_every_stage_takes_its_rate_and_hop_from_config():
    assert FRAME_RATE == SAMPLE_RATE / HOP_LENGTH
    assert (FEATURE_SETTINGS["sample_rate"], FEATURE_SETTINGS["hop_length"]) == (SAMPLE_RATE,
                                                                                HOP_LENGTH)
    assert FEATURE_SETTINGS["n_mfcc"] == N_MFCC
    config = DDSPModel(hidden_size=8).config
    assert (config["sample_rate"], config["hop_length"], config["n_mfcc"]) == (SAMPLE_RATE,
                                                                              HOP_LENGTH, N_MFCC)


def test_the_shortest_file_fills_the_largest_loss_frame():
    assert MIN_AUDIO_SAMPLES == max(FFT_SIZES)
    assert all(n_fft % 4 == 0 for n_fft in FFT_SIZES)  # loss hop = n_fft / 4


def test_checked_number_takes_real_numbers_and_names_what_it_refuses():
    import math

    import numpy as np
    import pytest

    from grown_timbres.config import checked_number

    assert checked_number("n", np.float32(2.0), whole=True) == 2
    assert type(checked_number("n", np.int64(3), whole=True)) is int
    assert checked_number("x", 0.5, at_least=0) == 0.5
    for value, message in [(True, r"x must be a number, not True \(bool\)"),
                           ("1", r"x must be a number, not '1' \(str\)"),
                           ([1], r"x must be a number, not \[1\] \(list\)"),
                           (math.nan, "x must be a finite number, not nan"),
                           (-math.inf, "x must be a finite number, not -inf"),
                           (-1, "x must be at least 0, not -1")]:
        with pytest.raises(ValueError, match=message):
            checked_number("x", value, at_least=0)
    with pytest.raises(ValueError, match="n must be a whole number, not 2.5"):
        checked_number("n", 2.5, whole=True)
    with pytest.raises(ValueError, match="x must be more than 0, not 0"):
        checked_number("x", 0, above=0)
