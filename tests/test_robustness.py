"""Long runs, uploads and checkpoints: nothing the user made is lost, nothing lands outside its
folder, and a run that goes wrong stops cleanly."""
import warnings

import numpy as np
import pytest
import torch

import ddsp_helpers as dh

FRAMES = 24


@pytest.fixture
def small_batch():
    torch.manual_seed(1)
    t = torch.arange(FRAMES * dh.HOP_LENGTH) / dh.SAMPLE_RATE
    tone = 0.3 * torch.sin(2 * np.pi * 220 * t)
    return {"f0": torch.full((2, FRAMES, 1), 220.0), "loudness": torch.full((2, FRAMES, 1), -20.0),
            "mfcc": torch.randn(2, FRAMES, dh.N_MFCC), "audio": torch.stack([tone, 0.5 * tone]),
            "lengths": torch.tensor([FRAMES, FRAMES - 4])}


def fresh(seed=0, hidden_size=32):
    torch.manual_seed(seed)
    model = dh.DDSPModel(hidden_size=hidden_size)
    return model, dh.make_optimizer(model)


class LossTurningNaN(dh.MultiScaleSpectralLoss):
    """The plain loss, until call `bad_from`, then NaN."""

    def __init__(self, bad_from):
        super().__init__()
        self.calls, self.bad_from = 0, bad_from

    def forward(self, pred, target, lengths=None):
        self.calls += 1
        loss = super().forward(pred, target, lengths)
        return loss * float("nan") if self.calls >= self.bad_from else loss


def test_same_seed_same_loss_curve_on_cpu(small_batch):
    curves = []
    for _ in range(2):
        model, optimizer = fresh()
        history = dh.train(model, optimizer, small_batch, dh.MultiScaleSpectralLoss(), 4,
                           progress=False)
        curves.append(history["loss"])
    assert curves[0] == curves[1]


def test_nan_loss_stops_and_keeps_last_good_weights(small_batch, tmp_path):
    model, optimizer = fresh()
    with pytest.warns(UserWarning, match="loss became nan"):
        history = dh.train(model, optimizer, small_batch, LossTurningNaN(bad_from=4), 10,
                           progress=False, checkpoint_path=tmp_path / "ck.pt")
    assert history["status"].startswith("stopped at epoch 4")
    assert len(history["loss"]) == 3 and all(np.isfinite(history["loss"]))
    assert dh.parameters_finite(model)
    restored, checkpoint = dh.load_checkpoint(tmp_path / "ck.pt")
    assert dh.parameters_finite(restored) and len(checkpoint["history"]["loss"]) == 3


def test_nan_after_a_snapshot_restores_the_snapshot_weights(small_batch):
    """Good weights are copied every SNAPSHOT_EVERY epochs: a NaN at epoch 28 brings back the
    weights of epoch 25 exactly (those of a clean 25-epoch run), not the initial ones, and the
    history keeps the 27 finite losses."""
    assert dh.SNAPSHOT_EVERY == 25
    model, optimizer = fresh(hidden_size=16)
    clean = dh.train(model, optimizer, small_batch, dh.MultiScaleSpectralLoss(), 25,
                     progress=False)
    at_25 = [p.detach().clone() for p in model.parameters()]
    model, optimizer = fresh(hidden_size=16)
    with pytest.warns(UserWarning, match="loss became nan"):
        history = dh.train(model, optimizer, small_batch, LossTurningNaN(bad_from=28), 40,
                           progress=False)
    assert history["status"].startswith("stopped at epoch 28")
    assert "restored from epoch 25" in history["status"]
    assert history["loss"][:25] == clean["loss"] and len(history["loss"]) == 27
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), at_25))


def test_interrupt_leaves_checkpoint_and_history(small_batch, tmp_path):
    class StopButton(dh.MultiScaleSpectralLoss):
        calls = 0

        def forward(self, *args):
            StopButton.calls += 1
            if StopButton.calls == 4:
                raise KeyboardInterrupt
            return super().forward(*args)

    model, optimizer = fresh()
    with pytest.warns(UserWarning, match="interrupted"):
        history = dh.train(model, optimizer, small_batch, StopButton(), 10, progress=False,
                           checkpoint_path=tmp_path / "ck.pt")
    assert history["status"] == "interrupted at epoch 3"
    _, checkpoint = dh.load_checkpoint(tmp_path / "ck.pt")
    assert checkpoint["history"]["loss"] == history["loss"]
    assert not list(tmp_path.glob("*.tmp"))


def test_resume_continues_curve_and_epochs_exactly(small_batch, tmp_path):
    model, optimizer = fresh()
    straight = dh.train(model, optimizer, small_batch, dh.MultiScaleSpectralLoss(), 6,
                        progress=False)["loss"]
    model, optimizer = fresh()
    dh.train(model, optimizer, small_batch, dh.MultiScaleSpectralLoss(), 3, progress=False,
             checkpoint_path=tmp_path / "ck.pt")
    model, optimizer = fresh(seed=123)  # other weights: the checkpoint must replace them
    history = dh.resume_training(tmp_path / "ck.pt", model, optimizer)
    history = dh.train(model, optimizer, small_batch, dh.MultiScaleSpectralLoss(), 3,
                       progress=False, history=history)
    assert history["timed_epochs"][-1] == 6
    np.testing.assert_allclose(history["loss"], straight, rtol=1e-5)


def test_periodic_checkpoints(small_batch, tmp_path):
    model, optimizer = fresh()
    path = tmp_path / "ck.pt"
    seen = []
    original_save = dh.save_checkpoint

    def spy(p, m, **extras):
        seen.append(len(extras["history"]["loss"]))
        return original_save(p, m, **extras)

    dh.save_checkpoint = spy
    try:
        dh.train(model, optimizer, small_batch, dh.MultiScaleSpectralLoss(), 7, progress=False,
                 checkpoint_path=path, checkpoint_every=3)
    finally:
        dh.save_checkpoint = original_save
    assert seen == [3, 6, 7]


def test_gradscaler_skipped_steps_are_counted(small_batch):
    model, optimizer = fresh()
    before = [p.detach().clone() for p in model.parameters()]
    # a loss of ~4 times 2^127, then 2^126, overflows float32: both steps are skipped
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 127)
    history = dh.train(model, optimizer, small_batch, dh.MultiScaleSpectralLoss(), 2,
                       scaler=scaler, progress=False)
    assert history["loss"][0] > 2.0
    assert history["skipped_steps"] == 2
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_checkpoint_with_other_configuration_says_what_differs(tmp_path):
    dh.save_checkpoint(tmp_path / "small.pt", dh.DDSPModel(hidden_size=32))
    with pytest.raises(ValueError, match=r"hidden_size: checkpoint 32, model 64"):
        dh.load_checkpoint(tmp_path / "small.pt", dh.DDSPModel(hidden_size=64))


def test_garbage_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a loadable checkpoint"):
        dh.load_checkpoint(path)


def test_original_and_optimized_checkpoints_load_both_ways(tmp_path):
    """The original notebook saves a plain model; the optimized one a model compiled in place
    (and a user may save a torch.compile wrapper): each loads into the other."""
    torch.manual_seed(0)
    original = dh.DDSPModel(hidden_size=32)
    dh.save_checkpoint(tmp_path / "ddsp_model.pt", original)
    optimized = dh.DDSPModel(hidden_size=32)
    optimized.compile()
    dh.load_checkpoint(tmp_path / "ddsp_model.pt", optimized)
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(),
                                                 optimized.state_dict().values()))
    wrapped = torch.compile(dh.DDSPModel(hidden_size=32))
    dh.save_checkpoint(tmp_path / "ddsp_model_optimized.pt", wrapped)
    plain, _ = dh.load_checkpoint(tmp_path / "ddsp_model_optimized.pt")
    assert set(plain.state_dict()) == set(original.state_dict())


@pytest.mark.parametrize("name, expected", [
    ("../../x.wav", "x.wav"), ("/etc/passwd.wav", "passwd.wav"),
    ("C:\\Users\\me\\tone.wav", "tone.wav"), ("..wav", "wav"), ("my tone (1).wav", "my tone _1_.wav"),
])
def test_upload_names_stay_inside_the_folder(name, expected):
    assert dh.safe_upload_name(name) == expected


def test_unusable_upload_name_is_an_error():
    with pytest.raises(ValueError, match="not a usable file name"):
        dh.safe_upload_name("../..")


def test_uploads_land_in_the_folder_and_same_names_are_kept_apart(tmp_path):
    folder = tmp_path / "uploads"
    colab_style = {"../../x.wav": b"one", "/abs/x.wav": b"two"}
    widget_style = ({"name": "x.wav", "content": memoryview(b"three")},)
    written = dh.save_uploads(colab_style, folder) + dh.save_uploads(widget_style, folder)
    assert [p.name for p in written] == ["x.wav", "x_2.wav", "x_3.wav"]
    assert [p.read_bytes() for p in written] == [b"one", b"two", b"three"]
    assert {p.parent for p in written} == {folder}
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["x.wav", "x_2.wav", "x_3.wav"]


@pytest.mark.parametrize("fmt", ["FLAC", "OGG"])
def test_flac_and_ogg_are_accepted(tmp_path, fmt):
    """The decoded file is the tone that was written: FLAC sample for sample (to 16-bit
    quantisation), OGG (lossy) at the same pitch (1 cent) and level (0.2 dB) and aligned."""
    import soundfile as sf

    from conftest import cents, peak_frequency

    t = np.arange(dh.SAMPLE_RATE) / dh.SAMPLE_RATE
    written = 0.5 * np.sin(2 * np.pi * 330 * t)
    path = tmp_path / f"tone.{fmt.lower()}"
    sf.write(str(path), written, dh.SAMPLE_RATE, format=fmt)
    audio = dh.load_audio(path)
    assert abs(len(audio) - dh.SAMPLE_RATE) < 1024 and np.isfinite(audio).all()
    assert audio.dtype == np.float32 and audio.ndim == 1
    n = min(len(audio), len(written))
    if fmt == "FLAC":
        assert len(audio) == len(written)
        np.testing.assert_allclose(audio, written, atol=1.5 / 32768)
    else:
        middle = slice(2048, n - 2048)
        level = 20 * np.log10(np.std(audio[middle]) / np.std(written[middle]))
        assert abs(level) < 0.2
        assert np.corrcoef(audio[middle], written[middle])[0, 1] > 0.99
    assert abs(cents(peak_frequency(audio[:n], dh.SAMPLE_RATE), 330.0)) < 1


def test_feature_cache_hit_skips_extraction(tmp_path, tone_paths, monkeypatch):
    cache = tmp_path / "cache"
    first = dh.extract_features(tone_paths[0], cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1
    monkeypatch.setattr(dh, "load_audio", lambda *a, **k: pytest.fail("cache missed"))
    copy = tmp_path / "renamed.wav"
    copy.write_bytes(tone_paths[0].read_bytes())
    second = dh.extract_features(copy, cache_dir=cache)
    assert second["path"] == str(copy)
    for key in dh.FEATURE_KEYS:
        np.testing.assert_array_equal(first[key], second[key])


def test_feature_cache_misses_when_a_setting_changes(tmp_path, tone_paths, monkeypatch):
    before = dh.feature_cache_path(tone_paths[0], tmp_path)
    monkeypatch.setitem(dh.FEATURE_SETTINGS, "n_mfcc", 13)
    assert dh.feature_cache_path(tone_paths[0], tmp_path) != before


def test_ten_minute_file_is_capped_with_bounded_memory(tmp_path):
    """Only the first MAX_AUDIO_SECONDS are read: a full read of 10 minutes would allocate
    53 MB of float32 samples."""
    import tracemalloc

    import soundfile as sf

    path = tmp_path / "ten_minutes.wav"
    t = np.arange(600 * dh.SAMPLE_RATE) / dh.SAMPLE_RATE
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), dh.SAMPLE_RATE,
             subtype="PCM_16")
    del t
    tracemalloc.start()
    try:
        with pytest.warns(UserWarning, match="600.0 s long; only the first 30 s are used"):
            audio = dh.load_audio(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(audio) == dh.MAX_AUDIO_SECONDS * dh.SAMPLE_RATE
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MB"
