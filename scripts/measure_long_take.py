"""What preparing one long take costs (issue 14, item 1): a 10-minute recording built from the
bundled tones goes through extract_features (no cache) and batching.collate in a fresh process.

The recording: the 12 tones (2 s each) in a shuffled order, some played an octave lower (at half
speed, 4 s), with a few silent gaps of several seconds, written as a 44.1 kHz stereo 16-bit wav
(the two channels at different levels), so reading, mixdown and resampling are all exercised.
Reported: the process's peak RSS, wall seconds (and those of reading and of pYIN), seconds of
audio, training examples, windows dropped as silent or unpitched, minutes used, excerpt start.

    nice -n 5 python scripts/measure_long_take.py [--minutes 10]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FILE_RATE = 44100
GAPS_SECONDS = (5.0, 8.0, 6.0, 12.0)  # silences between tones, spread over the take
FADE_SECONDS = 0.01


def build_take(path: Path, minutes: float, seed: int = 0) -> float:
    """Write the long take to `path` (see the top of this file); returns its length in s."""
    import soundfile as sf
    import soxr

    from grown_timbres.audio import load_audio
    from grown_timbres.config import SAMPLE_RATE

    rng = np.random.default_rng(seed)
    tones = [load_audio(p) for p in sorted((ROOT / "scale_tones").glob("*.wav"))]
    fade = np.linspace(0.0, 1.0, int(FADE_SECONDS * SAMPLE_RATE))
    total = int(minutes * 60 * SAMPLE_RATE)
    gap_at = set(np.linspace(0, total, len(GAPS_SECONDS) + 2)[1:-1].astype(int))
    pieces, length, gaps = [], 0, list(GAPS_SECONDS)
    while length < total:
        tone = tones[rng.integers(len(tones))].astype(np.float64)
        if rng.random() < 0.3:  # an octave lower: the same samples at half speed
            tone = np.interp(np.arange(2 * len(tone)) / 2, np.arange(len(tone)), tone)
        tone = tone * rng.uniform(0.5, 1.0)
        tone[: len(fade)] *= fade
        tone[len(tone) - len(fade):] *= fade[::-1]
        pieces.append(tone)
        length += len(tone)
        if gaps and any(length - len(tone) < g <= length for g in gap_at):
            pieces.append(np.zeros(int(gaps.pop(0) * SAMPLE_RATE)))
            length += len(pieces[-1])
    mono = np.concatenate(pieces)[:total]
    mono = soxr.resample(mono, SAMPLE_RATE, FILE_RATE, quality="HQ")
    stereo = np.stack([mono, 0.6 * mono], axis=1)
    sf.write(str(path), np.clip(stereo, -1, 1), FILE_RATE, subtype="PCM_16")
    return len(mono) / FILE_RATE


def measure(path: Path) -> dict:
    """In this (fresh) process: extract_features(path) without a cache, then collate."""
    import resource

    from grown_timbres import analysis, features
    from grown_timbres.batching import collate

    spent = {"read": 0.0, "pyin": 0.0}

    def timed(name, function):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start
        return call

    features.compile_feature_kernels()  # as load_multiple_files does; numba's cache is warm
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    features.load_audio = timed("read", features.load_audio)
    analysis.pyin_frames = timed("pyin", analysis.pyin_frames)
    start = time.perf_counter()
    feats = features.extract_features(path)
    batch = collate([feats])
    wall = time.perf_counter() - start
    source = batch["sources"][0]
    seconds = len(feats["audio"]) / features.SAMPLE_RATE
    high_water = [line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                  if line.startswith("VmHWM:")]
    return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "vm_hwm_mib": int(high_water[0]) / 1024 if high_water else None,
            "rss_after_imports_mib": rss_before / 1024, "wall_seconds": wall,
            "read_seconds": spent["read"], "pyin_seconds": spent["pyin"],
            "pyin_seconds_per_minute": spent["pyin"] / (seconds / 60),
            "audio_seconds": seconds, "examples": source["examples"],
            "silent_windows_dropped": source["silent"],
            "unpitched_windows_dropped": source["unpitched"],
            "minutes_used": source["seconds_used"] / 60,
            "excerpt_start_seconds": source["excerpt_start_seconds"],
            "voiced_fraction": float(feats["voiced"].mean())}


def run_child(*args) -> str:
    """This script's last line of output, run with `args` in a process of its own."""
    child = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if child.returncode:
        sys.exit(child.stderr)
    return child.stdout.strip().splitlines()[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--build", help=argparse.SUPPRESS)  # a child: write the take here
    parser.add_argument("--child", help=argparse.SUPPRESS)  # a child: measure this take
    args = parser.parse_args()
    if args.build:
        print(build_take(Path(args.build), args.minutes))
        return
    if args.child:
        import torch

        from grown_timbres.device import cpu_name

        print(json.dumps({"machine": cpu_name(), "torch": torch.__version__,
                          **measure(Path(args.child))}))
        return
    # Linux keeps a process's peak RSS across exec: each child is started from this lean
    # process, and the take is built in a child of its own, so the measured peak is the
    # measuring child's alone.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "long_take.wav"
        file_seconds = float(run_child("--build", str(path), "--minutes", str(args.minutes)))
        file_bytes = path.stat().st_size
        measured = json.loads(run_child("--child", str(path)))
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "file": f"{file_seconds:.1f} s, {FILE_RATE} Hz stereo 16-bit wav, "
                      f"{file_bytes / 1e6:.1f} MB", **measured}
    out = ROOT / "outputs" / "measure_long_take.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"| {result['audio_seconds'] / 60:.1f} min take | peak RSS "
          f"{result['peak_rss_mib']:.0f} MiB | {result['wall_seconds']:.0f} s (pYIN "
          f"{result['pyin_seconds_per_minute']:.0f} s per minute of audio) | "
          f"{result['examples']} examples, {result['silent_windows_dropped']} silent and "
          f"{result['unpitched_windows_dropped']} unpitched windows dropped | "
          f"{result['minutes_used']:.1f} min used | excerpt from "
          f"{result['excerpt_start_seconds']:.1f} s |")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
