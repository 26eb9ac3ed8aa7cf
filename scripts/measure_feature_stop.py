"""How soon the stop button stops feature extraction (issue 21, class 3): six uncached 20 s
files (sines with vibrato, one a semitone above the other) go through load_multiple_files with
a fresh cache folder, and SIGINT is sent to this process, as the stop button does, `--after`
seconds after the first cache entry is written. Reported: seconds from the press to the
KeyboardInterrupt, its message, the worker processes still alive, the entries kept.

    nice -n 5 python scripts/measure_feature_stop.py [--workers 2] [--after 1]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_FILES = 6
FILE_SECONDS = 20.0


def write_tones(folder: Path) -> list[Path]:
    import soundfile as sf

    from grown_timbres.config import SAMPLE_RATE

    t = np.arange(int(FILE_SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    paths = []
    for i in range(N_FILES):
        freq = 220.0 * 2 ** (i / 12) * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
        paths.append(folder / f"tone_{i}.wav")
        sf.write(str(paths[-1]), 0.3 * np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE),
                 SAMPLE_RATE)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--after", type=float, default=1.0,
                        help="seconds after the first entry is written")
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a notebook kernel
    from grown_timbres.batching import load_multiple_files
    from grown_timbres.features import compile_feature_kernels

    compile_feature_kernels()  # the kernels of a warm environment: only extraction is timed
    with tempfile.TemporaryDirectory(prefix="ddsp_feature_stop_") as folder:
        paths, cache = write_tones(Path(folder)), Path(folder) / "cache"
        pressed = {}

        def press():
            while not list(cache.glob("*.npz")):
                time.sleep(0.02)
            time.sleep(args.after)
            pressed["at"] = time.perf_counter()
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=press, daemon=True).start()
        start = time.perf_counter()
        try:
            load_multiple_files(paths, progress=False, cache_dir=cache, n_workers=args.workers)
            print(f"not stopped: every file done in {time.perf_counter() - start:.1f} s")
        except KeyboardInterrupt as err:
            stopped = time.perf_counter()
            print(f"stopped {stopped - pressed['at']:.3f} s after the press "
                  f"({pressed['at'] - start:.1f} s after the start); workers alive: "
                  f"{len(multiprocessing.active_children())}; entries kept: "
                  f"{len(list(cache.glob('*.npz')))}\n{err}")


if __name__ == "__main__":  # load_multiple_files starts worker processes
    main()
