"""grown_timbres/numba_cache.py (issue 21, class 2): librosa's kernels are cached in a folder the
project owns and compiled by one process at a time; a cache damaged so that its code crashes
(a segfault, which no `try` catches) is found by a probe in a subprocess, deleted and compiled
again, with one warning naming it. The damaged cache here is made on purpose, from two tiny
kernels (a real one takes 40 s to compile afresh): the data of the one that reads far beyond
its array is copied over the other's, as a second process compiling at once overwrites it."""
import subprocess
import sys
import warnings

import pytest

from grown_timbres import numba_cache
from grown_timbres.features import compile_feature_kernels
from grown_timbres.numba_cache import PROJECT_NUMBA_CACHE, compile_lock, prepare_kernels, probe

KERNELS = '''import numba


@numba.njit("float64(float64[::1])", cache=True)
def first(samples):
    return samples[0]


@numba.njit("float64(float64[::1])", cache=True)
def far_beyond(samples):  # never called: its compiled code is what the damage puts in first's
    return samples[1 << 40]
'''


@pytest.fixture
def kernels(tmp_path):
    """(the statement a probe runs: it calls `first` only, its numba cache folder)."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "kernels_under_test.py").write_text(KERNELS)
    statement = (f"import sys; sys.path.insert(0, {str(source)!r}); import numpy, "
                 "kernels_under_test as k; assert k.first(numpy.ones(3)) == 1.0")
    return statement, tmp_path / "numba_cache"


def damage(folder):
    """Put far_beyond's compiled code where the index says first's is."""
    [first] = folder.rglob("kernels_under_test.first-*.nbc")
    [far_beyond] = folder.rglob("kernels_under_test.far_beyond-*.nbc")
    first.write_bytes(far_beyond.read_bytes())


def test_a_cache_that_crashes_is_found_by_a_probe_rebuilt_and_named_once(kernels, monkeypatch):
    statement, folder = kernels
    assert probe(statement, folder) is None  # compiles both kernels into the folder
    damage(folder)
    ran_here = []
    with pytest.warns(UserWarning) as caught:
        prepare_kernels(lambda: ran_here.append(1), statement, folder)
    assert len(caught) == 1
    assert str(caught[0].message).startswith(
        f"numba's compiled cache {folder} is damaged (a test run of the feature kernels "
        "killed by SIG")  # SIGSEGV (SIGBUS on macOS)
    assert str(caught[0].message).endswith("); it is deleted and compiled again, once")
    assert ran_here == [1]  # in this process only after the probe of the rebuilt cache passed
    # verified now: the next process neither probes nor warns
    monkeypatch.setattr(numba_cache, "probe", lambda *a: pytest.fail("probed again"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_kernels(lambda: ran_here.append(2), statement, folder)
    assert ran_here == [1, 2]


def test_a_cache_that_fails_even_afresh_is_an_error_naming_the_folder(kernels):
    _, folder = kernels
    (folder / "index").mkdir(parents=True)  # not empty, never verified: probed
    (folder / "index" / "x.nbi").write_bytes(b"x")
    with pytest.warns(UserWarning, match="is damaged"):
        with pytest.raises(RuntimeError, match=rf"the feature kernels fail even when compiled "
                                               rf"afresh into {folder} \(exit status 1: "
                                               r"ZeroDivisionError: division by zero\)"):
            prepare_kernels(lambda: pytest.fail("ran here"), "1 / 0", folder)


def test_the_compile_lock_is_held_across_processes(tmp_path):
    """While one process compiles, another cannot take the lock (it would wait)."""
    folder = tmp_path / "numba_cache"
    attempt = ("import fcntl, sys\nwith open(sys.argv[1], 'a+b') as file:\n"
               "    try:\n        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
               "    except BlockingIOError:\n        sys.exit(3)\n")
    lock_file = str(tmp_path / "numba_cache.lock")
    with compile_lock(folder):
        held = subprocess.run([sys.executable, "-c", attempt, lock_file])
    free = subprocess.run([sys.executable, "-c", attempt, lock_file])
    assert (held.returncode, free.returncode) == (3, 0)


def test_librosas_kernels_are_cached_in_the_projects_folder():
    """Importing the package names the project's folder to numba (unless NUMBA_CACHE_DIR was
    set), before numba is imported; librosa's kernels then cache there."""
    import os

    import numba

    compile_feature_kernels()  # librosa's first import compiles some kernels: under the lock
    import librosa.sequence

    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    named = subprocess.run([sys.executable, "-c", "import os, sys, grown_timbres.numba_cache; "
                            "print(os.environ['NUMBA_CACHE_DIR'], 'numba' in sys.modules)"],
                           cwd=numba_cache.PROJECT_ROOT, env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    assert named == [str(PROJECT_NUMBA_CACHE), "False"]
    folder = str(numba_cache.numba_cache_dir())
    assert numba.core.config.CACHE_DIR == folder
    assert str(librosa.sequence._viterbi._cache._cache_path).startswith(folder)
