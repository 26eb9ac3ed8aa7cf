"""grown_timbres/worker_pool.py and the stop button during feature extraction (issue 21, class
3): with the worker pool a stop used to wait until every queued file was done (44 s for six
20 s files), and with one worker it surfaced as numba's SystemError. Now the workers end at
once, the features already cached are kept, and the KeyboardInterrupt says how many."""
import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest

from grown_timbres import features as features_module
from grown_timbres.batching import load_multiple_files
from grown_timbres.features import stopped_message
from grown_timbres.worker_pool import run_here
from test_features import short_tone
from test_long_runs import python_sigint_handler  # noqa: F401 (a fixture)


def press_stop_when_an_entry_is_written(cache):
    """The stop button, pressed from another thread once the first cache entry is in place."""
    def press():
        while not list(cache.glob("*.npz")):
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=press, daemon=True).start()


def slow_for(name, seconds, monkeypatch):
    """pYIN that takes `seconds` more for files whose name contains `name` (workers fork and
    inherit it): without a working stop, the call would wait for them."""
    real = features_module.estimate_f0

    def estimate_f0(audio, path="<audio>", **options):
        if name in str(path):
            time.sleep(seconds)
        return real(audio, path, **options)
    monkeypatch.setattr(features_module, "estimate_f0", estimate_f0)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="the slow pYIN reaches workers by fork")
def test_the_stop_button_ends_the_worker_pool_and_keeps_the_cached_features(
        tmp_path, write_wav_file, monkeypatch, python_sigint_handler):  # noqa: F811
    """Two workers, one quick file and two that would take a minute each: the stop, pressed
    once the quick file's entry is written, ends both workers; that entry is kept, and the
    message counts it."""
    cache = tmp_path / "cache"
    paths = [short_tone(write_wav_file, "quick.wav", 330.0),
             short_tone(write_wav_file, "slow_1.wav", 220.0),
             short_tone(write_wav_file, "slow_2.wav", 440.0)]
    slow_for("slow", 60.0, monkeypatch)
    press_stop_when_an_entry_is_written(cache)
    with pytest.raises(KeyboardInterrupt) as stopped:
        load_multiple_files(paths, progress=False, cache_dir=cache, n_workers=2)
    assert str(stopped.value) == (f"feature extraction stopped; the features of 1 of 3 files are "
                                  f"kept in the cache {cache} and are not computed again")
    deadline = time.monotonic() + 5.0  # the promise: stopped within 5 s of the press
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert multiprocessing.active_children() == []
    assert len(list(cache.glob("*.npz"))) == 1
    monkeypatch.undo()  # the kept entry is a hit; the others are computed
    batch = load_multiple_files(paths[:1], progress=False, cache_dir=cache, n_workers=1)
    assert batch["file_paths"] == [str(paths[0])]


def test_a_stop_during_pyin_with_one_worker_is_a_keyboard_interrupt(
        tmp_path, write_wav_file, python_sigint_handler):  # noqa: F811
    """Real pYIN in this process: the stop arrives while the second file is analysed (inside
    numba's code or numpy's), and comes out as the KeyboardInterrupt with its message."""
    cache = tmp_path / "cache"
    t = np.arange(8 * 22050) / 22050
    paths = [short_tone(write_wav_file),
             write_wav_file("long.wav", 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.1 * t)))]
    press_stop_when_an_entry_is_written(cache)
    with pytest.raises(KeyboardInterrupt) as stopped:
        load_multiple_files(paths, progress=False, cache_dir=cache, n_workers=1)
    assert str(stopped.value) == (f"feature extraction stopped; the features of 1 of 2 files are "
                                  f"kept in the cache {cache} and are not computed again")


def test_an_interrupt_inside_compiled_code_is_a_keyboard_interrupt():
    """numba turns an interrupt inside its code into SystemError("... returned a result with an
    exception set") caused by the KeyboardInterrupt; other SystemErrors pass as they are."""
    def inside_numba():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as err:
            raise SystemError("CPUDispatcher(_viterbi) returned a result with an exception "
                              "set") from err

    def broken():
        raise SystemError("something else")

    done = []
    with pytest.raises(KeyboardInterrupt):
        run_here(inside_numba, [()], lambda: done.append(1))
    with pytest.raises(SystemError, match="something else"):
        run_here(broken, [()])
    assert run_here(lambda x: 2 * x, [(1,), (2,)], lambda: done.append(1)) == [2, 4]
    assert done == [1, 1]


def test_a_stop_without_a_cache_folder_says_nothing_is_kept():
    assert stopped_message([None], None) == ("feature extraction stopped; without a cache "
                                                "folder no features are kept")
