"""grown_timbres/batching.py: a long file's training examples and listening excerpt."""
import numpy as np

from grown_timbres.batching import EXAMPLE_FRAMES, collate, example_starts
from grown_timbres.config import FRAME_RATE, SAMPLE_RATE
from grown_timbres.features import extract_features


def test_silent_stretch_of_a_file_is_not_trained_on(write_wav_file):
    """330 Hz for 1.7 s, 5.5 s of silence, 440 Hz for 1.7 s, through extract_features: the
    tones stay voiced and the silence is not. Of its six windows collate keeps the first and
    the last (42% voiced), drops the two within the silence as silent and the two that hold a
    little of a tone (under 20% voiced) as unpitched, and its sources say so."""
    t = np.arange(int(1.7 * SAMPLE_RATE)) / SAMPLE_RATE
    audio = np.concatenate([0.4 * np.sin(2 * np.pi * 330 * t), np.zeros(int(5.5 * SAMPLE_RATE)),
                            0.4 * np.sin(2 * np.pi * 440 * t)])
    features = extract_features(write_wav_file("gap.wav", audio))
    voiced, frame = features["voiced"], lambda seconds: int(seconds * FRAME_RATE)
    assert voiced[frame(0.1): frame(1.6)].all() and voiced[frame(7.3): frame(8.8)].all()
    assert not voiced[frame(1.8): frame(7.1)].any()
    batch = collate([features])
    source, examples = batch["sources"][0], batch["examples"]
    n_frames = len(features["f0"])
    print(source)
    assert len(example_starts(n_frames)) == 6
    assert (source["examples"], source["silent"], source["unpitched"]) == (2, 2, 2)
    assert examples["starts"].tolist() == [0, n_frames - EXAMPLE_FRAMES]
    assert source["file"] == "gap.wav" and source["seconds"] == n_frames / FRAME_RATE
    assert source["seconds_used"] == 2 * EXAMPLE_FRAMES / FRAME_RATE < source["seconds"]
    assert source["excerpt_start_seconds"] == 0.0  # the whole file is its excerpt
