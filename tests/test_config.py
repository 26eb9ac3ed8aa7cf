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
