"""Peak memory of one training step per 4 s example: the measurement behind
train.STEP_BYTES_PER_WAVE_VALUE (issue 14, item 1).

For each number of examples per step, a fresh process builds the default model (DDSPModel():
hidden 512, 64 harmonics), make_optimizer, the plain MultiScaleSpectralLoss and the step batch
of that many 4 s examples (batching's own windows of a long take of the bundled tones, built as
benchmarks/benchmark.py builds them), float32 on CPU, and runs train.training_step twice:

- first step: peak RSS (resource.getrusage ru_maxrss) minus the RSS just before it. It also
  allocates what training then keeps (gradients, Adam's state) and one-off buffers.
- steady step: freed memory handed back to the system first (gc, malloc_trim) and the peak
  reset (/proc/self/clear_refs), then its peak minus the RSS just before it: what every step
  needs on top of what training holds.

Each process measures from the memory it already holds, so what a step adds is what the
device's free memory must cover. A line through (examples, extra peak) gives bytes per example
(its slope); divided by the harmonic-wave values of one example (samples x harmonics) that is
bytes per wave value, which examples_per_step multiplies back. With the harmonic waves
precomputed (train.with_harmonic_waves, as train does while all examples fit one step) the
batch holds [B, T, hop, H] waves before the step and the step skips computing them.

    python scripts/measure_step_memory.py                    # 1, 2, 4, 8 examples, both ways
    python scripts/measure_step_memory.py --examples 1,4 --no-waves --out /tmp/memory.json
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MARGIN = 1.1  # the constant is the measured bytes per wave value plus this share, rounded up
MIB = 2**20


def rss_bytes() -> int:
    """Resident memory of this process now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def settle() -> None:
    """Free what Python and glibc still hold of freed tensors, and make the peak the current
    RSS, so that the next peak is the next step's alone."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/clear_refs", "w") as clear:  # "5": reset the peak RSS (VmHWM)
        clear.write("5")


def child(n_examples: int, waves: bool) -> dict:
    """Build and run two steps of n_examples in this process -> what they added at their peak."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from benchmark import TONES_DIR, training_examples
    from grown_timbres.batching import StepBatches
    from grown_timbres.features import extract_features
    from grown_timbres.loss import MultiScaleSpectralLoss
    from grown_timbres.model import DDSPModel
    from grown_timbres.step import make_optimizer, training_step, with_harmonic_waves

    tones = [extract_features(p, ROOT / "outputs" / "feature_cache")
             for p in sorted(TONES_DIR.glob("*.wav"))]
    examples = training_examples(tones, n_examples)["examples"]
    torch.manual_seed(0)
    model = DDSPModel()
    batch = StepBatches(examples, n_examples).batch
    if waves:
        batch = with_harmonic_waves(batch, model)
    optimizer, loss = make_optimizer(model), MultiScaleSpectralLoss()
    del tones, examples
    out = {"examples": n_examples, "waves": waves, "n_harmonics": model.n_harmonics,
           "samples": int(batch["audio"].shape[1]), "torch": torch.__version__}
    for name in ("first", "steady"):
        settle()
        before = rss_bytes()
        training_step(model, optimizer, batch, loss)
        out[f"{name}_before"], out[f"{name}_extra"] = before, peak_bytes() - before
    return out


def calibration(points: list, values_per_example: int, margin: float = MARGIN) -> dict:
    """Least-squares line through (examples, extra bytes) points -> bytes per example (slope),
    the intercept, bytes per wave value (slope / values_per_example) and the constant to use
    (that times `margin`, rounded up to a whole byte)."""
    x, y = np.array(points, dtype=float).T
    if len(set(x)) < 2:
        raise ValueError("a slope needs at least two different numbers of examples")
    slope, intercept = np.polyfit(x, y, 1)
    per_value = slope / values_per_example
    return {"bytes_per_example": float(slope), "intercept_bytes": float(intercept),
            "bytes_per_wave_value": float(per_value),
            "suggested": int(math.ceil(round(per_value * margin, 6)))}  # 22.0000001: 22


def run_child(n_examples: int, waves: bool) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", str(n_examples)]
                            + (["--waves"] if waves else []),
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{n_examples} examples (waves {waves}) failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", default="1,2,4,8", help="examples per step, comma list")
    parser.add_argument("--no-waves", action="store_true",
                        help="skip the runs with precomputed harmonic waves")
    parser.add_argument("--out", help="also write the results here as JSON")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--waves", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.waves)))
        return {}
    counts = [int(n) for n in args.examples.split(",") if n.strip()]
    rows, fits = [], {}
    print("| examples | waves precomputed | RSS before, MiB | first step: extra peak, MiB | "
          "steady step: extra peak, MiB |\n|---|---|---|---|---|", flush=True)
    for waves in (False,) if args.no_waves else (False, True):
        for n in counts:
            row = run_child(n, waves)
            rows.append(row)
            print(f"| {n} | {'yes' if waves else 'no'} | {row['first_before'] / MIB:.0f} | "
                  f"{row['first_extra'] / MIB:.0f} | {row['steady_extra'] / MIB:.0f} |",
                  flush=True)
        values = rows[-1]["samples"] * rows[-1]["n_harmonics"]
        for step in ("first", "steady"):
            fit = calibration([(r["examples"], r[f"{step}_extra"]) for r in rows
                               if r["waves"] == waves], values)
            fits[f"{step} step, waves {'precomputed' if waves else 'computed'}"] = fit
    print(f"\nper example: {values:,} wave values ({rows[-1]['samples']} samples x "
          f"{rows[-1]['n_harmonics']} harmonics); torch {rows[-1]['torch']}")
    for name, fit in fits.items():
        print(f"- {name}: {fit['bytes_per_example'] / MIB:.0f} MiB per example (intercept "
              f"{fit['intercept_bytes'] / MIB:.0f} MiB) = {fit['bytes_per_wave_value']:.1f} bytes "
              f"per wave value -> {fit['suggested']} with a {MARGIN - 1:.0%} margin")
    report = {"rows": rows, "fits": fits, "margin": MARGIN}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
