"""grown_timbres/features.py: one file's Features (the analysis of analysis.py, the data's
hop), read by their old keys too; the feature cache; many files at once, in workers."""
import json
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from grown_timbres.audio import AudioInputError
from grown_timbres.config import HOP_LENGTH, LOUDNESS_FLOOR_DB, N_MFCC, SAMPLE_RATE
from grown_timbres import features as features_module
from grown_timbres.analysis import F0_MAX_HZ, F0_MIN_HZ
from grown_timbres.features import (FEATURE_SETTINGS, Features, extract_features,
                                    feature_cache_path, read_cache_entry)
from grown_timbres.batching import file_features, load_multiple_files
from grown_timbres.feature_cache import FEATURE_KEYS, MANIFEST, file_digest
from conftest import (batch_from_features, make_all_zero, make_empty, make_missing,
                      make_text)


SR = SAMPLE_RATE


def test_feature_shapes_and_dtypes(bundled_features, tone_paths):
    """Every bundled tone: audio is the wav's 16-bit samples / 32768, cut to whole frames; one
    feature frame per HOP_LENGTH samples, float32 and finite; f0 in range, loudness above the
    floor and, for these tones played mezzo-forte, between -45 and -5 dB in their voiced
    middle."""
    import soundfile as sf

    for path, feats in zip(tone_paths, bundled_features):
        n_frames = len(feats["f0"])
        samples, rate = sf.read(str(path), dtype="int16")
        assert rate == SAMPLE_RATE and n_frames == len(samples) // HOP_LENGTH
        np.testing.assert_array_equal(feats["audio"], samples[: n_frames * HOP_LENGTH] / 32768.0)
        assert feats["audio"].shape == (n_frames * HOP_LENGTH,)
        assert feats["voiced"].shape == (n_frames,) and feats["voiced"].dtype == bool
        assert feats["loudness"].shape == (n_frames,)
        assert feats["mfcc"].shape == (n_frames, N_MFCC)
        for key in ("audio", "f0", "loudness", "mfcc"):
            assert feats[key].dtype == np.float32, key
            assert np.all(np.isfinite(feats[key])), key
        assert np.all(feats["f0"] >= F0_MIN_HZ) and np.all(feats["f0"] <= F0_MAX_HZ)
        assert np.all(feats["loudness"] >= LOUDNESS_FLOOR_DB)
        voiced_loudness = feats["loudness"][feats["voiced"]]
        assert -45 < np.median(voiced_loudness) < -5, np.median(voiced_loudness)


def test_white_noise_has_no_pitch(tmp_path):
    path = tmp_path / "white_noise.wav"
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, SR).astype(np.float32)
    sf.write(str(path), noise, SR, subtype="FLOAT")
    with pytest.raises(AudioInputError, match="no pitched frames") as info:
        extract_features(path)
    assert path.name in str(info.value)


@pytest.mark.parametrize("seed", [1])
def test_white_noise_without_viterbi_voicing_raises(tmp_path, seed):
    """Noise where pYIN's decoder happens to mark no frame voiced: the no-pitch path works."""
    path = tmp_path / "white_noise.wav"
    noise = np.random.default_rng(seed).uniform(-0.5, 0.5, SR).astype(np.float32)
    sf.write(str(path), noise, SR, subtype="FLOAT")
    with pytest.raises(AudioInputError, match="no pitched frames") as info:
        extract_features(path)
    assert str(path) in str(info.value)


def test_features_read_by_their_old_keys(bundled_features):
    """extract_features gives a Features that reads as the dict it replaced: features["f0"],
    `in`, ** (older code copies and edits features so); a key it never had raises a KeyError
    naming the fields; from_mapping makes one from such a dict, with config's hop when the
    dict has none."""
    features = bundled_features[0]
    assert isinstance(features, Features)
    assert (features.sample_rate, features.hop_length) == (SAMPLE_RATE, HOP_LENGTH)
    assert features["f0"] is features.f0 and features["path"] == features.path
    assert set(features) == {"path", "audio", "f0", "voiced", "loudness", "mfcc"}  # the dict's
    edited = Features.from_mapping({**features, "f0": features.f0 * np.float32(2)})
    assert edited.f0[0] == 2 * features.f0[0] and edited.mfcc is features.mfcc
    with pytest.raises(KeyError, match=r"Features has no key 'pitch'.*\.f0, \.voiced"):
        features["pitch"]
    old = {key: features[key] for key in ("path", "audio", "f0", "voiced", "loudness", "mfcc")}
    assert Features.from_mapping(old).hop_length == HOP_LENGTH
    assert Features.from_mapping(features) is features


def cache_must_hit(monkeypatch):
    """A hit still reads the audio (the entry's must be the file's), but never runs pYIN."""
    monkeypatch.setattr(features_module, "estimate_f0",
                        lambda *a, **k: pytest.fail("cache missed"))


def test_feature_cache_hit_skips_extraction(tmp_path, tone_paths, monkeypatch):
    cache = tmp_path / "cache"
    first = extract_features(tone_paths[0], cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1
    cache_must_hit(monkeypatch)
    copy = tmp_path / "renamed.wav"
    copy.write_bytes(tone_paths[0].read_bytes())
    second = extract_features(copy, cache_dir=cache)
    assert second["path"] == str(copy)
    for key in FEATURE_KEYS:
        np.testing.assert_array_equal(first[key], second[key])


def test_feature_cache_misses_when_a_setting_changes(tmp_path, tone_paths, monkeypatch):
    before = feature_cache_path(tone_paths[0], tmp_path)
    monkeypatch.setitem(FEATURE_SETTINGS, "n_mfcc", 13)
    assert feature_cache_path(tone_paths[0], tmp_path) != before


def test_load_multiple_files_skips_bad_file(tmp_path, tone_paths, bundled_features):
    """One bad file and two good ones (one cut to 1 s): real extraction, one process."""
    bad = make_text(tmp_path)
    short = tmp_path / "short_A4.wav"
    sf.write(str(short), sf.read(str(tone_paths[9]), dtype="float32")[0][:SR], SR,
             subtype="FLOAT")
    with pytest.warns(UserWarning, match="notes.wav"):
        batch = load_multiple_files([tone_paths[0], bad, short], progress=False, n_workers=1)
    assert batch["file_paths"] == [str(tone_paths[0]), str(short)]
    assert list(batch["errors"]) == [str(bad)]
    assert "not a readable audio file" in batch["errors"][str(bad)]
    n_long, n_short = len(bundled_features[0]["f0"]), SR // HOP_LENGTH
    assert batch["lengths"].tolist() == [n_long, n_short]
    assert batch["f0"].shape == (2, n_long, 1) and batch["mfcc"].shape == (2, n_long, N_MFCC)
    assert batch["audio"].shape == (2, n_long * HOP_LENGTH)
    # the same features as extracted alone, and the padding as documented
    np.testing.assert_array_equal(batch["audio"][0].numpy(), bundled_features[0]["audio"])
    np.testing.assert_array_equal(batch["f0"][0, :, 0].numpy(), bundled_features[0]["f0"])
    assert np.all(batch["audio"][1, n_short * HOP_LENGTH:].numpy() == 0)
    assert np.all(batch["loudness"][1, n_short:].numpy() == LOUDNESS_FLOOR_DB)
    assert np.all(batch["f0"][1, n_short:].numpy() == batch["f0"][1, n_short - 1].numpy())
    assert not batch["voiced"][1, n_short:].any()


def test_load_multiple_files_in_worker_processes(tmp_path, tone_paths, bundled_features):
    """The default path (a process pool): bad files are reported from the workers too."""
    bad = make_all_zero(tmp_path)
    with pytest.warns(UserWarning, match="silent"):
        batch = load_multiple_files([bad, tone_paths[1]], progress=False, n_workers=2)
    assert batch["file_paths"] == [str(tone_paths[1])] and list(batch["errors"]) == [str(bad)]
    np.testing.assert_array_equal(batch["f0"][0, :, 0].numpy(), bundled_features[1]["f0"])


def test_load_multiple_files_all_bad_raises(tmp_path):
    paths = [make_empty(tmp_path), make_text(tmp_path), make_missing(tmp_path)]
    with pytest.warns(UserWarning):
        with pytest.raises(AudioInputError) as info:
            load_multiple_files(paths, progress=False, n_workers=1)
    message = str(info.value)
    assert "no usable audio file" in message
    for path in paths:
        assert path.name in message


def test_load_multiple_files_no_files_raises():
    with pytest.raises(AudioInputError, match="no files given"):
        load_multiple_files([], progress=False)


def test_collate_matches_features_and_file_features_undoes_it(bundled_features):
    """Files of different lengths in one batch: each file's valid frames and samples are its
    own features unchanged, and file_features gives them back; beyond them f0 and MFCC hold the last frame, loudness sits at the
    floor, audio is zero and nothing is voiced; lengths count the valid frames."""
    short = dict(bundled_features[2])
    n = 50
    short.update(path=short["path"] + "#short", audio=short["audio"][: n * HOP_LENGTH],
                 **{key: short[key][:n] for key in ("f0", "voiced", "loudness", "mfcc")})
    features = [bundled_features[0], short, bundled_features[1]]
    batch = batch_from_features(features)
    full = len(bundled_features[0]["f0"])
    assert batch["lengths"].tolist() == [full, n, len(bundled_features[1]["f0"])]
    assert batch["errors"] == {} and batch["file_paths"] == [f["path"] for f in features]
    assert batch["f0"].shape == (3, full, 1) and batch["mfcc"].shape == (3, full, N_MFCC)
    assert batch["audio"].shape == (3, full * HOP_LENGTH) and batch["voiced"].shape == (3, full)
    for i, feats in enumerate(features):
        m = len(feats["f0"])
        np.testing.assert_array_equal(batch["f0"][i, :m, 0].numpy(), feats["f0"])
        np.testing.assert_array_equal(batch["loudness"][i, :m, 0].numpy(), feats["loudness"])
        np.testing.assert_array_equal(batch["mfcc"][i, :m].numpy(), feats["mfcc"])
        np.testing.assert_array_equal(batch["voiced"][i, :m].numpy(), feats["voiced"])
        np.testing.assert_array_equal(batch["audio"][i, : m * HOP_LENGTH].numpy(),
                                      feats["audio"])
        back = file_features(batch, i)  # and each file comes back out as it went in
        assert back["path"] == feats["path"]
        for key in FEATURE_KEYS:
            assert back[key].dtype == feats[key].dtype
            np.testing.assert_array_equal(back[key], feats[key])
    assert torch.all(batch["f0"][1, n:, 0] == float(short["f0"][-1]))
    assert torch.all(batch["mfcc"][1, n:] == torch.from_numpy(short["mfcc"][-1]))
    assert torch.all(batch["loudness"][1, n:] == LOUDNESS_FLOOR_DB)
    assert torch.all(batch["audio"][1, n * HOP_LENGTH:] == 0)
    assert not batch["voiced"][1, n:].any()


# ---------------------------------------------- issue 14, item 1: long files, features in chunks
def test_long_file_cache_entry_round_trips(tmp_path, write_wav_file, monkeypatch):
    """A 2-minute file (beyond the old 30 s cut) is kept whole, and its cache entry passes
    read_cache_entry and is hit next time. pYIN is replaced by a steady 220 Hz: it is slow."""
    t = np.arange(120 * SR) / SR
    path = write_wav_file("two_minutes.wav", 0.3 * np.sin(2 * np.pi * 220 * t), SR, "PCM_16")
    features_module.compile_feature_kernels()  # before pYIN is replaced: it runs pYIN once
    monkeypatch.setattr(features_module, "estimate_f0", lambda audio, path, **options: (
        np.full(len(audio) // HOP_LENGTH, 220.0, np.float32),
        np.ones(len(audio) // HOP_LENGTH, bool)))
    cache = tmp_path / "cache"
    fresh = extract_features(path, cache)
    assert len(fresh["audio"]) == len(t) // HOP_LENGTH * HOP_LENGTH
    entry = feature_cache_path(path, cache)
    settings = json.dumps(FEATURE_SETTINGS, sort_keys=True)
    stored = read_cache_entry(entry, file_digest(path, settings), HOP_LENGTH)
    cache_must_hit(monkeypatch)
    hit = extract_features(path, cache)
    for key in FEATURE_KEYS:
        np.testing.assert_array_equal(stored[key], fresh[key])
        np.testing.assert_array_equal(hit[key], fresh[key])


# ------------------------------------------ issue 13, class 2: the cache is only an optimization
def short_tone(write_wav_file, name="tone.wav", freq=330.0):
    """A 0.5 s sine file (pYIN on it is quick); different `freq`, different bytes and entry."""
    t = np.arange(SR // 2) / SR
    return write_wav_file(name, 0.4 * np.sin(2 * np.pi * freq * t))


def stored_arrays(entry) -> dict:
    """Every .npy member of an entry, read as numpy reads it."""
    import zipfile

    with zipfile.ZipFile(entry) as archive:
        return {name[:-4]: np.load(archive.open(name), allow_pickle=True)
                for name in archive.namelist() if name.endswith(".npy")}


def manifest_of(entry) -> dict:
    import zipfile

    with zipfile.ZipFile(entry) as archive:
        return json.loads(archive.read(MANIFEST))


def rewrite_entry(entry, manifest_changes=None, **changes):
    """Rewrite a cache entry with some arrays replaced, or dropped where the value is None; the
    manifest is rewritten with it (sizes of the arrays written) and then `manifest_changes`."""
    import zipfile

    arrays, manifest = stored_arrays(entry), manifest_of(entry)
    for key, value in changes.items():
        arrays.pop(key) if value is None else arrays.__setitem__(key, value)
    with zipfile.ZipFile(entry, "w") as archive:
        for key, array in arrays.items():
            with archive.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=True)
            manifest["sizes"][key] = archive.getinfo(f"{key}.npy").file_size
        for field, value in (manifest_changes or {}).items():  # sizes: only those named
            manifest[field] = {**manifest[field], **value} if field == "sizes" else value
        archive.writestr(MANIFEST, json.dumps(manifest))


def changed(key, change):
    """A damage that rewrites one array of the entry as change(array)."""
    def damage(entry):
        rewrite_entry(entry, **{key: change(stored_arrays(entry)[key].copy())})
    return damage


def nan_at(index):
    def change(array):
        array[index] = np.nan
        return array
    return change


def other_settings(entry):
    rewrite_entry(entry, {"settings": json.dumps({**FEATURE_SETTINGS, "n_mfcc": 13},
                                                 sort_keys=True)})


def old_format(entry):
    """The entry as the previous version wrote it: np.savez of the settings and the arrays."""
    arrays = stored_arrays(entry)
    with open(entry, "wb") as file:
        np.savez(file, settings=np.array(json.dumps(FEATURE_SETTINGS, sort_keys=True)), **arrays)


def fortran_mfcc(entry):
    """The entry with its mfcc member written in Fortran order (the same bytes' count)."""
    import io
    import zipfile

    with zipfile.ZipFile(entry) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(entry, "w") as archive:
        for name, data in members.items():
            if name == "mfcc.npy":
                with archive.open(name, "w") as member:
                    np.lib.format.write_array(member, np.asfortranarray(
                        np.load(io.BytesIO(data))))
            else:
                archive.writestr(name, data)


def broken_directory(entry):
    """The entry with the last record of its zip directory zeroed (its end record kept)."""
    data = entry.read_bytes()
    entry.write_bytes(data[:-60] + bytes(38) + data[-22:])


NO_DIRECTORY = "is no cache entry: it does not end with a zip directory"
DAMAGED_ENTRIES = {  # damage(entry), what the warning must say is wrong
    "truncated": (lambda e: e.write_bytes(e.read_bytes()[: e.stat().st_size // 2]), NO_DIRECTORY),
    "empty": (lambda e: e.write_bytes(b""), NO_DIRECTORY),
    "garbage": (lambda e: e.write_bytes(bytes(range(256)) * 40), NO_DIRECTORY),
    "single_array": (lambda e: np.save(e.open("wb"), np.zeros(3)), NO_DIRECTORY),
    "directory_cut": (lambda e: e.write_bytes(e.read_bytes()[:-30]), NO_DIRECTORY),
    "broken_directory": (broken_directory, "BadZipFile"),
    "many_members": (lambda e: e.write_bytes(zip_of({f"{i}.npy": b"" for i in range(1000)})),
                     "lists 1000 members; an entry has 6"),
    "short_f0": (changed("f0", lambda a: a[:10]), "f0.npy would inflate to 168 bytes (its "
                                                  "manifest says 168); 43 frames hold 300"),
    "f0_lies_about_its_size": (lambda e: rewrite_entry(e, {"sizes": {"f0": 300}},
                                                       f0=np.zeros(10, np.float32)),
                               "f0.npy would inflate to 168 bytes (its manifest says 300); 43 "
                               "frames hold 300"),
    "float64_loudness": (changed("loudness", lambda a: a.astype(np.float64)),
                         "loudness.npy would inflate to 472 bytes"),
    "voiced_as_uint8": (changed("voiced", lambda a: a.astype(np.uint8)),
                        "voiced is uint8 [43], expected bool [43]"),
    "mfcc_flat": (changed("mfcc", lambda a: a.reshape(-1)), "mfcc is float32 [860], expected "
                                                            "float32 [43, 20]"),
    "mfcc_fortran_order": (fortran_mfcc,
                           "mfcc is float32 [43, 20] in Fortran order, expected float32 [43, 20]"),
    "nan_mfcc": (changed("mfcc", nan_at((5, 3))),
                 "mfcc has 1 values that are NaN, infinite or outside [-10000, 10000]"),
    "nan_f0": (changed("f0", nan_at(7)), "f0 has 1 values that are NaN"),
    "huge_loudness": (changed("loudness", lambda a: a + 1e30), "loudness has 43 values"),
    "audio_beyond_full_scale": (changed("audio", lambda a: 3 * a), "audio has"),
    "too_few_frames": (lambda e: rewrite_entry(e, {"n_frames": 2}), "claims 2 frames; a file "
                                                                    "has 8 to 155039"),
    "no_voiced_frame": (changed("voiced", np.zeros_like), "has no voiced frame"),
    "missing_key": (lambda e: rewrite_entry(e, voiced=None), "lacks voiced.npy"),
    "extra_member": (lambda e: rewrite_entry(e, script=np.zeros(1)), "lists 7 members; an entry "
                                                                     "has 6"),
    "member_renamed": (lambda e: rewrite_entry(e, voiced=None, script=np.zeros(1)),
                       "lacks voiced.npy"),
    "no_manifest": (lambda e: e.write_bytes(zip_of({"f0.npy": b"x"})), "lacks manifest.json"),
    "manifest_not_an_object": (lambda e: e.write_bytes(zip_of({MANIFEST: b"[1]"})),
                               "manifest.json lacks one of digest"),
    "other_settings": (other_settings, "was made with other feature settings"),
    "pickled_object": (changed("mfcc", lambda a: np.array([a, "x"], dtype=object)),
                       "mfcc.npy would inflate to"),
}


def zip_of(members: dict) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("case", list(DAMAGED_ENTRIES))
def test_damaged_cache_entry_is_recomputed_and_replaced(tmp_path, write_wav_file, monkeypatch,
                                                        case):
    """Issue 13, class 2: a bad entry used to kill every run (BadZipFile, EOFError, KeyError,
    naming neither file) or to be trained on (10 frames of f0 for 43 of audio). Now the warning
    names the audio file, the entry and what is wrong; the features are recomputed, the entry
    is replaced, and the next run hits it."""
    damage, reason = DAMAGED_ENTRIES[case]
    path, cache = short_tone(write_wav_file), tmp_path / "cache"
    fresh = extract_features(path, cache)
    entry = feature_cache_path(path, cache)
    assert len(fresh["f0"]) == 43 and sorted(cache.iterdir()) == [entry]
    damage(entry)
    with pytest.warns(UserWarning) as caught:
        again = extract_features(path, cache)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert messages[0].startswith(f"{path}: feature cache entry {entry} is unusable (")
    assert messages[0].endswith("); recomputing and replacing it") and reason in messages[0]
    print(f"{case}: {messages[0]}")
    for key in FEATURE_KEYS:
        np.testing.assert_array_equal(again[key], fresh[key])
    assert sorted(cache.iterdir()) == [entry]  # replaced in place, nothing left beside it
    cache_must_hit(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hit = extract_features(path, cache)
    for key in FEATURE_KEYS:
        np.testing.assert_array_equal(hit[key], fresh[key])


def test_damaged_entries_do_not_stop_a_batch_in_workers(tmp_path, write_wav_file):
    """The batch path, in worker processes: the warning comes back from the worker that
    recomputed the entry, and every file is in the batch."""
    cache = tmp_path / "cache"
    paths = [short_tone(write_wav_file, f"tone_{f}.wav", f) for f in (220.0, 330.0, 440.0)]
    extract_features(paths[0], cache)
    entry = feature_cache_path(paths[0], cache)
    entry.write_bytes(entry.read_bytes()[:100])
    with pytest.warns(UserWarning) as caught:
        batch = load_multiple_files(paths, progress=False, cache_dir=cache, n_workers=2)
    assert batch["file_paths"] == [str(p) for p in paths] and batch["errors"] == {}
    assert [str(w.message).split(" (")[0] for w in caught] == [
        f"{paths[0]}: feature cache entry {entry} is unusable"]
    assert len(list(cache.glob("*.npz"))) == 3 and not list(cache.glob(".*"))


def failing_writes(monkeypatch, error_number):
    """Cache writes fail as on a read-only file system (no temporary file can be made) or a
    full disk (half the entry is written, then ENOSPC)."""
    import errno
    import os

    error = OSError(error_number, os.strerror(error_number))
    if error_number == errno.EROFS:
        def refuse(*args, **kwargs):
            raise error
        monkeypatch.setattr("grown_timbres.files.tempfile.mkstemp", refuse)
    else:
        def half_written(tmp, *args):
            with open(tmp, "wb") as file:
                file.write(b"PK\x03\x04 half an entry")
            raise error
        monkeypatch.setattr(features_module, "write_entry", half_written)


@pytest.mark.parametrize("n_workers", [1, 2])
@pytest.mark.parametrize("error_name", ["EROFS", "ENOSPC"])
def test_unwritable_cache_warns_once_and_keeps_the_features(tmp_path, write_wav_file,
                                                            monkeypatch, error_name, n_workers):
    """Issue 13, class 2: a read-only or full cache folder used to throw away features already
    computed. Now one warning for the whole batch (also from worker processes), every file's
    features, no partial entry."""
    import errno
    import os

    cache = tmp_path / "cache"
    cache.mkdir()
    paths = [short_tone(write_wav_file, f"tone_{f}.wav", f) for f in (220.0, 330.0, 440.0)]
    failing_writes(monkeypatch, getattr(errno, error_name))
    with pytest.warns(UserWarning) as caught:
        batch = load_multiple_files(paths, progress=False, cache_dir=cache, n_workers=n_workers)
    reason = os.strerror(getattr(errno, error_name))
    assert [str(w.message) for w in caught] == [
        f"feature cache {cache} cannot be written ({reason}); features are computed without it"]
    assert batch["file_paths"] == [str(p) for p in paths] and batch["errors"] == {}
    assert list(cache.iterdir()) == []  # no entry, no temporary file
    monkeypatch.undo()  # the disk has room again: the next run fills the cache
    load_multiple_files(paths, progress=False, cache_dir=cache, n_workers=1)
    assert len(list(cache.iterdir())) == 3


def test_read_only_cache_still_serves_its_entries(tmp_path, write_wav_file, monkeypatch):
    import errno

    path, cache = short_tone(write_wav_file), tmp_path / "cache"
    fresh = extract_features(path, cache)
    failing_writes(monkeypatch, errno.EROFS)
    cache_must_hit(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hit = extract_features(path, cache)
    np.testing.assert_array_equal(hit["mfcc"], fresh["mfcc"])


def test_cache_folder_that_is_a_file_degrades_to_no_cache(tmp_path, write_wav_file):
    path, cache = short_tone(write_wav_file), tmp_path / "cache"
    cache.write_text("not a folder")
    with pytest.warns(UserWarning, match=rf"^feature cache {cache} cannot be written \(File "
                                         r"exists\); features are computed without it$"):
        features = extract_features(path, cache)
    assert len(features["f0"]) == 43 and cache.read_text() == "not a folder"


def test_unreadable_file_fails_alone_while_the_batch_goes_on(tmp_path, write_wav_file,
                                                              monkeypatch):
    """Issue 13, class 2: an unreadable file used to raise PermissionError while the cache
    entries were looked up, before any worker started. Now it is one file's error."""
    from test_audio import locked

    paths = [short_tone(write_wav_file, f"tone_{f}.wav", f) for f in (220.0, 330.0, 440.0)]
    locked(monkeypatch, paths[1])
    with pytest.warns(UserWarning, match="cannot be read"):
        batch = load_multiple_files(paths, progress=False, cache_dir=tmp_path / "cache",
                                    n_workers=2)
    assert batch["file_paths"] == [str(paths[0]), str(paths[2])]
    assert batch["errors"] == {str(paths[1]): "cannot be read (Permission denied)"}
