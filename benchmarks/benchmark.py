"""Benchmark the seed's optimizations one at a time and together, in one process.

Every variant trains on the same bundled tones (`scale_tones/*.wav`) from the same seed with the
code the notebooks run (`training_step`, the losses and `make_optimizer` of `grown_timbres`);
only the timing harness lives here. Rows: `original` (one file per run, float32, plain loss,
eager, plain Adam), each optimization alone on top of it (`+cached`, `+batching`, `+amp`,
`+compile`) and `optimized` (the optimized notebook's recipe). Also timed per file: feature
extraction (sequential, parallel, on-disk cache), training scaled to 1000 epochs, growth
rendering; and training examples per second with train() itself over 1, 12 and 200 examples of
4 s (--examples: batching's windows of a long take of the tones, as many a step as
examples_per_step fits).
Writes outputs/benchmarks/benchmark_<device>.json and .md and prints the markdown.

    # CPU, full run
    python benchmarks/benchmark.py --device cpu

    # GPU (CUDA), full run; the features come from outputs/feature_cache when it holds them
    # (fill it on a machine with librosa first, then carry the folder: no librosa needed here)
    python benchmarks/benchmark.py --device cuda

    # CI smoke run (2 files, hidden 64, 3 epochs; 1 and 2 examples, 1 + 2 steps)
    python benchmarks/benchmark.py --tiny

    # only the examples per second (no variants, no extraction timing)
    python benchmarks/benchmark.py --device cpu --variants '' --skip-extraction
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from grown_timbres.batching import (EXAMPLE_FRAMES, EXAMPLE_HOP_FRAMES, PADDING,  # noqa: E402
                                    batch_to_device, collate, file_features,
                                    load_multiple_files)
from grown_timbres.features import extract_features, feature_cache_path  # noqa: E402
from grown_timbres.growth import grow_timbre, held_note  # noqa: E402
from grown_timbres.history import as_history  # noqa: E402
from grown_timbres.loss import MultiScaleSpectralLoss, OptimizedMultiScaleSpectralLoss  # noqa: E402
from grown_timbres.model import DDSPModel  # noqa: E402
from grown_timbres.model_config import HIDDEN_SIZE  # noqa: E402
from grown_timbres.scoring import evaluate_batch  # noqa: E402
from grown_timbres.device import (cpu_has_fast_bfloat16, cpu_name, device_report,  # noqa: E402
                                  synchronize)
from grown_timbres.step import (LEARNING_RATE, examples_per_step, make_optimizer,  # noqa: E402
                                step_runner, training_step, with_harmonic_waves)
from grown_timbres.train import train  # noqa: E402

# ----------------------------------------------------------------------------- settings
TONES_DIR = ROOT / "scale_tones"
SEED = 0  # the notebooks' torch.manual_seed
LOSS_TAIL = 5  # "final loss" = mean over this many last epochs
PARITY_TOLERANCE = 0.05  # every variant's distance on the original files within 5% of original's
# A batched model learns each of its files more slowly at first (one model for 12 tones): its
# parity with the one-file original is only promised after this many epochs, so shorter runs
# (CI's tiny one included) report batched parity without failing on it.
BATCHED_PARITY_MIN_EPOCHS = 400
E2E_EPOCHS = 1000  # the seed's N_EPOCHS: the end-to-end estimate scales training to this
TINY = dict(files=2, hidden_size=64, epochs=3, warmup=1, original_files=1, examples="1,2",
            examples_steps=2, examples_warmup=1)

VARIANTS = ("original", "+cached", "+batching", "+amp", "+compile", "+capture", "optimized")
WHAT = {
    "original": "1 file per run, float32, plain loss, eager, Adam",
    "+cached": "original + cached target STFTs",
    "+batching": "original + all files in one batch (masked plain loss)",
    "+amp": "original + fp16 autocast + GradScaler",
    "+compile": "original + model.compile(mode='reduce-overhead')",
    "+capture": "original + the whole step captured once as a CUDA graph and replayed "
                "(Adam fused and capturable)",
    "optimized": "batching + cached + fp16 amp + compile (no CUDA graphs of its own) + capture "
                 "+ fused Adam + TF32 + precomputed harmonic waves (the notebook)",
}
CLAIMS = {  # the seed's claimed speedups ("Nx" for batching: N files at once)
    "original": "1x (2-3 h/file)", "+cached": "1.5x", "+batching": "{n}x ({n} files)",
    "+amp": "2.5x", "+compile": "1.2x", "+capture": "- (not the seed's)",
    "optimized": "36-54x (2-3 h/file -> 3-4 min/file)",
}


# ----------------------------------------------------------------------------- variants
def variant_settings(name: str, device: torch.device, args) -> dict | str:
    """What a variant switches on, or (a string) why it is not measured on this device."""
    cuda = device.type == "cuda"
    s = dict(batched=False, cached=False, amp_dtype=None, scaler=False, compile=None,
             capture=False, fused_adam=False, tf32=False, waves=False, what=WHAT[name])
    if name == "+cached":
        s["cached"] = True
    elif name == "+batching":
        s["batched"] = True
    elif name == "+amp":
        if cuda:
            s.update(amp_dtype=torch.float16, scaler=True)
        elif args.cpu_amp_bf16:
            s.update(amp_dtype=torch.bfloat16, what="original + CPU bfloat16 autocast, no scaler")
        else:
            return ("n/a on CPU (fp16 autocast + GradScaler are CUDA features; --cpu-amp-bf16 "
                    "measures CPU bfloat16)")
    elif name == "+compile":
        if cuda:
            s["compile"] = "reduce-overhead"
        elif args.compile_on_cpu:
            s.update(compile="default", what="original + model.compile() (default mode, CPU)")
        else:
            return "skipped on CPU (--compile-on-cpu to measure)"
    elif name == "+capture":
        if not cuda:
            return "n/a on CPU (CUDA graphs)"
        s.update(capture=True, fused_adam=True)
    elif name == "optimized":
        s.update(batched=True, cached=True, fused_adam=True, tf32=True, waves=True)
        if cuda:
            s.update(amp_dtype=torch.float16, scaler=True, compile="default", capture=True)
        elif cpu_has_fast_bfloat16():  # the notebook's own choice on a CPU
            s.update(amp_dtype=torch.bfloat16, what="batching + cached + make_optimizer + TF32 "
                     "setting + bfloat16 autocast + precomputed harmonic waves (the notebook on "
                     "a CPU with AMX/AVX512-BF16; no compile)")
        else:
            s["what"] = ("batching + cached + make_optimizer + TF32 setting + precomputed "
                         "harmonic waves (the notebook on a CPU without fast bfloat16: no amp, "
                         "no compile)")
    return s


@contextmanager
def matmul_precision(level: str | None):
    """torch.set_float32_matmul_precision(level) inside, the previous setting restored after."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(level or previous)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def build(settings: dict, batch: dict, args, device):
    """Model (seeded: identical initial weights in every variant), optimizer, loss, scaler,
    and the batch to train on (with its harmonic waves when the variant precomputes them)."""
    torch.manual_seed(args.seed)
    model = DDSPModel(hidden_size=args.hidden_size).to(device)
    if settings["compile"]:
        torch.compiler.reset()  # every compiled run pays (and reports) its own compilation
        model.compile(**({} if settings["compile"] == "default" else {"mode": settings["compile"]}))
    optimizer = (make_optimizer(model, capturable=settings["capture"]) if settings["fused_adam"]
                 else torch.optim.Adam(model.parameters(), lr=LEARNING_RATE))
    if settings["cached"]:
        loss = OptimizedMultiScaleSpectralLoss()
        loss.precompute_target(batch["audio"], device, batch["lengths"])
    else:
        loss = MultiScaleSpectralLoss()
    scaler = torch.amp.GradScaler("cuda") if settings["scaler"] else None
    if settings["waves"]:
        batch = with_harmonic_waves(batch, model)
    return model, optimizer, loss, scaler, batch


def file_distances(model, batch: dict, indices) -> list[float]:
    """The notebooks' spectral distance (scoring.evaluate_batch: resynthesis against its file,
    float32, eager) of batch rows `indices`. The resynthesis seeds its own noise: training's
    random stream is left as it was."""
    metrics, _ = evaluate_batch(model, batch, progress=False, rows=indices,
                                measures=("spectral_distance",), sine=False, seed=SEED)
    return [scores["model"]["spectral_distance"] for scores in metrics.values()]


def timed_run(settings: dict, batch: dict, args, device, parity_rows, desc: str):
    """Train warm-up + timed epochs with training_step, each epoch between two
    synchronize calls. Losses are read after the last epoch (no .item() in the timing);
    the parity distances are measured after each of the last LOSS_TAIL epochs, untimed."""
    model, optimizer, loss, scaler, batch = build(settings, batch, args, device)
    n_epochs = args.warmup + args.epochs
    tail = min(LOSS_TAIL, n_epochs)
    runner, names = step_runner(model, optimizer, batch, loss, scaler, settings["amp_dtype"])
    capture_s = None
    if settings["capture"]:
        synchronize(device)
        start = time.perf_counter()
        fallback = runner.capture()
        if fallback is not None:  # never time eager steps under the capture's name
            raise CaptureFellBack(fallback)
        capture_s = time.perf_counter() - start
    seconds, steps, distances = [], [], []
    for epoch in tqdm(range(n_epochs), desc=desc, leave=False, disable=None):  # bar on a TTY
        if device.type == "cuda" and not runner.captured:  # compile's own CUDA graphs
            torch.compiler.cudagraph_mark_step_begin()
        synchronize(device)
        start = time.perf_counter()
        steps.append(runner())
        synchronize(device)
        seconds.append(time.perf_counter() - start)
        if epoch >= n_epochs - tail:
            distances += file_distances(model, batch, parity_rows)
    values = torch.stack(steps).float().cpu().numpy()
    totals = values[:, 0]
    terms = {name: values[:, column] for column, name in enumerate(names, start=1)}
    run = {"epoch_seconds": seconds, "loss": totals.tolist(),
           "loss_terms": {name: curve.tolist() for name, curve in terms.items()},
           "final_loss_terms": {name: float(curve[-tail:].mean()) for name, curve in terms.items()},
           "parity_distance": float(np.mean(distances)),
           "finite": bool(np.isfinite(totals).all() and np.isfinite(distances).all()
                          and all(np.isfinite(curve).all() for curve in terms.values())),
           "grad_scale_end": scaler.get_scale() if scaler is not None else None,
           "capture_s": capture_s}
    return run, model


def measure_variant(name: str, settings: dict, data: dict, args, device) -> tuple[dict, object]:
    """All runs of one variant (one per original file, or one batched run) -> table row."""
    if settings["batched"]:
        files_per_run = len(data["batch"]["file_paths"])
        jobs = [(data["batch"], list(range(len(data["single"]))), "all files")]
    else:
        files_per_run = 1
        jobs = [(single, [0], Path(single["file_paths"][0]).stem) for single in data["single"]]
    runs, model = [], None
    with matmul_precision("high" if settings["tf32"] else None):
        for batch, parity_rows, label in jobs:
            run, model = timed_run(settings, batch, args, device, parity_rows,
                                   f"{name} ({label})")
            runs.append(run)
    warm = args.warmup
    per_epoch = statistics.median(statistics.median(r["epoch_seconds"][warm:]) for r in runs)
    row = {
        "variant": name, "status": "measured", "what": settings["what"],
        "files_per_run": files_per_run, "runs": len(runs),
        "run_files": [b["file_paths"] for b, _, _ in jobs],
        "s_per_epoch": per_epoch,
        "s_per_file_per_epoch": per_epoch / files_per_run,
        "s_per_file_1000_epochs": 1000 * per_epoch / files_per_run,
        "warmup_s": statistics.median(sum(r["epoch_seconds"][:warm]) + (r["capture_s"] or 0)
                                      for r in runs),
        "first_epoch_s": statistics.median(r["epoch_seconds"][0] for r in runs),
        "final_loss_terms": {name: float(np.mean([r["final_loss_terms"][name] for r in runs]))
                             for name in runs[0]["final_loss_terms"]},
        "parity_distance": float(np.mean([r["parity_distance"] for r in runs])),
        "finite": all(r["finite"] for r in runs),
        "settings": {k: str(v) for k, v in settings.items()},
        "runs_detail": runs,
    }
    row["warmup_overhead_s"] = row["warmup_s"] - warm * per_epoch  # compile, graph capture
    return row, model


class CaptureFellBack(RuntimeError):
    """A capture variant whose step could not be captured: the row says so, untimed."""


def repeated(batch: dict, n_files: int) -> dict:
    """The batch's files repeated (then cut) to n_files rows: bigger batches of the same data."""
    reps = -(-n_files // len(batch["file_paths"]))
    out = {k: torch.cat([v] * reps)[:n_files] for k, v in batch.items() if torch.is_tensor(v)}
    return {**batch, **out, "file_paths": (batch["file_paths"] * reps)[:n_files]}


def scaling_rows(batch: dict, args, device) -> dict:
    """The optimized recipe at more files per batch: per-file time and peak GPU memory
    (--scaling), and the largest batch that trains captured under --memory-cap-gb."""
    settings = variant_settings("optimized", device, args)
    settings["compile"] = None  # compile changes time per step, not memory or scaling
    epochs = dict(warmup=3, epochs=args.scaling_epochs)

    def measure(n_files):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        run_args = argparse.Namespace(**{**vars(args), **epochs})
        with matmul_precision("high"):
            run, _ = timed_run(settings, repeated(batch, n_files), run_args, device, [0],
                               f"{n_files} files")
        per_epoch = statistics.median(run["epoch_seconds"][epochs["warmup"]:])
        return {"files": n_files, "s_per_epoch": per_epoch, "s_per_file_per_epoch":
                per_epoch / n_files, "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30,
                "capture_s": run["capture_s"], "finite": run["finite"]}

    out = {"rows": [], "cap": None}
    for n_files in args.scaling:
        try:
            out["rows"].append(measure(n_files))
        except Exception as err:
            out["rows"].append({"files": n_files, "error": f"{type(err).__name__}: {err}"[:200]})
        print(f"scaling {out['rows'][-1]}", flush=True)
    if args.memory_cap_gb:
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_cap_gb * 2**30 / total))
        fits, n_files = None, max(args.scaling or [12]) * 2
        while n_files <= 4096:
            try:
                fits = measure(n_files)
            except Exception as err:  # out of memory, or a capture that fell back for it
                print(f"{n_files} files under {args.memory_cap_gb} GB: {type(err).__name__}")
                break
            n_files *= 2
        torch.cuda.set_per_process_memory_fraction(1.0)
        out["cap"] = {"gb": args.memory_cap_gb, "largest": fits, "failed_at": n_files}
    return out


def add_comparisons(rows: list, n_files: int) -> None:
    """Speedup per file and loss parity against the `original` row, the seed's claim."""
    original = next((r for r in rows if r["variant"] == "original"
                     and r["status"] == "measured"), None)
    for row in rows:
        row["claim"] = CLAIMS[row["variant"]].format(n=n_files)
        if row["status"] != "measured" or original is None:
            continue
        row["speedup_per_file"] = original["s_per_file_per_epoch"] / row["s_per_file_per_epoch"]
        change = row["parity_distance"] / original["parity_distance"] - 1
        row["parity_change"] = change
        row["parity_ok"] = bool(abs(change) <= PARITY_TOLERANCE)


def failures(rows: list, total_epochs: int) -> list[str]:
    """Why the run must exit non-zero: a variant that raised or trained to a non-finite loss,
    or missed parity where parity is promised (one-file rows always; batched rows only in runs
    of at least BATCHED_PARITY_MIN_EPOCHS epochs)."""
    problems = []
    for row in rows:
        name = row["variant"]
        if row["status"].startswith("failed"):
            problems.append(f"{name}: {row['status']}")
        elif row["status"] != "measured":
            continue  # not measured on this device, by choice (see the row's status)
        elif not row["finite"]:
            problems.append(f"{name}: a loss or distance is not finite")
        elif row.get("parity_ok") is False and (
                row["files_per_run"] == 1 or total_epochs >= BATCHED_PARITY_MIN_EPOCHS):
            problems.append(f"{name}: distance {row['parity_change']:+.1%} from the original's, "
                            f"beyond the {PARITY_TOLERANCE:.0%} parity tolerance")
    return problems


# ----------------------------------------------------------------------------- examples
def long_take(tones: list, n_examples: int) -> dict:
    """The tones' features (extract_features dicts) end to end, repeated as needed, as one
    recording cut to the length that batching.collate splits into exactly n_examples windows
    of EXAMPLE_FRAMES (a scale played as one long take): the examples are collate's own."""
    n_frames = EXAMPLE_FRAMES + (n_examples - 1) * EXAMPLE_HOP_FRAMES
    repeats = -(-n_frames // sum(len(tone["f0"]) for tone in tones))
    take = {key: np.concatenate([tone[key] for tone in tones] * repeats)[: n_frames * hop]
            for key, (hop, _) in PADDING.items()}
    return {**take, "path": f"take_of_{len(tones)}_tones.wav"}


def training_examples(tones: list, n_examples: int) -> dict:
    """collate's batch of long_take(tones, n_examples); raises if a window was dropped (silent
    or unpitched), since the row would then time fewer examples than it names."""
    batch = collate([long_take(tones, n_examples)])
    found = len(batch["examples"]["starts"])
    if found != n_examples:
        raise ValueError(f"the take of {len(tones)} tones gave {found} examples, not "
                         f"{n_examples}: {batch['sources'][0]}")
    return batch


def steady_steps(history: dict, warmup: int) -> dict:
    """Seconds per step after `warmup` steps (median of the steps' times, from a history
    synchronised every step) and what follows: examples per second, seconds per epoch."""
    history = as_history(history)
    elapsed = [0.0] + history.elapsed_seconds
    if len(history.timed_steps) != len(history.loss) or len(elapsed) < warmup + 2:
        raise ValueError("steady_steps needs a history synchronised every step, with steps "
                         "after the warm-up")
    step_s = statistics.median(np.diff(elapsed)[warmup:].tolist())
    return {"s_per_step": step_s, "examples_per_s": history.examples_per_step / step_s,
            "s_per_epoch": history.steps_per_epoch * step_s,
            "timed_steps": len(elapsed) - 1 - warmup}


def examples_rows(tones: list, args, device) -> dict:
    """Training examples per second for each of args.examples 4 s examples (a long take of the
    tones): train() itself, examples_per_step's default, the optimized row's settings less
    compile (its compilation would dwarf a few steps), args.examples_warmup steps untimed.
    -> {"what": those settings, "rows": one per number of examples}."""
    settings = variant_settings("optimized", device, args)
    rows = []
    for n_examples in args.examples:
        try:
            rows.append(examples_row(tones, n_examples, settings, args, device))
        except Exception as err:  # e.g. out of memory: the other rows still run
            traceback.print_exc()
            rows.append({"examples": n_examples, "status": f"failed: {type(err).__name__}: "
                                                         f"{str(err).splitlines()[0][:120]}"})
            continue
        row = rows[-1]
        print(f"examples: {n_examples}: {row['examples_per_s']:.3g} examples/s "
              f"({row['examples_per_step']} a step, {row['s_per_step']:.3g} s a step, "
              f"{row['steps_per_epoch']} steps an epoch)", flush=True)
    return {"what": settings["what"], "rows": rows}


def examples_row(tones: list, n_examples: int, settings: dict, args, device) -> dict:
    """One row of examples_rows: train() on n_examples, timed from its history."""
    batch = batch_to_device(training_examples(tones, n_examples), device)
    torch.manual_seed(args.seed)
    model = DDSPModel(hidden_size=args.hidden_size).to(device)
    optimizer = make_optimizer(model, capturable=settings["capture"])
    scaler = torch.amp.GradScaler("cuda") if settings["scaler"] else None
    per_step = min(examples_per_step(model, EXAMPLE_FRAMES, device), n_examples)
    steps_per_epoch = -(-n_examples // per_step)
    n_steps = args.examples_warmup + args.examples_steps
    print(f"examples: {n_examples} x 4 s, {per_step} a step, {n_steps} steps ...", flush=True)
    with matmul_precision("high" if settings["tf32"] else None):
        history = train(model, optimizer, batch, OptimizedMultiScaleSpectralLoss(),
                        n_steps / steps_per_epoch, scaler=scaler,
                        amp_dtype=settings["amp_dtype"], sync_every=1, progress=False,
                        capture=settings["capture"], precompute_waves=settings["waves"])
    if history.status != "finished":
        raise RuntimeError(f"training did not finish: {history.status}")
    return {"examples": n_examples, "status": "measured",
            "examples_per_step": history.examples_per_step,
            "steps_per_epoch": history.steps_per_epoch, "harmonic_waves": history.harmonic_waves,
            "cached_targets": history.cached_targets, "capture": history.capture,
            **steady_steps(history, args.examples_warmup)}


# ----------------------------------------------------------------------------- features
def installed(module: str) -> bool:
    """Importable, without importing it."""
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules[module] is None
        return False


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def copy_cache_entries(paths, source_dir, cache_dir) -> None:
    """Put the features just extracted into the temp cache into --features-cache as well."""
    for path in paths:
        source = feature_cache_path(path, source_dir)
        target = feature_cache_path(path, cache_dir)
        if source.is_file() and not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def load_features(paths, args) -> tuple[dict, dict]:
    """Time feature extraction every way the notebooks can do it, then load the training
    features from --features-cache -> (CPU batch, timings)."""
    workers = min(os.cpu_count() or 1, len(paths))
    cache_dir = Path(args.features_cache)
    hits = sum(feature_cache_path(p, cache_dir).is_file() for p in paths)
    have_librosa = installed("librosa") and installed("soundfile")
    timings = {"n_files": len(paths), "n_workers": workers, "methods": {}}
    load = load_multiple_files
    if not installed("soundfile"):  # a cache hit reads the audio too: it must be the entry's
        sys.exit("soundfile is not installed: the audio files cannot be read (pip install "
                 "soundfile)")
    if not have_librosa and hits < len(paths):
        sys.exit(f"librosa/soundfile are not installed and {len(paths) - hits} of {len(paths)} "
                 f"files are not in {cache_dir}: fill the cache where librosa is installed "
                 "(run this script there) and carry the folder here.")
    if args.skip_extraction or not have_librosa:
        timings["skipped"] = "--skip-extraction" if have_librosa else "librosa not installed"
    else:
        print(f"features: timing extraction of {len(paths)} files ...", flush=True)
        load(paths[:1], progress=False, n_workers=1)  # untimed: librosa import, numba JIT
        methods = timings["methods"]
        _, methods["sequential (n_workers=1, no cache)"] = timed(
            load, paths, progress=False, n_workers=1)
        _, methods[f"parallel (n_workers={workers}, no cache)"] = timed(
            load, paths, progress=False, n_workers=workers)
        with tempfile.TemporaryDirectory(prefix="ddsp_feature_cache_") as cold:
            _, methods[f"cold cache (fresh dir, n_workers={workers}: extract + write)"] = timed(
                load, paths, progress=False, cache_dir=cold, n_workers=workers)
            _, methods["warm cache (n_workers=1: read)"] = timed(
                load, paths, progress=False, cache_dir=cold, n_workers=1)
            _, methods[f"warm cache (n_workers={workers}: read)"] = timed(
                load, paths, progress=False, cache_dir=cold, n_workers=workers)
            copy_cache_entries(paths, cold, cache_dir)
    batch, seconds = timed(load, paths, progress=False, cache_dir=cache_dir,
                           n_workers=1 if hits == len(paths) else workers)
    timings["training_features"] = {"cache_dir": str(cache_dir), "hits_before": hits,
                                    "seconds": seconds}
    timings["librosa_or_soundfile_imported"] = any(
        sys.modules.get(name) is not None for name in ("librosa", "soundfile"))
    print(f"features: {len(batch['file_paths'])} files from {cache_dir} in {seconds:.2f} s "
          f"({hits}/{len(paths)} were cached before this run)", flush=True)
    return batch, timings


# ----------------------------------------------------------------------------- growth, end to end
def time_growth(model, batch: dict, device) -> list[float]:
    """Seconds per file of grow_timbre(model, held_note(model, file_features(batch, i))): the
    decoder over the file's frames, then the held note's render."""
    seconds = []
    for i in range(len(batch["file_paths"])):
        synchronize(device)
        start = time.perf_counter()
        grow_timbre(model, held_note(model, file_features(batch, i)))
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def end_to_end(rows: list, features: dict, growth_s: float, epochs: int) -> list[dict]:
    """Seconds per file: features + training for `epochs` epochs + growth rendering."""
    by_name = {r["variant"]: r for r in rows if r["status"] == "measured"}
    n = features["n_files"]
    per_file = {k: v / n for k, v in features["methods"].items()}
    sequential = next((v for k, v in per_file.items() if k.startswith("sequential")), None)
    cold = next((v for k, v in per_file.items() if k.startswith("cold")), None)
    warm = features["training_features"]["seconds"] / n if not features["methods"] else next(
        v for k, v in per_file.items() if k.startswith("warm cache (n_workers=1"))
    paths = []
    if "original" in by_name:
        paths.append(("original: sequential features, 1 file per run", sequential,
                      by_name["original"]))
    if "optimized" in by_name:
        paths += [("optimized: parallel features into a cold cache", cold, by_name["optimized"]),
                  ("optimized: features from a warm cache", warm, by_name["optimized"])]
    table = []
    for label, feature_s, row in paths:
        train_s = (epochs * row["s_per_file_per_epoch"]
                   + max(row["warmup_overhead_s"], 0.0) / row["files_per_run"])
        total = None if feature_s is None else feature_s + train_s + growth_s
        table.append({"path": label, "features_s": feature_s, "training_s": train_s,
                      "growth_s": growth_s, "total_s": total})
    if table and table[0]["path"].startswith("original") and table[0]["total_s"]:
        for entry in table:
            entry["speedup"] = (table[0]["total_s"] / entry["total_s"]
                                if entry["total_s"] else None)
    return table


# ----------------------------------------------------------------------------- report
def cell(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**NO**"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def terms_text(terms: dict) -> str:
    """{name: value} -> 'spectral 1.18, time_l1 0.0123'."""
    return ", ".join(f"{name} {value:.4g}" for name, value in terms.items())


def markdown_table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def parity_cell(row: dict, total_epochs: int) -> str | None:
    ok = row.get("parity_ok")
    if ok is None:
        return None
    if not ok and row["files_per_run"] > 1 and total_epochs < BATCHED_PARITY_MIN_EPOCHS:
        return f"no (batched: gated from {BATCHED_PARITY_MIN_EPOCHS} epochs)"
    return "yes" if ok else "**no**"


def examples_markdown(examples: dict, cfg: dict) -> list[str]:
    """The examples-per-second section of the report, as lines."""
    rows, what = examples["rows"], examples["what"]
    table = [[r["examples"], r.get("examples_per_step"), r.get("steps_per_epoch"),
              r.get("s_per_step"), r.get("examples_per_s") if r["status"] == "measured"
              else r["status"], r.get("s_per_epoch"),
              *[(r.get(key) or "-").split(":")[0] for key in ("harmonic_waves", "cached_targets")]]
             for r in rows]
    return ["## Training examples per second (4 s examples, train())",
            f"A long take of the {cfg['files']} tones end to end, split by batching.collate into "
            "4 s examples; train() with examples_per_step's default (as many as fit the "
            "device's free memory, at most MAX_EXAMPLES_PER_STEP), hidden size "
            f"{cfg['hidden_size']}, the optimized row's settings without compile ({what}). "
            f"Warm-up: {cfg['examples_warmup']} step(s), then s/step is the median of "
            f"{cfg['examples_steps']} steps, each synchronised; examples/s = examples/step / "
            "s/step; s/epoch = steps/epoch x s/step.",
            markdown_table(["examples", "examples/step", "steps/epoch", "s/step", "examples/s",
                            "s/epoch", "harmonic waves", "cached target spectra"], table), ""]


def render_markdown(report: dict) -> str:
    meta, cfg, rows = report["meta"], report["config"], report["variants"]
    original = next((r for r in rows if r["variant"] == "original" and r["status"] == "measured"),
                    None)
    out = [f"# DDSP training benchmark ({meta['device_type']})", "",
           f"- machine: {meta['platform']}; {meta['cpu']} "
           f"(torch threads {meta['torch_threads']}, load average at start "
           f"{meta['load_average_at_start'][0]})",
           f"- device: {meta['device']}; torch {meta['torch']}; python {meta['python']}"
           + ("" if meta["device_type"] == "cuda" else
              f"; CPU bfloat16 in hardware: {'yes' if meta['cpu_fast_bfloat16'] else 'no'}"),
           f"- date: {meta['date']}",
           f"- command: `{meta['command']}`",
           f"- {cfg['files']} files, hidden size {cfg['hidden_size']}, seed {cfg['seed']}; each "
           f"variant trains {cfg['warmup']} warm-up + {cfg['epochs']} timed epochs; s/epoch is "
           "the median of the timed epochs, each between two device synchronizations", ""]
    headers = ["variant", "what", "files/batch", "s/epoch", "s/file/epoch",
               "s/file per 1000 epochs", "speedup/file", "seed's claim", "warm-up s (1st epoch)",
               "final loss terms", "distance on original files", "vs original",
               f"parity (<= {PARITY_TOLERANCE:.0%})"]
    table, total_epochs = [], cfg["warmup"] + cfg["epochs"]
    for r in rows:
        if r["status"] != "measured":
            table.append([r["variant"], r["status"]] + ["-"] * 5 + [r["claim"]] + ["-"] * 5)
            continue
        change = r.get("parity_change")
        table.append([
            r["variant"], r["what"],
            r["files_per_run"], r["s_per_epoch"], r["s_per_file_per_epoch"],
            r["s_per_file_1000_epochs"],
            None if r.get("speedup_per_file") is None else f"{r['speedup_per_file']:.2f}x",
            r["claim"], f"{r['warmup_s']:.3g} ({r['first_epoch_s']:.3g})",
            terms_text(r["final_loss_terms"]), r["parity_distance"],
            None if change is None else f"{change:+.1%}", parity_cell(r, total_epochs)])
    out += [markdown_table(headers, table), ""]
    singles = [r for r in rows if r["status"] == "measured" and r["variant"] not in
               ("original", "optimized") and r.get("speedup_per_file")]
    together = next((r for r in rows if r["variant"] == "optimized" and r.get("speedup_per_file")),
                    None)
    if singles:
        product = float(np.prod([r["speedup_per_file"] for r in singles]))
        names = " x ".join(r["variant"] for r in singles)
        out.append(f"Product of the single speedups ({names}): {product:.2f}x"
                   + (f"; measured together (optimized): {together['speedup_per_file']:.2f}x."
                      if together else "."))
    if original:
        names = ", ".join(Path(f[0]).stem for f in original["run_files"])
        out.append(f"`original` and the other one-file rows: one run per file on {original['runs']}"
                   f" of the {cfg['files']} files ({names}); s/epoch is the median over those "
                   "runs. Batched rows train all files in one batch.")
    tail = min(cfg["loss_tail"], cfg["warmup"] + cfg["epochs"])
    out += [f"Final loss terms: each term of the training loss (loss.training_loss), mean of "
            f"the last {tail} epochs (one-file rows: mean over their runs; batched rows: over "
            "the whole batch). Distance on original files: the notebooks' spectral distance "
            "(scoring.evaluate_batch's spectral_distance) on the original row's files, mean over the "
            f"last {tail} epochs; parity compares it with the original's. Warm-up s: the "
            f"first {cfg['warmup']} epochs (compilation and CUDA-graph capture included), apart "
            "from the steady state.", ""]
    features = report["features"]
    out.append("## Features (per file; after one untimed extraction for imports and JIT)")
    if features.get("skipped"):
        out.append(f"Extraction not timed: {features['skipped']}.")
    else:
        out.append(markdown_table(["method", "s total", "s/file"],
                                  [[k, v, v / features["n_files"]]
                                   for k, v in features["methods"].items()]))
    tf = features["training_features"]
    out += ["", f"Training features read from `{tf['cache_dir']}` in {tf['seconds']:.3g} s "
            f"({tf['hits_before']}/{features['n_files']} cached before this run).", ""]
    growth = report["growth"]
    if report.get("scaling"):
        scaling = report["scaling"]
        out += ["## More files per batch (the optimized recipe without compile, captured)",
                markdown_table(["files", "s/epoch", "ms/file/epoch", "peak GPU GiB", "capture s"],
                               [[r["files"], r.get("s_per_epoch"),
                                 None if "error" in r else 1000 * r["s_per_file_per_epoch"],
                                 r.get("peak_gib"), r.get("capture_s") or r.get("error")]
                                for r in scaling["rows"]]), ""]
        if scaling["cap"]:
            cap, largest = scaling["cap"], scaling["cap"]["largest"]
            out += [f"Under a {cap['gb']:g} GB cap: largest batch that trained captured: "
                    + (f"{largest['files']} files ({largest['peak_gib']:.1f} GiB peak)"
                       if largest else "none tried fitted")
                    + f"; {cap['failed_at']} files did not.", ""]
    if report.get("examples", {}).get("rows"):
        out += examples_markdown(report["examples"], cfg)
    out += [f"## Growth rendering: {growth['median_s']:.3g} s per file "
            f"(grow_timbre, median of {len(growth['seconds'])}, {growth['model']})", ""]
    if report["end_to_end"]:
        out += [f"## End to end per file ({cfg['e2e_epochs']} training epochs)",
                markdown_table(["path", "features s", "training s", "growth s", "total s",
                                "speedup"],
                               [[e["path"], e["features_s"], e["training_s"], e["growth_s"],
                                 e["total_s"], None if e.get("speedup") is None
                                 else f"{e['speedup']:.2f}x"] for e in report["end_to_end"]]),
                "", "Training = steady s/file/epoch x epochs + the warm-up overhead (compilation) "
                "shared by the files of one run."]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    parser.add_argument("--epochs", type=int, default=30, help="timed epochs per variant")
    parser.add_argument("--warmup", type=int, default=5,
                        help="first epochs, timed apart from the steady-state median")
    parser.add_argument("--files", type=int, default=12, help="bundled tones to use")
    parser.add_argument("--original-files", type=int, default=2,
                        help="files the one-file-per-run rows run on (median over them)")
    parser.add_argument("--hidden-size", type=int, default=HIDDEN_SIZE, help="model width")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma list of: " + ", ".join(VARIANTS) + " ('+' optional)")
    parser.add_argument("--features-cache", default=str(ROOT / "outputs" / "feature_cache"),
                        help="feature cache the training batch is read from (and filled)")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "benchmarks"),
                        help="folder for benchmark_<device>.json and .md")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device")
    parser.add_argument("--seed", type=int, default=SEED, help="torch.manual_seed per model")
    parser.add_argument("--e2e-epochs", type=int, default=E2E_EPOCHS,
                        help="epochs the end-to-end estimate scales training to")
    parser.add_argument("--cpu-amp-bf16", action="store_true",
                        help="on CPU, measure +amp as bfloat16 autocast without GradScaler")
    parser.add_argument("--compile-on-cpu", action="store_true",
                        help="on CPU, measure +compile with model.compile() default mode")
    parser.add_argument("--scaling", default="",
                        help="CUDA: comma list of batch sizes (files, the tones repeated) to time "
                             "the optimized recipe at, e.g. 12,24,48,96")
    parser.add_argument("--scaling-epochs", type=int, default=200,
                        help="timed epochs per --scaling row")
    parser.add_argument("--memory-cap-gb", type=float, default=0,
                        help="CUDA: also find the largest batch that trains captured with the "
                             "process capped at this many GB (40: a Colab A100)")
    parser.add_argument("--examples", default="1,12,200",
                        help="training examples per second: comma list of numbers of 4 s "
                             "examples (a long take of the tones) to train on with train() and "
                             "its default examples per step; '' skips this")
    parser.add_argument("--examples-steps", type=int, default=5,
                        help="timed steps per --examples row (median)")
    parser.add_argument("--examples-warmup", type=int, default=2,
                        help="untimed first steps per --examples row")
    parser.add_argument("--skip-extraction", action="store_true",
                        help="do not time feature extraction (training features still load)")
    parser.add_argument("--tiny", action="store_true", help="CI preset: " + ", ".join(
        f"{k.replace('_', '-')} {v}" for k, v in TINY.items()) + " (explicit flags win)")
    args = parser.parse_args(argv)
    if args.tiny:
        parser.set_defaults(**TINY)
        args = parser.parse_args(argv)
    args.scaling = [int(n) for n in args.scaling.split(",") if n.strip()]
    args.examples = [int(n) for n in args.examples.split(",") if n.strip()]
    names = {v.lstrip("+"): v for v in VARIANTS}
    chosen = [n.strip().lstrip("+") for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in names]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    args.variants = [v for v in VARIANTS if v.lstrip("+") in chosen]
    if min(args.epochs, args.files, args.original_files) < 1 or args.warmup < 0:
        parser.error("--epochs, --files and --original-files must be >= 1, --warmup >= 0")
    if min(args.examples or [1]) < 1 or args.examples_steps < 1 or args.examples_warmup < 0:
        parser.error("--examples and --examples-steps must be >= 1, --examples-warmup >= 0")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    device = torch.device(args.device)
    report_device = device_report(device)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "platform": platform.platform(),
            "cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "cpu_fast_bfloat16": cpu_has_fast_bfloat16(),
            "command": "python " + shlex.join(sys.argv if argv is None else [sys.argv[0], *argv]),
            **report_device}
    print(f"{meta['device']} ({device}), torch {meta['torch']}, {meta['cpu_count']} CPUs",
          flush=True)
    paths = sorted(TONES_DIR.glob("*.wav"))[: args.files]
    cpu_batch, features = load_features(paths, args)
    batch = batch_to_device(cpu_batch, device)
    k = min(args.original_files, len(batch["file_paths"]))
    single = [batch_to_device(collate([extract_features(p, args.features_cache)]),
                                   device) for p in batch["file_paths"][:k]]
    data = {"batch": batch, "single": single}

    # one untimed step first: the first variant should not pay for library start-up
    warm_model, warm_optimizer, warm_loss, _, warm_batch = build(
        variant_settings("original", device, args), single[0], args, device)
    if device.type == "cuda":
        torch.compiler.cudagraph_mark_step_begin()  # its first call imports torch._inductor
    training_step(warm_model, warm_optimizer, warm_batch, warm_loss)
    del warm_model, warm_optimizer

    rows, growth_model = [], None
    for number, name in enumerate(args.variants, 1):
        settings = variant_settings(name, device, args)
        if isinstance(settings, str):
            print(f"[{number}/{len(args.variants)}] {name}: {settings}", flush=True)
            rows.append({"variant": name, "status": settings, "what": WHAT[name]})
            continue
        print(f"[{number}/{len(args.variants)}] {name}: {settings['what']} ...", flush=True)
        try:
            row, model = measure_variant(name, settings, data, args, device)
        except CaptureFellBack as err:
            rows.append({"variant": name, "status": f"failed: capture fell back to eager, not "
                                                    f"timed: {str(err)[:160]}", "what": WHAT[name]})
            continue
        except Exception as err:  # one failing variant (e.g. no compiler) must not stop the rest
            traceback.print_exc()
            rows.append({"variant": name, "status": f"failed: {type(err).__name__}: "
                                                    f"{str(err).splitlines()[0][:120]}",
                         "what": WHAT[name]})
            continue
        if name == "optimized" or (growth_model is None and settings["batched"]):
            growth_model = model
        rows.append(row)
        print(f"[{number}/{len(args.variants)}] {name}: {row['s_per_epoch']:.4f} s/epoch "
              f"({row['files_per_run']} file(s)/batch, {row['runs']} run(s)), "
              f"{row['s_per_file_per_epoch']:.4f} s/file/epoch, warm-up {row['warmup_s']:.2f} s, "
              f"final loss terms {terms_text(row['final_loss_terms'])}", flush=True)
    add_comparisons(rows, len(batch["file_paths"]))
    tones = [extract_features(p, args.features_cache) for p in batch["file_paths"]]
    examples = examples_rows(tones, args, device)

    model_label = "the optimized row's model" if growth_model is not None else "an untrained model"
    if growth_model is None:  # rendering time does not depend on training
        torch.manual_seed(args.seed)
        growth_model = DDSPModel(hidden_size=args.hidden_size).to(device)
    growth_seconds = time_growth(growth_model, batch, device)
    growth = {"seconds": growth_seconds, "median_s": statistics.median(growth_seconds),
              "model": model_label}

    scaling = (scaling_rows(batch, args, device)
               if device.type == "cuda" and (args.scaling or args.memory_cap_gb) else None)
    report = {"meta": meta, "scaling": scaling, "examples": examples, "config": {**{k: v for k, v in vars(args).items()},
                                       "loss_tail": LOSS_TAIL, "files_used": batch["file_paths"]},
              "variants": rows, "features": features, "growth": growth,
              "end_to_end": end_to_end(rows, features, growth["median_s"], args.e2e_epochs)}
    report["failures"] = failures(rows, args.warmup + args.epochs) + [
        f"{r['examples']} examples: {r['status']}" for r in examples["rows"]
        if r["status"] != "measured"]
    report["total_seconds"] = time.perf_counter() - started
    markdown = render_markdown(report) + f"\nBenchmark ran in {report['total_seconds']:.1f} s.\n"
    if report["failures"]:
        markdown += "\n**Failed:**\n" + "".join(f"- {p}\n" for p in report["failures"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"benchmark_{device.type}"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str))
    (out / f"{stem}.md").write_text(markdown)
    print("\n" + markdown)
    print(f"wrote {out / (stem + '.json')} and {out / (stem + '.md')}")
    return report


if __name__ == "__main__":  # load_multiple_files starts worker processes
    sys.exit(1 if main()["failures"] else 0)
