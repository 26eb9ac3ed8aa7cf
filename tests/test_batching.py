"""batching.py: long files become 4 s training examples every second (silent and unpitched
windows dropped, every frame of the rest used), short files stay one example, each file has a
sustained listening excerpt, and StepBatches feeds every example once an epoch, in place."""
import math

import numpy as np
import pytest
import torch

from grown_timbres.batching import (EXAMPLE_FRAMES, EXAMPLE_HOP_FRAMES, EXCERPT_FRAMES,
                                    StepBatches, collate, example_starts, file_features,
                                    padded_batch)
from grown_timbres.config import FRAME_RATE, HOP_LENGTH, LOUDNESS_FLOOR_DB, N_MFCC, SAMPLE_RATE
from grown_timbres.features import extract_features, feature_cache_path
from grown_timbres.loss import MultiScaleSpectralLoss, OptimizedMultiScaleSpectralLoss
from grown_timbres.model import DDSPModel
from grown_timbres.resume import resume_training
from grown_timbres.step import make_optimizer
from grown_timbres.train import train

KEYS = ("f0", "voiced", "loudness", "mfcc")


def take(features: list, seconds_of_silence: float = 0.0) -> dict:
    """One long take: the files' features end to end, a silent gap (floor loudness, unvoiced,
    zero audio, the f0 held) of `seconds_of_silence` between each two."""
    gap = int(seconds_of_silence * FRAME_RATE)
    parts = {key: [] for key in (*KEYS, "audio")}
    for i, f in enumerate(features):
        if i and gap:
            parts["f0"].append(np.full(gap, f["f0"][0], np.float32))
            parts["voiced"].append(np.zeros(gap, bool))
            parts["loudness"].append(np.full(gap, LOUDNESS_FLOOR_DB, np.float32))
            parts["mfcc"].append(np.repeat(f["mfcc"][:1], gap, axis=0))
            parts["audio"].append(np.zeros(gap * HOP_LENGTH, np.float32))
        for key in parts:
            parts[key].append(f[key])
    return {"path": "take.wav", **{key: np.concatenate(parts[key]) for key in parts}}


@pytest.mark.parametrize("n_frames", [1, EXAMPLE_FRAMES, EXAMPLE_FRAMES + 1,
                                      EXAMPLE_FRAMES + EXAMPLE_HOP_FRAMES, 5168, 51_680])
def test_windows_cover_every_frame_every_second(n_frames):
    """A file up to one example long is one window of itself; a longer one gets a window every
    EXAMPLE_HOP_FRAMES plus one ending at its end: ceil((n - L) / hop) + 1 windows of L frames
    that together cover every frame (a 60 s take: 58 windows; 10 minutes: 598)."""
    starts = example_starts(n_frames)
    if n_frames <= EXAMPLE_FRAMES:
        assert starts.tolist() == [0]
        return
    assert len(starts) == math.ceil((n_frames - EXAMPLE_FRAMES) / EXAMPLE_HOP_FRAMES) + 1
    assert starts[0] == 0 and starts[-1] + EXAMPLE_FRAMES == n_frames
    assert np.all(np.diff(starts) <= EXAMPLE_HOP_FRAMES) and np.all(np.diff(starts) > 0)
    if n_frames == 5168:
        assert len(starts) == 58
    covered = np.zeros(n_frames, bool)
    for start in starts:
        covered[start: start + EXAMPLE_FRAMES] = True
    assert covered.all()


def test_a_long_take_of_real_tones_becomes_its_windows_and_silence_is_skipped(bundled_features):
    """The 12 bundled tones (2 s each) played one after another with 8 s of silence between
    them (112 s): the windows that fall wholly into a gap are dropped as silent, every other
    window is trained on, and the tones' frames are all used; each example's audio and
    features are the take's own frames."""
    long_take = take(bundled_features, seconds_of_silence=8.0)
    n_frames = len(long_take["f0"])
    batch = collate([long_take])
    source = batch["sources"][0]
    starts = example_starts(n_frames)
    loud = np.array([long_take["loudness"][s: s + EXAMPLE_FRAMES].max() > -60 for s in starts])
    assert source["silent"] == np.sum(~loud) > 0
    assert source["examples"] + source["silent"] + source["unpitched"] == len(starts)
    examples = batch["examples"]
    assert len(examples["starts"]) == source["examples"]
    assert torch.all(examples["lengths"] == EXAMPLE_FRAMES)
    tone_frames = long_take["loudness"] > -60
    assert source["seconds_used"] >= tone_frames.sum() / FRAME_RATE  # no note left out
    assert source["seconds_used"] < n_frames / FRAME_RATE  # and not all the silence
    feed = StepBatches(examples, batch_size=4)
    rows = feed.rows_of(5)
    for row, got in zip(rows.tolist(), feed.load(5)["audio"]):
        start = int(examples["starts"][row])
        np.testing.assert_array_equal(
            got.numpy(), long_take["audio"][start * HOP_LENGTH: (start + EXAMPLE_FRAMES) * HOP_LENGTH])


def test_an_unpitched_stretch_is_dropped_but_not_a_quiet_note(bundled_features):
    """Windows of loud noise (pYIN found no pitch: unvoiced) are dropped as unpitched; a window
    of a soft note, voiced at -50 dB, is kept."""
    tone = bundled_features[0]
    n = 10 * EXAMPLE_FRAMES
    features = {"path": "noise_then_note.wav", "f0": np.full(n, 262.0, np.float32),
                "voiced": np.arange(n) >= n // 2,
                "loudness": np.where(np.arange(n) >= n // 2, -50.0, -20.0).astype(np.float32),
                "mfcc": np.repeat(tone["mfcc"][:1], n, axis=0),
                "audio": np.zeros(n * HOP_LENGTH, np.float32)}
    source = collate([features])["sources"][0]
    assert source["unpitched"] > 0 and source["silent"] == 0
    assert source["seconds_used"] == pytest.approx(n / 2 / FRAME_RATE, abs=EXAMPLE_FRAMES * 0.75 / FRAME_RATE)


def test_short_files_are_one_example_each_and_batch_as_before(bundled_features):
    """The bundled tones (2 s, shorter than an example) are one example each of their own
    length: the one step of all of them is the padded batch of the files, value for value,
    so the bundled tones train exactly as before examples existed."""
    batch = collate(bundled_features[:3])
    assert [s["examples"] for s in batch["sources"]] == [1, 1, 1]
    feed = StepBatches(batch["examples"])
    assert (feed.batch_size, feed.steps_per_epoch, feed.changes) == (3, 1, False)
    expected = padded_batch(bundled_features[:3], HOP_LENGTH)
    for key in ("f0", "loudness", "mfcc", "audio", "voiced", "lengths"):
        value = getattr(expected, key)
        torch.testing.assert_close(feed.batch[key], value, rtol=0, atol=0)
        torch.testing.assert_close(getattr(batch.excerpts, key), value, rtol=0, atol=0)


def test_the_excerpt_is_the_most_sustained_30_seconds(bundled_features):
    """A 64 s take whose first 30 s are silent: its excerpt (what evaluation and growth use)
    is 30 s long and starts where the notes do; a file under 30 s is its own excerpt."""
    silence = {"path": "x", "f0": np.full(2584, 262.0, np.float32), "voiced": np.zeros(2584, bool),
               "loudness": np.full(2584, LOUDNESS_FLOOR_DB, np.float32),
               "mfcc": np.zeros((2584, N_MFCC), np.float32),
               "audio": np.zeros(2584 * HOP_LENGTH, np.float32)}
    notes = take(bundled_features + bundled_features[:5])
    long_take = {key: np.concatenate([silence[key], notes[key]]) for key in (*KEYS, "audio")}
    batch = collate([{"path": "take.wav", **long_take}, bundled_features[0]])
    assert batch["lengths"].tolist() == [EXCERPT_FRAMES, len(bundled_features[0]["f0"])]
    start = round(batch["sources"][0]["excerpt_start_seconds"] * FRAME_RATE)
    assert 2584 - 50 <= start <= 2584 + len(notes["f0"]) - EXCERPT_FRAMES
    got = file_features(batch, 0)
    np.testing.assert_array_equal(got["f0"], long_take["f0"][start: start + EXCERPT_FRAMES])
    assert got["voiced"].mean() > 0.7


def test_every_example_once_an_epoch_in_an_order_that_a_resume_repeats():
    """10 examples, 4 a step: 3 steps an epoch, the last filled from the epoch's start; each
    epoch holds every example, epochs differ in order, and a new StepBatches (a resumed run)
    gives the same rows for the same step. load() writes into the same tensors."""
    n = 10
    examples = collate([{"path": f"{i}.wav", "f0": np.full(20, 100.0 + i, np.float32),
                         "voiced": np.ones(20, bool), "loudness": np.full(20, -20.0, np.float32),
                         "mfcc": np.zeros((20, N_MFCC), np.float32),
                         "audio": np.full(20 * HOP_LENGTH, i / 100, np.float32)}
                        for i in range(n)])["examples"]
    feed = StepBatches(examples, batch_size=4)
    assert (feed.steps_per_epoch, feed.changes) == (3, True)
    tensors = {key: value.data_ptr() for key, value in feed.batch.items()}
    epochs = []
    for epoch in range(2):
        seen = []
        for k in range(3):
            batch = feed.load(epoch * 3 + k)
            assert {key: value.data_ptr() for key, value in batch.items()} == tensors
            seen += (batch["f0"][:, 0, 0] - 100).round().long().tolist()
        assert set(seen[:n]) == set(range(n)) and len(seen) == 12
        epochs.append(seen)
    assert epochs[0] != epochs[1]
    again = StepBatches(examples, batch_size=4)
    assert torch.equal(again.rows_of(4), feed.rows_of(4))


def small_take():
    """Two 2.5 s takes of a two-partial tone: four examples, 2 a step."""
    t = np.arange(int(2.5 * FRAME_RATE) * HOP_LENGTH) / 22050
    files = []
    for i, f0 in enumerate((220.0, 330.0)):
        audio = (0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(4 * np.pi * f0 * t))
        n = len(t) // HOP_LENGTH
        files.append({"path": f"{i}.wav", "f0": np.full(n, f0, np.float32),
                      "voiced": np.ones(n, bool), "loudness": np.full(n, -20.0, np.float32),
                      "mfcc": np.random.default_rng(i).standard_normal((n, N_MFCC)).astype(np.float32),
                      "audio": audio.astype(np.float32)})
    return files


def test_training_in_steps_counts_steps_and_keeps_no_stale_target(monkeypatch):
    """With examples that change every step, the cached-target loss trains exactly like the
    plain loss (a cache keyed by the step's tensor would score later steps against the first
    step's targets), precomputed waves fall back to per-step ones, and 5/3 epochs of 3 steps
    are 5 steps."""
    monkeypatch.setattr("grown_timbres.batching.EXAMPLE_FRAMES", 100)
    monkeypatch.setattr("grown_timbres.batching.EXAMPLE_HOP_FRAMES", 60)
    batch = collate(small_take())
    assert len(batch["examples"]["starts"]) == 6
    curves = []
    for loss in (MultiScaleSpectralLoss(), OptimizedMultiScaleSpectralLoss()):
        torch.manual_seed(0)
        model = DDSPModel(hidden_size=16)
        history = train(model, make_optimizer(model), batch, loss, 5 / 3, batch_size=2,
                        progress=False, precompute_waves=True)
        curves.append(history["loss"])
    assert len(curves[0]) == 5
    assert history["steps_per_epoch"] == 3 and history["examples_per_step"] == 2
    assert history["cached_targets"].startswith("off") and "every step" in history["harmonic_waves"]
    assert curves[0] == curves[1]


def test_a_run_stopped_mid_epoch_resumes_exactly(tmp_path, monkeypatch):
    """Stopped after 4 steps of 3-step epochs (a checkpoint mid-epoch), resumed for the rest:
    the same losses, step for step, as 2 epochs in one go, since each epoch's order is seeded
    by its number."""
    monkeypatch.setattr("grown_timbres.batching.EXAMPLE_FRAMES", 100)
    monkeypatch.setattr("grown_timbres.batching.EXAMPLE_HOP_FRAMES", 60)
    batch = collate(small_take())
    torch.manual_seed(0)
    model = DDSPModel(hidden_size=16)
    straight = train(model, make_optimizer(model), batch, MultiScaleSpectralLoss(), 2,
                     batch_size=2, progress=False)["loss"]
    torch.manual_seed(0)
    model = DDSPModel(hidden_size=16)
    train(model, make_optimizer(model), batch, MultiScaleSpectralLoss(), 4 / 3, batch_size=2,
          progress=False, checkpoint_path=tmp_path / "ck.pt")
    model = DDSPModel(hidden_size=16)
    optimizer = make_optimizer(model)
    history = resume_training(tmp_path / "ck.pt", model, optimizer)
    assert len(history["loss"]) == 4
    from grown_timbres.history import epochs_done

    resumed = train(model, optimizer, batch, MultiScaleSpectralLoss(), 2 - epochs_done(history),
                    batch_size=2, progress=False, history=history)["loss"]
    assert resumed == straight


def test_a_long_file_with_nothing_to_train_on_is_left_out_with_its_reason(bundled_features):
    """A 20 s file of loud unpitched noise (its few voiced frames passed the file's pYIN check)
    gives no window: it is listed as rejected with why, the other files train; alone, it is
    an AudioInputError naming it."""
    from grown_timbres.audio import AudioInputError

    n = int(20 * FRAME_RATE)
    noise = {"path": "noise.wav", "f0": np.full(n, 300.0, np.float32),
             "voiced": np.arange(n) < 10, "loudness": np.full(n, -20.0, np.float32),
             "mfcc": np.zeros((n, N_MFCC), np.float32), "audio": np.zeros(n * HOP_LENGTH, np.float32)}
    with pytest.warns(UserWarning, match="noise.wav: no 4 s stretch to train on"):
        batch = collate([noise, bundled_features[0]])
    assert batch["file_paths"] == [bundled_features[0]["path"]]
    assert "mostly unpitched" in batch["errors"]["noise.wav"]
    with pytest.warns(UserWarning), pytest.raises(AudioInputError, match="noise.wav"):
        collate([noise])


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
    assert len(example_starts(n_frames)) == 6
    assert (source["examples"], source["silent"], source["unpitched"]) == (2, 2, 2)
    assert examples["starts"].tolist() == [0, n_frames - EXAMPLE_FRAMES]
    assert source["file"] == "gap.wav" and source["seconds"] == n_frames / FRAME_RATE
    assert source["seconds_used"] == 2 * EXAMPLE_FRAMES / FRAME_RATE < source["seconds"]
    assert source["excerpt_start_seconds"] == 0.0  # the whole file is its excerpt


@pytest.mark.parametrize("batch_size, message", [
    (2.5, "batch_size must be a whole number, not 2.5"), (0, "batch_size must be at least 1"),
    ("4", r"batch_size must be a whole number, not '4' \(str\)")])
def test_step_batches_refuse_a_batch_size_that_is_not_a_whole_number_of_examples(batch_size,
                                                                                 message):
    examples = collate(small_take())["examples"]
    with pytest.raises(ValueError, match=message):
        StepBatches(examples, batch_size)
    assert StepBatches(examples, 2.0).batch_size == 2


def test_step_batches_refuse_zero_examples():
    examples = collate(small_take())["examples"]
    empty = {**examples, "starts": examples["starts"][:0], "lengths": examples["lengths"][:0]}
    with pytest.raises(ValueError, match="no training examples: StepBatches needs at least one"):
        StepBatches(empty)


def test_collate_of_no_files_says_so():
    from grown_timbres.audio import AudioInputError

    with pytest.raises(AudioInputError, match=r"no usable audio file \(no files given\)"):
        collate([])


def test_a_hop_set_where_the_data_is_made_reaches_the_steps(tmp_path, write_wav_file):
    """Features made with a hop of 128 samples: twice the frames of config's 256 for the same
    audio, cached under their own key and read back; collate carries the hop into the
    TrainingSet and its examples, whose audio is 128 samples a frame; files of two hops are
    refused together."""
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    path = write_wav_file("a3.wav", 0.4 * np.sin(2 * np.pi * 220 * t))
    cache = tmp_path / "cache"
    fine = extract_features(path, cache, hop_length=128)
    assert feature_cache_path(path, cache, 128) != feature_cache_path(path, cache)
    assert feature_cache_path(path, cache, 128).is_file()
    assert fine.hop_length == 128 and len(fine.f0) == len(t) // 128
    assert len(fine.audio) == 128 * len(fine.f0) and fine.mfcc.shape == (len(fine.f0), N_MFCC)
    assert np.median(fine.f0[fine.voiced]) == pytest.approx(220.0, rel=0.01)
    hit = extract_features(path, cache, hop_length=128)
    np.testing.assert_array_equal(hit.mfcc, fine.mfcc)
    batch = collate([fine])
    assert batch.hop_length == batch.examples.hop_length == 128
    assert batch.excerpts.audio.shape == (1, 128 * len(fine.f0))
    assert batch.sources[0]["seconds"] == pytest.approx(len(fine.f0) * 128 / SAMPLE_RATE)
    np.testing.assert_array_equal(StepBatches(batch.examples).batch["audio"][0].numpy(),
                                  fine.audio)
    np.testing.assert_array_equal(file_features(batch, 0).audio, fine.audio)
    with pytest.raises(ValueError, match=r"different \(sample rate, hop\)"):
        collate([fine, extract_features(path)])
