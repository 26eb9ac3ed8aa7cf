"""Unusable input raises AudioInputError naming the file and the reason; batches skip it."""
import numpy as np
import pytest
import soundfile as sf
import torch

import ddsp_helpers as dh
from conftest import batch_from_features

SR = dh.SAMPLE_RATE


def _tone(n=SR, amplitude=0.5):
    return (amplitude * np.sin(2 * np.pi * 440 * np.arange(n) / SR)).astype(np.float32)


def make_missing(tmp_path):
    return tmp_path / "missing.wav"


def make_empty(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    return path


def make_text(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are my notes, not audio\n" * 20)
    return path


def make_truncated(tmp_path):
    path = tmp_path / "truncated.wav"
    sf.write(str(path), _tone(), SR, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:20])
    return path


def make_zero_frames(tmp_path):
    path = tmp_path / "zero_frames.wav"
    sf.write(str(path), np.zeros(0, np.float32), SR, subtype="PCM_16")
    assert sf.info(str(path)).frames == 0
    return path


def make_all_zero(tmp_path):
    path = tmp_path / "all_zero.wav"
    sf.write(str(path), np.zeros(SR, np.float32), SR, subtype="PCM_16")
    return path


def make_non_finite(value, index):
    """A maker of a float wav holding `value` (NaN or inf) at sample `index`."""
    def make(tmp_path):
        path = tmp_path / f"{value}.wav"
        data = _tone()
        data[index] = value
        sf.write(str(path), data, SR, subtype="FLOAT")
        return path
    return make


make_nan = make_non_finite(np.nan, 1000)
make_inf = make_non_finite(np.inf, 5000)


def make_too_short(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(str(path), _tone(1000), SR, subtype="PCM_16")
    return path


BAD_FILES = {  # maker, a word the reason must contain
    "missing": (make_missing, "not found"),
    "empty": (make_empty, "empty"),
    "text": (make_text, "not a readable audio file"),
    "truncated": (make_truncated, "not a readable audio file"),
    "zero_frames": (make_zero_frames, "no audio samples"),
    "all_zero": (make_all_zero, "silent"),
    "nan": (make_nan, "NaN"),
    "inf": (make_inf, "infinite"),
    "too_short": (make_too_short, "too short"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
@pytest.mark.parametrize("function", [dh.load_audio, dh.extract_features],
                         ids=["load_audio", "extract_features"])
def test_bad_file_raises_audio_input_error(tmp_path, case, function):
    make, reason = BAD_FILES[case]
    path = make(tmp_path)
    with pytest.raises(dh.AudioInputError) as info:
        function(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert str(path) in str(err) and path.name in str(err)
    assert reason.lower() in str(err).lower(), str(err)
    assert err.path == str(path) and reason.lower() in err.reason.lower()
    print(f"{case}: {err}")


def test_white_noise_has_no_pitch(tmp_path):
    path = tmp_path / "white_noise.wav"
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, SR).astype(np.float32)
    sf.write(str(path), noise, SR, subtype="FLOAT")
    with pytest.raises(dh.AudioInputError, match="no pitched frames") as info:
        dh.extract_features(path)
    assert path.name in str(info.value)


@pytest.mark.parametrize("seed", [1])
def test_white_noise_without_viterbi_voicing_raises(tmp_path, seed):
    """Noise where pYIN's decoder happens to mark no frame voiced: the no-pitch path works."""
    path = tmp_path / "white_noise.wav"
    noise = np.random.default_rng(seed).uniform(-0.5, 0.5, SR).astype(np.float32)
    sf.write(str(path), noise, SR, subtype="FLOAT")
    with pytest.raises(dh.AudioInputError, match="no pitched frames") as info:
        dh.extract_features(path)
    assert str(path) in str(info.value)


def test_load_multiple_files_skips_bad_file(tmp_path, tone_paths, bundled_features):
    """One bad file and two good ones (one cut to 1 s): real extraction, one process."""
    bad = make_text(tmp_path)
    short = tmp_path / "short_A4.wav"
    sf.write(str(short), sf.read(str(tone_paths[9]), dtype="float32")[0][:SR], SR,
             subtype="FLOAT")
    with pytest.warns(UserWarning, match="notes.wav"):
        batch = dh.load_multiple_files([tone_paths[0], bad, short], progress=False, n_workers=1)
    assert batch["file_paths"] == [str(tone_paths[0]), str(short)]
    assert list(batch["errors"]) == [str(bad)]
    assert "not a readable audio file" in batch["errors"][str(bad)]
    n_long, n_short = len(bundled_features[0]["f0"]), SR // dh.HOP_LENGTH
    assert batch["lengths"].tolist() == [n_long, n_short]
    assert batch["f0"].shape == (2, n_long, 1) and batch["mfcc"].shape == (2, n_long, dh.N_MFCC)
    assert batch["audio"].shape == (2, n_long * dh.HOP_LENGTH)
    # the same features as extracted alone, and the padding as documented
    np.testing.assert_array_equal(batch["audio"][0].numpy(), bundled_features[0]["audio"])
    np.testing.assert_array_equal(batch["f0"][0, :, 0].numpy(), bundled_features[0]["f0"])
    assert np.all(batch["audio"][1, n_short * dh.HOP_LENGTH:].numpy() == 0)
    assert np.all(batch["loudness"][1, n_short:].numpy() == dh.LOUDNESS_FLOOR_DB)
    assert np.all(batch["f0"][1, n_short:].numpy() == batch["f0"][1, n_short - 1].numpy())
    assert not batch["voiced"][1, n_short:].any()


def test_audio_input_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(dh.AudioInputError("/data/a.wav", "is silent")))
    assert isinstance(err, dh.AudioInputError)
    assert (err.path, err.reason, str(err)) == ("/data/a.wav", "is silent", "/data/a.wav: is silent")


def test_load_multiple_files_in_worker_processes(tmp_path, tone_paths, bundled_features):
    """The default path (a process pool): bad files are reported from the workers too."""
    bad = make_all_zero(tmp_path)
    with pytest.warns(UserWarning, match="silent"):
        batch = dh.load_multiple_files([bad, tone_paths[1]], progress=False, n_workers=2)
    assert batch["file_paths"] == [str(tone_paths[1])] and list(batch["errors"]) == [str(bad)]
    np.testing.assert_array_equal(batch["f0"][0, :, 0].numpy(), bundled_features[1]["f0"])


def test_load_multiple_files_all_bad_raises(tmp_path):
    paths = [make_empty(tmp_path), make_text(tmp_path), make_missing(tmp_path)]
    with pytest.warns(UserWarning):
        with pytest.raises(dh.AudioInputError) as info:
            dh.load_multiple_files(paths, progress=False, n_workers=1)
    message = str(info.value)
    assert "no usable audio file" in message
    for path in paths:
        assert path.name in message


def test_load_multiple_files_no_files_raises():
    with pytest.raises(dh.AudioInputError, match="no files given"):
        dh.load_multiple_files([], progress=False)


def test_collate_matches_features(bundled_features):
    """Files of different lengths in one batch: each file's valid frames and samples are its
    own features unchanged; beyond them f0 and MFCC hold the last frame, loudness sits at the
    floor, audio is zero and nothing is voiced; lengths count the valid frames."""
    short = dict(bundled_features[2])
    n = 50
    short.update(path=short["path"] + "#short", audio=short["audio"][: n * dh.HOP_LENGTH],
                 **{key: short[key][:n] for key in ("f0", "voiced", "loudness", "mfcc")})
    features = [bundled_features[0], short, bundled_features[1]]
    batch = batch_from_features(features)
    full = len(bundled_features[0]["f0"])
    assert batch["lengths"].tolist() == [full, n, len(bundled_features[1]["f0"])]
    assert batch["errors"] == {} and batch["file_paths"] == [f["path"] for f in features]
    assert batch["f0"].shape == (3, full, 1) and batch["mfcc"].shape == (3, full, dh.N_MFCC)
    assert batch["audio"].shape == (3, full * dh.HOP_LENGTH) and batch["voiced"].shape == (3, full)
    for i, feats in enumerate(features):
        m = len(feats["f0"])
        np.testing.assert_array_equal(batch["f0"][i, :m, 0].numpy(), feats["f0"])
        np.testing.assert_array_equal(batch["loudness"][i, :m, 0].numpy(), feats["loudness"])
        np.testing.assert_array_equal(batch["mfcc"][i, :m].numpy(), feats["mfcc"])
        np.testing.assert_array_equal(batch["voiced"][i, :m].numpy(), feats["voiced"])
        np.testing.assert_array_equal(batch["audio"][i, : m * dh.HOP_LENGTH].numpy(),
                                      feats["audio"])
    assert torch.all(batch["f0"][1, n:, 0] == float(short["f0"][-1]))
    assert torch.all(batch["mfcc"][1, n:] == torch.from_numpy(short["mfcc"][-1]))
    assert torch.all(batch["loudness"][1, n:] == dh.LOUDNESS_FLOOR_DB)
    assert torch.all(batch["audio"][1, n * dh.HOP_LENGTH:] == 0)
    assert not batch["voiced"][1, n:].any()
