"""grown_timbres/feature_cache.py (issue 21, classes 1 and 4): nothing in the list of files or in
the cache folder is read before it is known to be a regular file, and no cache entry is
inflated before its sizes and its audio file's digest are checked; an entry must hold its
file's audio."""
import json
import os
import signal
import stat
import warnings
import zipfile

import numpy as np
import pytest

from grown_timbres import feature_cache
from grown_timbres.feature_cache import FEATURE_KEYS, MANIFEST
from grown_timbres.batching import load_multiple_files
from grown_timbres.features import extract_features, feature_cache_path
from test_features import cache_must_hit, manifest_of, old_format, rewrite_entry, short_tone

GIB = 1 << 30


class Hung(BaseException):
    """Not an OSError nor an Exception: no handler in the code under test swallows it."""


@pytest.fixture
def no_hang():
    """A read that waits for ever fails the test after 30 s instead of hanging the run."""
    def hung(*args):
        raise Hung("a read hung")
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def fifo(path):
    os.mkfifo(path)
    return path


# ---------------------------------------------------------- class 1: FIFOs, devices, endless files
@pytest.mark.parametrize("n_workers", [1, 2])
def test_fifos_devices_and_folders_fail_alone_without_hanging(tmp_path, write_wav_file, no_hang,
                                                              n_workers):
    """Issue 21, class 1: with a cache folder, a FIFO (or /dev/zero, which never ends) in the
    list was hashed before anything checked it, and feature extraction hung. Now each is one
    file's error, naming what it is, and the other files carry on."""
    good = short_tone(write_wav_file)
    pipe, folder = fifo(tmp_path / "pipe.wav"), tmp_path / "folder.wav"
    folder.mkdir()
    paths = [pipe, "/dev/zero", folder, good]
    with pytest.warns(UserWarning) as caught:
        batch = load_multiple_files(paths, progress=False, cache_dir=tmp_path / "cache",
                                    n_workers=n_workers)
    assert batch["file_paths"] == [str(good)]
    assert batch["errors"] == {str(pipe): "is a FIFO (named pipe), not a regular file",
                               "/dev/zero": "is a character device, not a regular file",
                               str(folder): "is a folder, not a regular file"}
    assert [str(w.message) for w in caught] == [f"{path}: {reason}"
                                                for path, reason in batch["errors"].items()]


def test_a_fifo_where_a_cache_entry_should_be_is_replaced(tmp_path, write_wav_file, no_hang):
    """A FIFO named as a file's entry used to hang the read; now it is an unusable entry."""
    path, cache = short_tone(write_wav_file), tmp_path / "cache"
    cache.mkdir()
    entry = fifo(feature_cache_path(path, cache))
    with pytest.warns(UserWarning) as caught:
        features = extract_features(path, cache)
    assert [str(w.message) for w in caught] == [
        f"{path}: feature cache entry {entry} is unusable (ValueError: {entry}: cache entry is "
        "a FIFO (named pipe), not a regular file); recomputing and replacing it"]
    assert stat.S_ISREG(entry.stat().st_mode) and len(features["f0"]) == 43


def test_a_fifo_named_as_an_entrys_temporary_file_is_left_alone(tmp_path, write_wav_file,
                                                                no_hang):
    """Writing an entry first removes the temporary files a killed save left; one that is a
    FIFO used to be opened (to test its lock), which waits for a writer."""
    from grown_timbres.files import TEMPORARY_SUFFIX, temp_prefix

    path, cache = short_tone(write_wav_file), tmp_path / "cache"
    cache.mkdir()
    entry = feature_cache_path(path, cache)
    pipe = fifo(cache / f"{temp_prefix(entry)}abcd1234{TEMPORARY_SUFFIX}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        extract_features(path, cache)
    assert entry.is_file() and stat.S_ISFIFO(pipe.stat().st_mode)


# ------------------------------------------------- class 4: checked before inflating, and its audio
def with_declared_size(entry, name, size):
    """The entry with member `name` deflated, its directory record claiming `size` bytes: a zip
    bomb (inflating it would take `size` bytes; only a little is there)."""
    with zipfile.ZipFile(entry) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(entry, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data, zipfile.ZIP_DEFLATED if member == name else None)
    data = bytearray(entry.read_bytes())
    record = data.index(b"PK\x01\x02")  # the central directory's records
    while data[record + 46: record + 46 + len(name)] != name.encode():
        record = data.index(b"PK\x01\x02", record + 4)
    data[record + 24: record + 28] = size.to_bytes(4, "little")  # the uncompressed size
    entry.write_bytes(bytes(data))


def test_a_zip_bomb_entry_is_refused_before_any_member_is_inflated(tmp_path, write_wav_file,
                                                                   monkeypatch):
    """Issue 21, class 4: a small entry whose audio member claims 1.5 GiB used to be inflated
    by np.load. Now its size is compared with the manifest and with what its frames hold
    first, and nothing is inflated."""
    path, cache = short_tone(write_wav_file), tmp_path / "cache"
    extract_features(path, cache)
    entry = feature_cache_path(path, cache)
    with_declared_size(entry, "audio.npy", 3 * GIB // 2)
    assert entry.stat().st_size < GIB // 5000  # 0.2 MiB
    assert zipfile.ZipFile(entry).getinfo("audio.npy").file_size == 3 * GIB // 2
    monkeypatch.setattr(feature_cache, "read_member",
                        lambda *a: pytest.fail("a member was inflated"))
    with pytest.warns(UserWarning) as caught:
        features = extract_features(path, cache)
    size = manifest_of(entry)["sizes"]["audio"]
    assert str(caught[0].message) == (
        f"{path}: feature cache entry {entry} is unusable (ValueError: audio.npy would inflate "
        f"to {3 * GIB // 2} bytes (its manifest says {size}); 43 frames hold {size}); "
        "recomputing and replacing it")
    assert len(caught) == 1 and len(features["f0"]) == 43
    assert zipfile.ZipFile(entry).getinfo("audio.npy").file_size == size  # replaced


def test_another_files_entry_is_refused_and_recomputed(tmp_path, write_wav_file):
    """An entry copied over another file's (renamed into its place) passed every check of its
    own. Now its manifest must name this file's digest."""
    low, high = short_tone(write_wav_file, "low.wav", 220.0), short_tone(write_wav_file)
    cache = tmp_path / "cache"
    extract_features(low, cache)
    want = extract_features(high, cache)
    entry = feature_cache_path(high, cache)
    entry.write_bytes(feature_cache_path(low, cache).read_bytes())
    with pytest.warns(UserWarning, match=r"tone.wav: feature cache entry .* is unusable "
                                         r"\(ValueError: was made from another audio file \(its "
                                         r"manifest names the digest [0-9a-f]{32}, this file's "
                                         r"is [0-9a-f]{32}\)\); recomputing and replacing it"):
        got = extract_features(high, cache)
    np.testing.assert_array_equal(got["f0"], want["f0"])
    assert manifest_of(entry)["digest"].startswith(entry.stem)


def test_a_forged_but_consistent_entry_is_refused_by_its_audio(tmp_path, write_wav_file,
                                                              monkeypatch):
    """Another file's features, with a manifest naming this file's digest and true sizes:
    consistent in every way the entry can tell. Its audio is not this file's, so it is
    refused, and the recomputed entry then hits."""
    low, high = short_tone(write_wav_file, "low.wav", 220.0), short_tone(write_wav_file)
    cache = tmp_path / "cache"
    other = extract_features(low, cache)
    want = extract_features(high, cache)
    entry = feature_cache_path(high, cache)
    rewrite_entry(entry, **{key: other[key] for key in FEATURE_KEYS})
    with pytest.warns(UserWarning) as caught:
        got = extract_features(high, cache)
    assert [str(w.message) for w in caught] == [
        f"{high}: feature cache entry {entry} holds other audio than this file (a forged or "
        "altered entry); recomputing and replacing it"]
    np.testing.assert_array_equal(got["f0"], want["f0"])
    cache_must_hit(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(extract_features(high, cache)["f0"], want["f0"])


@pytest.mark.parametrize("n_workers", [1, 2])
def test_earlier_versions_entries_are_recomputed_with_one_warning(tmp_path, write_wav_file,
                                                                  n_workers):
    """Entries of the previous version (np.savez, no manifest): one warning for the batch,
    naming the cache folder; every entry is rewritten in today's format."""
    cache = tmp_path / "cache"
    paths = [short_tone(write_wav_file, f"tone_{f}.wav", f) for f in (220.0, 330.0, 440.0)]
    load_multiple_files(paths, progress=False, cache_dir=cache, n_workers=1)
    for path in paths:
        old_format(feature_cache_path(path, cache))
    with pytest.warns(UserWarning) as caught:
        batch = load_multiple_files(paths, progress=False, cache_dir=cache, n_workers=n_workers)
    assert [str(w.message) for w in caught] == [
        f"feature cache {cache} holds entries of an earlier version; they are recomputed and "
        "replaced"]
    assert batch["errors"] == {}
    for path in paths:
        with zipfile.ZipFile(feature_cache_path(path, cache)) as archive:
            assert MANIFEST in archive.namelist()
            assert json.loads(archive.read(MANIFEST))["n_frames"] == 43
