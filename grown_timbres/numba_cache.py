"""librosa's compiled numba kernels: a cache folder the project owns, filled by one process at a
time, and a damaged cache found and rebuilt before it can crash this process.

Two processes compiling at once can leave numba's cache inconsistent (an index naming code that
another process overwrote); every later pYIN call then dies of a segfault, which no `try`
catches. So kernels are compiled under a lock that every process shares (fcntl), and a cache
that changed since it last passed is first run by a probe in a subprocess: a probe that dies
gets the folder deleted and compiled afresh, with one warning naming it.

numba reads NUMBA_CACHE_DIR when it is imported and librosa's kernels pick their folder when
librosa is: importing this file sets it (unless you set one) and imports neither.

    prepare_kernels(compile_here, probe_statement) -> None
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

from .files import atomic_write, lock

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_NUMBA_CACHE = PROJECT_ROOT / "outputs" / "numba_cache"
PROBE_SECONDS = 900.0  # compiling the feature kernels afresh took 43 s on a busy 2-core machine
VERIFIED = "verified.json"  # the folder's listing when its kernels last ran in a probe

os.environ.setdefault("NUMBA_CACHE_DIR", str(PROJECT_NUMBA_CACHE))
if "numba" in sys.modules:  # imported before this file: it reads the variable again
    sys.modules["numba"].core.config.reload_config()


def numba_cache_dir() -> Path:
    return Path(os.environ["NUMBA_CACHE_DIR"])


def listing(folder: Path) -> list:
    """[[relative path, size, mtime in ns]] of the folder's files, sorted; VERIFIED aside."""
    if not folder.is_dir():
        return []
    return sorted([str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns]
                  for p in folder.rglob("*") if p.is_file() and p.name != VERIFIED)


def verified(folder: Path) -> bool:
    """Whether the folder holds exactly what it held when its kernels last ran in a probe."""
    try:
        return json.loads((folder / VERIFIED).read_text()) == listing(folder)
    except (OSError, ValueError):
        return False


def mark_verified(folder: Path) -> None:
    text = json.dumps(listing(folder))
    try:
        atomic_write(folder / VERIFIED, lambda tmp: Path(tmp).write_text(text))
    except OSError:  # a folder that cannot be written is probed again next time
        pass


@contextlib.contextmanager
def compile_lock(folder: Path):
    """Held by one process at a time, across processes: an fcntl lock on `<folder>.lock`,
    beside the folder (a rebuild deletes the folder, never the lock). Without fcntl locks
    (Windows, some network file systems) nothing is held."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        file = open(folder.parent / f"{folder.name}.lock", "a+b")
    except OSError:
        file = None
    with file or contextlib.nullcontext():
        if file is not None:
            lock(file, wait=True)
        yield


def probe(statement: str, folder: Path, seconds: float = PROBE_SECONDS) -> str | None:
    """Run `statement` in a fresh Python using the numba cache `folder`: None when it ends
    well, else what happened ("killed by SIGSEGV", "exit status 1: <its last line>", "no
    answer in <seconds> s")."""
    path = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(folder), "PYTHONPATH": path}
    try:
        result = subprocess.run([sys.executable, "-c", statement], env=env, cwd=PROJECT_ROOT,
                                capture_output=True, text=True, timeout=seconds)
    except subprocess.TimeoutExpired:
        return f"no answer in {seconds:g} s"
    if result.returncode < 0:
        return f"killed by {signal.Signals(-result.returncode).name}"
    if result.returncode:
        lines = result.stderr.strip().splitlines() or ["no message"]
        return f"exit status {result.returncode}: {lines[-1]}"
    return None


def prepare_kernels(compile_here, probe_statement: str, folder=None) -> None:
    """compile_here() (which runs the kernels once in this process, compiling or loading them)
    under compile_lock. Before it, a cache folder that is not empty and changed since it was
    last verified is run by `probe_statement` in a subprocess; a probe that fails has the
    folder deleted, with one warning naming it and why, and run again into a fresh one.
    Raises RuntimeError naming the folder when even a fresh cache fails."""
    folder = numba_cache_dir() if folder is None else Path(folder)
    with compile_lock(folder):
        if listing(folder) and not verified(folder):
            reason = probe(probe_statement, folder)
            if reason is not None:
                warnings.warn(f"numba's compiled cache {folder} is damaged (a test run of the "
                              f"feature kernels {reason}); it is deleted and compiled again, "
                              "once", stacklevel=3)
                shutil.rmtree(folder, ignore_errors=True)
                reason = probe(probe_statement, folder)
                if reason is not None:
                    raise RuntimeError(f"the feature kernels fail even when compiled afresh "
                                       f"into {folder} ({reason})")
        compile_here()
        mark_verified(folder)
