"""Record what the code computes, then compare two records: a restructuring must not change it.

    python scripts/behaviour_snapshot.py record outputs/snapshot-before   # before the change
    python scripts/behaviour_snapshot.py record outputs/snapshot-after    # after it
    python scripts/behaviour_snapshot.py compare outputs/snapshot-before outputs/snapshot-after

`record` runs, in float32 (DDSP_CPU_BF16=off) on this machine:
- the benchmark at 30 timed epochs on the CPU (no extraction timing, no examples-per-second rows):
  every row's loss curve, final loss terms and distance on the original's files;
- both notebooks in smoke mode (DDSP_SMOKE=1, as CI runs them), which write outputs/smoke/:
  every wav's samples, every run record's numeric fields other than times, dates and the
  machine, and every checkpoint's tensors (weights, optimizer state, random state).
It writes <folder>/snapshot.npz (one array per figure, named by where it came from).

`compare` says, per figure, whether it is within --atol (default 1e-6) absolute, or 1e-6 of
its size where the figure is larger than 1, lists figures only one record has, and exits 1
when anything differs. Times never enter a record, so two records of the same code on the same
machine compare equal.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "outputs" / "smoke"
NOTEBOOKS = ("ddsp_original", "ddsp_optimized")
# run record fields that are not what the code computes: times, dates, the machine, paths
NOT_COMPUTED = re.compile(r"second|time|created|date|device|torch|python|cpu|gpu|cuda|path|"
                          r"platform|threads|host|_s$|^s_per|speedup|warmup|overhead", re.I)


def run(command: list[str], env: dict) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, env=env, check=True)


def numeric_fields(value, name: str, into: dict) -> None:
    """Every number (or list of numbers) in a JSON value, keyed by its dotted path."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not NOT_COMPUTED.search(str(key)):
                numeric_fields(item, f"{name}.{key}", into)
    elif isinstance(value, list) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        into[name] = np.asarray(value, dtype=np.float64)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            numeric_fields(item, f"{name}[{i}]", into)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        into[name] = np.asarray(float(value))


def tensors(value, name: str, into: dict) -> None:
    """Every tensor in a checkpoint, keyed by its path inside it."""
    import torch

    if isinstance(value, torch.Tensor):
        into[name] = value.detach().double().cpu().numpy() if value.is_floating_point() \
            else value.cpu().numpy().astype(np.float64)
    elif isinstance(value, dict):
        for key, item in value.items():
            tensors(item, f"{name}.{key}", into)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            tensors(item, f"{name}[{i}]", into)


def record_benchmark(folder: Path, env: dict, figures: dict) -> None:
    out = folder / "benchmark"
    run([sys.executable, "benchmarks/benchmark.py", "--device", "cpu", "--epochs", "30",
         "--skip-extraction", "--examples", "", "--out", str(out)], env)
    report = json.loads((out / "benchmark_cpu.json").read_text())
    for row in report["variants"]:
        numeric_fields({k: v for k, v in row.items() if k != "variant"},
                       f"benchmark.{row['variant']}", figures)


def record_notebooks(env: dict, figures: dict) -> None:
    import soundfile as sf
    import torch

    for name in NOTEBOOKS:
        with tempfile.TemporaryDirectory() as tmp:
            run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                 "--output-dir", tmp, f"notebooks/{name}.ipynb"], {**env, "DDSP_SMOKE": "1"})
    for wav in sorted(SMOKE.glob("ddsp_*/*.wav")):
        figures[f"wav.{wav.parent.name}/{wav.name}"] = sf.read(wav, dtype="float64")[0]
    for path in sorted((SMOKE / "runs").glob("*.json")):
        numeric_fields(json.loads(path.read_text()), f"record.{path.stem}", figures)
    for path in sorted(SMOKE.glob("ddsp_*/*.pt")):
        tensors(torch.load(path, map_location="cpu", weights_only=True),
                f"checkpoint.{path.parent.name}/{path.name}", figures)


def record(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DDSP_CPU_BF16": "off", "CI": "true"}
    figures: dict = {}
    record_benchmark(folder, env, figures)
    record_notebooks(env, figures)
    np.savez(folder / "snapshot.npz", **figures)
    print(f"{len(figures)} figures in {folder / 'snapshot.npz'}")


def compare(before: Path, after: Path, atol: float) -> int:
    old, new = (dict(np.load(f / "snapshot.npz")) for f in (before, after))
    problems = [f"only before: {k}" for k in sorted(set(old) - set(new))] + \
               [f"only after: {k}" for k in sorted(set(new) - set(old))]
    worst = 0.0
    for key in sorted(set(old) & set(new)):
        if NOT_COMPUTED.search(key.split(".")[-1]):  # a time, in a record made before the filter
            continue
        a, b = old[key], new[key]
        if a.shape != b.shape:
            problems.append(f"{key}: shape {a.shape} before, {b.shape} after")
            continue
        if a.size == 0:
            continue
        allowed = atol * np.maximum(1.0, np.abs(a))
        excess = np.abs(b - a) - allowed
        both_nan = np.isnan(a) & np.isnan(b)
        bad = (excess > 0) | (np.isnan(excess) & ~both_nan)
        worst = max(worst, float(np.nanmax(np.abs(b - a), initial=0.0)))
        if bad.any():
            i = np.unravel_index(int(np.argmax(np.where(bad, np.nan_to_num(excess, nan=np.inf),
                                                        -np.inf))), a.shape)
            problems.append(f"{key}: {int(bad.sum())} of {a.size} values differ, first at "
                            f"{tuple(int(x) for x in i)}: {a[i]!r} before, {b[i]!r} after")
    print(f"{len(set(old) & set(new))} figures in both; largest absolute difference {worst:.3g}")
    print("\n".join(problems) if problems else f"all equal within {atol:g}")
    return 1 if problems else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("record").add_argument("folder", type=Path)
    both = sub.add_parser("compare")
    both.add_argument("before", type=Path)
    both.add_argument("after", type=Path)
    both.add_argument("--atol", type=float, default=1e-6)
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.folder)
        return 0
    return compare(args.before, args.after, args.atol)


if __name__ == "__main__":
    sys.exit(main())
