"""One call on a lent GPU machine that runs what a Colab user runs (issue 22).

Parts, in this order, so that the first minutes answer the most:
    tests      every CUDA-only test (the test files that skip without CUDA), via pytest
    notebooks  the optimized notebook headless at full size on the bundled tones (1000 epochs),
               then the original, executed with nbclient; their run records' times
    benchmark  benchmarks/benchmark.py's GPU rows, BENCHMARK_EPOCHS epochs each
    long_take  200 four-second examples (a long take of the tones), step batches trained
               captured (capture="always"); its first COMPARE_STEPS losses against eager steps
               from the same seed (within SPREAD_MARGIN x eager's own run-to-run spread, or
               LOSS_RTOL), examples per second captured and eager
    room       the same with a model with the room, and its step time
    profile    torch.profiler over a few captured steps of the bundled tones (kernels by CUDA
               time) and a few eager ones (ops: the share of copies, casts, im2col)
    parity     not in the default plan (78 s measured: the default fills its budget), run
               with --only parity: where the optimized notebook's metric parts from its training
               loss (BENCHMARKS.md, "Quality: parity"). The 12 tones trained
               --parity-epochs (default BATCHED_PARITY_MIN_EPOCHS, 400) epochs from seed 0 in
               the --parity-variants (default all five) (float32
               eager, the reference; float16 captured; TF32 captured; the notebook's recipe
               through train(); the same through the benchmark's loop), each measured through
               the training forward, the eager forward in float32 and float16, and the
               notebooks' metric; each variant's metric against the reference's, within 5%

The notebooks part gates parity too: the optimized notebook's metric (its run record's
spectral distance) on the file the original notebook trained (01_C4) against the original's,
within benchmark.PARITY_TOLERANCE (5%); its figure is parity_change.

Each part runs in a process of its own with a time limit (a CUDA error or a hang in one leaves
the others running), prints its time, figures, pass or fail and the error, and the summary is
rewritten after each part: <out>/gpu_check.json and <out>/gpu_check.md; the executed notebooks
land in <out> too. The whole check keeps to --budget-s (default 300 s on an H100 or H200).

    python scripts/prepare_gpu_check.py      # here, first: wheels and feature cache
    python3 scripts/gpu_check.py --out "$OUT" [--only long_take,room]   # on the GPU machine
    python3 scripts/gpu_check.py --out "$OUT" --only parity             # the parity probe
    python scripts/gpu_check.py --dry-run --out outputs/gpu-check-dry   # CPU: the same plan at
                                                                        # toy sizes (CI)

--dry-run runs every part at toy sizes on the CPU; what needs CUDA (the CUDA-only tests, capture,
CUDA kernels) is refused there with its reason and reported "refused", not failed.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

PARTS = ("tests", "notebooks", "benchmark", "long_take", "room", "profile", "parity")
# Run only when asked for by --only: the default plan already fills BUDGET_S on an H200.
OPTIONAL_PARTS = ("parity",)
DEFAULT_PARTS = tuple(p for p in PARTS if p not in OPTIONAL_PARTS)
# Seconds each part may take on the GPU (its limit), and the least worth starting it with: a
# part gets its limit, less what the parts after it are sure to need, within the budget. Measured
# on an H200 (BENCHMARKS.md, 2026-12-04): tests 23 s, notebooks 167 s (the first pYIN calls
# compile numba's kernels inside them), benchmark 52-59 s at 45 epochs, long take 18 s, room
# 20 s, profile 10-14 s: 300 s in all, so the benchmark now times 20 epochs a row. Parity is
# 78 s: five variants of 400 epochs, two of them compiled (1000 epochs, three variants: 69 s).
PART_LIMIT_S = {"tests": 40, "notebooks": 180, "benchmark": 70, "long_take": 30, "room": 30,
                "profile": 25, "parity": 200}
PART_LEAST_S = {"tests": 25, "notebooks": 150, "benchmark": 50, "long_take": 20, "room": 22,
                "profile": 12, "parity": 90}
DRY_LIMIT_S = 60  # each part's limit in a dry run (CI: all of them within 90 s)
BUDGET_S = 300  # the whole check on the GPU; the wheels' install comes before it
ORIGINAL_NOTEBOOK_LEAST_S = 50  # kept for the original notebook while the optimized one runs
BENCHMARK_EPOCHS = 20  # timed epochs per benchmark row, after 5 warm-up epochs
LONG_TAKE_EXAMPLES = 200
COMPARE_STEPS = 30  # captured vs eager, from the same seed
EXTRA_STEPS = 20  # more captured steps, for the steady step time
STEADY_AFTER = 5  # steps left out of the steady step time (capture's own steps are apart)
LOSS_RTOL = 2e-2  # captured vs eager losses over 30 float16 steps: tests/test_capture.py's
# Two eager runs of a long take from the same seed already differ (cuDNN's GRU and float16
# reductions are not bitwise repeatable, and the GradScaler skips different steps): on an H200,
# 2.4e-2 at the worst of 30 steps without the room, 6e-2 and 1e-1 with it. A captured curve
# passes when it is as close to eager as eager is to itself, with this margin, or within
# LOSS_RTOL.
SPREAD_MARGIN = 1.5
PROFILE_STEPS = 5
EAGER_PROFILE_STEPS = 3
DRY_MODEL = {"hidden_size": 16, "n_harmonics": 8, "n_noise_bands": 9}  # a dry run's toy model
TOP_ROWS = 15
NOTEBOOK_MAX_BYTES = 12 * 2**20  # an executed notebook comes back whole up to this size
KEEP_OUTPUT_CHARS = 20_000  # beyond it, outputs larger than this (players, figures) are cut
FEATURE_CACHE = ROOT / "outputs" / "feature_cache"
NOTEBOOKS = ("ddsp_optimized", "ddsp_original")
PARITY_VARIANT_LEAST_S = 25  # a parity variant is not started with less time left
PARITY_REFERENCE = "fp32_eager"
# The parity part's variants, in the order they run: what each is, and how it trains. Every one
# trains the bundled tones from seed 0 with precomputed harmonic waves and the cached-target loss.
PARITY_VARIANTS = {
    "fp32_eager": {"what": "float32 (no TF32), eager, no compile, no capture: the reference, "
                   "a CPU's arithmetic", "amp": False, "tf32": False, "compile": False,
                   "capture": False, "loop": False},
    "fp16_captured": {"what": "float16 autocast + GradScaler, TF32, captured, no compile",
                      "amp": True, "tf32": True, "compile": False, "capture": True,
                      "loop": False},
    "tf32_captured": {"what": "float32 with TF32 matmuls, captured, no compile", "amp": False,
                      "tf32": True, "compile": False, "capture": True, "loop": False},
    "notebook": {"what": "the optimized notebook's recipe through train(): float16, TF32, "
                 "compile, capture, a checkpoint every 100 steps; then the first tone grown "
                 "and measured again", "amp": True, "tf32": True, "compile": True,
                 "capture": True, "loop": False, "grow": True},
    "benchmark_loop": {"what": "the same recipe through the 2026-11-27 benchmark's loop "
                       "(step_runner on the whole batch: no StepBatches, snapshots or "
                       "checkpoints)", "amp": True, "tf32": True, "compile": True,
                       "capture": True, "loop": True},
}


# ----------------------------------------------------------------------------- the parent
def part_command(part: str, args, work: Path, seconds: float) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--part", part, "--work", str(work),
            "--out", str(args.out), "--deadline", str(time.time() + seconds),
            *(["--dry-run"] if args.dry_run else []),
            *(["--parity-epochs", str(args.parity_epochs)] if args.parity_epochs else []),
            *(["--parity-variants", args.parity_variants] if args.parity_variants else [])]


def run_part(part: str, args, work: Path, seconds: float) -> dict:
    """Run `part` in a child process for at most `seconds`, echoing its output; its result
    (the child's JSON), or a failure naming the timeout or crash and the output's last lines."""
    started = time.perf_counter()
    tail = collections.deque(maxlen=25)
    child = subprocess.Popen(part_command(part, args, work, seconds), cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             errors="replace", start_new_session=True)

    def echo():
        for line in child.stdout:
            tail.append(line.rstrip())
            print(f"[{part}] {line}", end="", flush=True)

    reader = threading.Thread(target=echo, daemon=True)
    reader.start()
    try:
        child.wait(timeout=seconds)
        timed_out = False
    except subprocess.TimeoutExpired:
        stop_process_tree(child.pid)
        child.wait()
        timed_out = True
    reader.join(timeout=5)
    result_file = work / f"{part}.json"
    result = json.loads(result_file.read_text()) if result_file.is_file() else None
    if result is None or timed_out:
        why = (f"timed out after {seconds:.0f} s" if timed_out else
               f"exited {child.returncode} without a result")
        result = {**(result or {}), "status": "fail",
                  "error": why + ": " + " | ".join(list(tail)[-8:])}
    result["seconds"] = time.perf_counter() - started
    result["limit_s"] = round(seconds)
    return result


def stop_process_tree(pid: int) -> None:
    """Kill the part's process and every process it started: a notebook kernel runs in a
    session of its own, which killing the part's process group would leave running on the GPU."""
    import psutil

    try:
        part = psutil.Process(pid)
        processes = part.children(recursive=True) + [part]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def environment() -> dict:
    """What ran the check: device, torch and numpy (the image's, never carried), the carried
    packages and the feature cache."""
    import importlib.metadata

    import numpy
    import torch

    from grown_timbres.device import device_report

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    carried = {}
    for name in ("librosa", "soundfile", "soxr", "nbclient", "ipykernel", "ipywidgets", "numba"):
        try:
            carried[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            carried[name] = None
    return {**device_report(device), "python": platform.python_version(),
            "torch_file": torch.__file__, "numpy": numpy.__version__,
            "numpy_file": numpy.__file__, "packages": carried,
            "pythonpath": os.environ.get("PYTHONPATH", ""),
            "feature_cache_entries": len(list(FEATURE_CACHE.glob("*.npz"))),
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def write_summary(out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gpu_check.md").write_text(summary_markdown(report))


# The figures a part's line in the summary table shows first.
HEADLINE = {
    "tests": ["passed", "failure", "error", "skipped"],
    "notebooks": ["optimized_steady_s_all_files_1000_epochs", "parity_change",
                  "optimized_warmup_s", "optimized_steady_s_per_file_1000_epochs",
                  "original_steady_s_per_file_1000_epochs", "speedup_per_file_steady"],
    "benchmark": ["optimized_s_per_epoch", "optimized_speedup_per_file"],
    "long_take": ["capture", "captured_vs_eager_rel", "captured_examples_per_s",
                  "captured_s_per_step", "eager_examples_per_s", "capture_speedup"],
    "profile": ["capture", "captured_gpu_ms_per_step", "captured_copies_share",
                "eager_copies_share", "eager_casts_share", "eager_im2col-like_share"],
    "parity": [f"{name}_vs_{PARITY_REFERENCE}" for name in PARITY_VARIANTS
               if name != PARITY_REFERENCE] + [f"{PARITY_REFERENCE}_metric_vs_loss",
                                               "notebook_metric_vs_loss"]}
HEADLINE["room"] = HEADLINE["long_take"]


def figure_text(figures: dict, limit: int = 6, first=()) -> str:
    order = [k for k in first if k in figures] + [k for k in figures if k not in first]
    flat = [(k, figures[k]) for k in order if not isinstance(figures[k], (dict, list))]
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in flat[:limit])


def summary_markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# gpu_check{' (dry run)' if report['dry_run'] else ''}: {env['device']}",
             "", f"- torch {env['torch']} ({env['torch_file']}), numpy {env['numpy']}, "
             f"python {env['python']}; {env['date']}",
             f"- command: `{report['command']}`; budget {report['budget_s']} s, "
             f"ran {report.get('seconds', 0):.0f} s",
             f"- carried packages: {env['packages']}; feature cache entries: "
             f"{env['feature_cache_entries']}", "",
             "| part | status | s | figures | error |", "|---|---|---|---|---|"]
    for part, result in report["parts"].items():
        error = (result.get("error") or "").replace("|", "/").replace("\n", " ")[:300]
        lines.append(f"| {part} | {result['status']} | {result.get('seconds', 0):.1f} | "
                     f"{figure_text(result.get('figures', {}), 6, HEADLINE[part])} | "
                     f"{error} |")
    for part, result in report["parts"].items():
        lines += ["", f"## {part}: {result['status']}"]
        lines += [f"- {note}" for note in result.get("notes", [])]
        if result.get("figures"):
            lines += ["", "```", json.dumps(result["figures"], indent=1, default=str)[:6000],
                      "```"]
        if result.get("markdown"):
            lines += ["", result["markdown"]]
    return "\n".join(lines) + "\n"


def main_parent(args) -> int:
    # a dry run plans every part, the optional ones too, so that none rots while no GPU is lent
    default = PARTS if args.dry_run else DEFAULT_PARTS
    chosen = [p.strip() for p in (args.only or ",".join(default)).split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        raise SystemExit(f"gpu_check: unknown parts {unknown}; choose from {', '.join(PARTS)}")
    chosen = [p for p in PARTS if p in chosen]
    args.out = Path(args.out).resolve()
    args.out.mkdir(parents=True, exist_ok=True)  # the parts write into it too
    started = time.perf_counter()
    deadline = time.time() + args.budget_s
    report = {"dry_run": args.dry_run, "budget_s": args.budget_s, "parts": {},
              "command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]),
              "environment": environment()}
    print(json.dumps(report["environment"], indent=1), flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as work:
        for index, part in enumerate(chosen):
            later = sum(PART_LEAST_S[p] for p in chosen[index + 1:])
            seconds = (DRY_LIMIT_S if args.dry_run  # toy sizes: each part on its own limit
                       else min(PART_LIMIT_S[part], deadline - time.time() - later))
            print(f"\n=== {part}: up to {seconds:.0f} s", flush=True)
            if seconds < PART_LEAST_S[part] and not args.dry_run:
                result = {"status": "not run", "error": f"only {seconds:.0f} s of the "
                          f"{args.budget_s} s budget left (rerun with --only {part})"}
            else:
                result = run_part(part, args, Path(work), max(seconds, 1))
            report["parts"][part] = result
            print(f"=== {part}: {result['status']} in {result.get('seconds', 0):.1f} s; "
                  f"{figure_text(result.get('figures', {}), 10, HEADLINE[part])}"
                  + (f"; error: {result['error']}" if result.get("error") else ""), flush=True)
            report["seconds"] = time.perf_counter() - started
            write_summary(args.out, report)
    failed = [p for p, r in report["parts"].items()
              if r["status"] == "fail" or (r["status"] != "pass" and not args.dry_run)]
    print(f"\ngpu_check: {len(report['parts']) - len(failed)} parts passed"
          f"{' or were refused (dry run)' if args.dry_run else ''}, {len(failed)} not"
          f"{': ' + ', '.join(failed) if failed else ''}; {report['seconds']:.0f} s; "
          f"summary in {args.out / 'gpu_check.md'}", flush=True)
    return 1 if failed else 0


# ----------------------------------------------------------------------------- the parts
class Context:
    """What a part knows: dry run or not, its device, its deadline, folders."""

    def __init__(self, args):
        import torch

        self.dry_run = args.dry_run
        self.cuda = torch.cuda.is_available()
        self.device = torch.device("cuda" if self.cuda else "cpu")
        self.deadline, self.work, self.out = args.deadline, Path(args.work), Path(args.out)
        self.parity_epochs, self.parity_variants = args.parity_epochs, args.parity_variants

    def left(self) -> float:
        return self.deadline - time.time()

    def save_partial(self, part: str, result: dict) -> None:
        """What the part has so far: the parent keeps it if the part runs out of time."""
        (self.work / f"{part}.json").write_text(json.dumps(result, default=str))


def refused(reason: str) -> dict:
    return {"status": "refused", "error": reason}


def part_tests(ctx: Context) -> dict:
    """Every test file that skips without CUDA, all its tests (CPU ones too)."""
    import xml.etree.ElementTree as ElementTree

    import pytest

    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                   if "cuda.is_available()" in p.read_text())
    xml = ctx.work / "tests.xml"
    code = pytest.main([*files, "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={xml}"])
    cases = ElementTree.parse(xml).getroot().iter("testcase")
    outcome = collections.defaultdict(list)
    for case in cases:
        name = case.get("name")
        kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        outcome[kind].append(name if kind == "passed" else
                             f"{name}: {(case.find(kind).get('message') or '')[:200]}")
    figures = {"files": files, **{k: len(v) for k, v in outcome.items()},
               "not_passed": outcome["failure"] + outcome["error"] + outcome["skipped"]}
    if outcome["failure"] or outcome["error"] or code not in (0, 5):
        return {"status": "fail", "figures": figures, "error": f"pytest exited {code}: "
                + "; ".join((outcome["failure"] + outcome["error"])[:5])}
    if outcome["skipped"]:
        return {**refused(f"{len(outcome['skipped'])} CUDA-only tests skipped: no CUDA device"),
                "figures": figures} if not ctx.cuda else {
            "status": "fail", "figures": figures,
            "error": "tests skipped on a CUDA machine: " + "; ".join(outcome["skipped"])}
    return {"status": "pass", "figures": figures}


def kernel_name(ctx: Context) -> str:
    """A kernelspec for this Python (its PYTHONPATH included: the carried packages) under a
    JUPYTER_PATH of the work folder, so that nbclient starts ipykernel from a --target install
    with no kernel installed anywhere."""
    name = "gpu-check-python"
    folder = ctx.work / "jupyter" / "kernels" / name
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "gpu_check", "language": "python",
            "env": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}}
    (folder / "kernel.json").write_text(json.dumps(spec))
    os.environ["JUPYTER_PATH"] = str(ctx.work / "jupyter")
    os.environ["JUPYTER_RUNTIME_DIR"] = str(ctx.work / "runtime")
    os.environ["IPYTHONDIR"] = str(ctx.work / "ipython")
    return name


def write_notebook(notebook, path: Path) -> None:
    """The executed notebook, whole if it fits NOTEBOOK_MAX_BYTES (what comes back from the GPU
    machine has limits), else with its outputs over KEEP_OUTPUT_CHARS replaced by a note."""
    import nbformat

    text = nbformat.writes(notebook)
    if len(text.encode()) > NOTEBOOK_MAX_BYTES:
        text = nbformat.writes(slimmed(notebook))
    path.write_text(text)


def slimmed(notebook):
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if "text" in output and len(output["text"]) > KEEP_OUTPUT_CHARS:
                output["text"] = "[...]\n" + output["text"][-KEEP_OUTPUT_CHARS:]
            for mime, value in list(output.get("data", {}).items()):
                if len(str(value)) > KEEP_OUTPUT_CHARS:
                    output["data"][mime] = (f"[{len(str(value))} characters of {mime} left "
                                            "out by gpu_check]")
    return notebook


def run_record(name: str, since: float) -> dict | None:
    path = ROOT / "outputs" / "runs" / f"{name}.json"
    if not path.is_file() or path.stat().st_mtime < since:
        return None
    record = json.loads(path.read_text())
    per_file_epoch = (record["steady_step_seconds"] * record["steps_per_epoch"] /
                      max(record["n_files"], 1))
    return {key: record.get(key) for key in (
        "device", "n_files", "n_epochs", "n_steps", "examples_per_step", "steps_per_epoch",
        "training_status", "skipped_steps", "feature_seconds", "total_training_seconds",
        "seconds_per_file", "steady_step_seconds", "warmup_seconds", "final_loss")} | {
        "capture": record["config"].get("capture"), "compile": record["config"].get("compile"),
        "steady_s_per_file_per_1000_epochs": per_file_epoch * 1000,
        "steady_s_all_files_1000_epochs": per_file_epoch * record["n_files"] * 1000,
        "metrics": record.get("metrics")}


def notebook_parity(optimized: dict, original: dict, tolerance: float) -> tuple[dict, str | None]:
    """The optimized notebook's metric against the original's on the files the original trained
    (the keys of its metrics; 01_C4 by default), from both run records' metrics[stem]["model"]
    ["spectral_distance"] (means over those files) -> (figures: parity_files,
    parity_distance_optimized, parity_distance_original, parity_change = optimized / original
    - 1, parity_ok; the problem, or None within `tolerance` either way: benchmark.py's rule)."""
    stems = list(original.get("metrics") or {})
    if not stems:
        return {}, "parity: the original notebook's run record has no metrics"
    figures = {"parity_files": stems}
    missing = [s for s in stems if s not in (optimized.get("metrics") or {})]
    if missing:
        return figures, (f"parity: the optimized notebook's run record has no metric for "
                         f"{', '.join(missing)}, the original's file(s)")

    def distance(record: dict) -> float:
        return statistics.fmean(float(record["metrics"][s]["model"]["spectral_distance"])
                                for s in stems)

    ours, theirs = distance(optimized), distance(original)
    change = ours / theirs - 1 if theirs > 0 else float("inf")
    ok = bool(abs(change) <= tolerance)  # False for NaN too
    figures.update(parity_distance_optimized=ours, parity_distance_original=theirs,
                   parity_change=change, parity_ok=ok)
    return figures, None if ok else (
        f"parity_change {change:+.1%}: the optimized notebook's spectral distance on "
        f"{', '.join(stems)} is {ours:.3f} against the original's {theirs:.3f}, beyond the "
        f"{tolerance:.0%} parity tolerance (run --only parity to see where it parts)")


def part_notebooks(ctx: Context) -> dict:
    """Both notebooks headless, full size (dry run: DDSP_SMOKE=1, their cells up to the
    device cell, which shows that the kernel, the carried packages and the setup work)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    kernel = kernel_name(ctx)
    if ctx.dry_run:
        os.environ["DDSP_SMOKE"] = "1"
    else:
        os.environ.pop("DDSP_SMOKE", None)
    figures, errors = {}, []
    for name in NOTEBOOKS:
        notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        if ctx.dry_run:
            last = next(i for i, c in enumerate(notebook.cells) if "pick_device()" in c.source)
            notebook.cells = notebook.cells[: last + 1]
        keep = ORIGINAL_NOTEBOOK_LEAST_S if name == NOTEBOOKS[0] else 0
        started, since = time.perf_counter(), time.time()
        client = NotebookClient(notebook, timeout=int(max(ctx.left() - keep, 10)),
                                kernel_name=kernel, resources={"metadata": {"path": str(ROOT)}})
        try:
            client.execute()
        except CellExecutionError as err:
            errors.append(f"{name}: {str(err).strip().splitlines()[-1][:300]}")
        except Exception as err:  # a cell timeout, a kernel that died or did not start
            errors.append(f"{name}: {type(err).__name__}: {str(err).splitlines()[0][:300]}")
        seconds = time.perf_counter() - started
        write_notebook(notebook, ctx.out / f"{name}.executed.ipynb")
        record = None if ctx.dry_run else run_record(name, since)
        figures[f"{name}_wall_s"] = seconds
        figures[name] = {"wall_s": seconds, "cells": len(notebook.cells), **(record or {})}
        print(f"{name}: {seconds:.1f} s", flush=True)
        if not ctx.dry_run and record is None and not errors:
            errors.append(f"{name}: no run record written by this run")
        elif record and record["training_status"] != "finished":
            errors.append(f"{name}: training {record['training_status']}")
        if record:
            short = name.replace("ddsp_", "")
            figures[f"{short}_steady_s_per_file_1000_epochs"] = \
                record["steady_s_per_file_per_1000_epochs"]
            figures[f"{short}_warmup_s"] = record["warmup_seconds"]
        ctx.save_partial("notebooks", {"status": "fail", "figures": figures,
                                       "error": "; ".join(errors) or None})
    optimized, original = (figures.get(n, {}) for n in NOTEBOOKS)
    if "metrics" in optimized and "metrics" in original:  # both runs wrote their records
        from benchmark import PARITY_TOLERANCE

        parity, problem = notebook_parity(optimized, original, PARITY_TOLERANCE)
        figures.update(parity)
        errors += [problem] if problem else []
    if optimized.get("steady_s_per_file_per_1000_epochs") and \
            original.get("steady_s_per_file_per_1000_epochs"):
        figures["optimized_steady_s_all_files_1000_epochs"] = \
            optimized["steady_s_all_files_1000_epochs"]
        figures["speedup_per_file_steady"] = (original["steady_s_per_file_per_1000_epochs"] /
                                              optimized["steady_s_per_file_per_1000_epochs"])
    result = {"status": "fail" if errors else "pass", "figures": figures,
              "error": "; ".join(errors) or None,
              "notes": [f"executed notebooks: {ctx.out}/<name>.executed.ipynb (whole up to "
                        f"{NOTEBOOK_MAX_BYTES >> 20} MiB)", "times from the notebooks' own run "
                        "records (outputs/runs/): steady pace per epoch and warm-up (compile, "
                        "capture, first epochs) apart", "parity: the optimized notebook's "
                        "spectral distance (its run record's metric) on the original's file(s) "
                        "against the original's, parity_change = optimized / original - 1, "
                        "passing within 5% either way (benchmark.PARITY_TOLERANCE)"]}
    if ctx.dry_run and not errors:
        result.update(refused("dry run: the notebooks' first cells only (DDSP_SMOKE=1); "
                              "full-size runs are for the GPU"))
    return result


def part_benchmark(ctx: Context) -> dict:
    import benchmark

    folder = ctx.work / "benchmark"
    argv = (["--tiny", "--device", "cpu", "--variants", "original,capture", "--epochs", "1",
             "--warmup", "0", "--examples", "", "--skip-extraction", "--out", str(folder)]
            if ctx.dry_run else
            ["--device", "cuda", "--epochs", str(BENCHMARK_EPOCHS), "--warmup", "5",
             "--original-files", "1", "--skip-extraction", "--examples", "",
             "--out", str(folder)])  # examples per second: the long_take part
    report = benchmark.main(argv)
    keys = ("variant", "status", "files_per_run", "s_per_epoch", "s_per_file_per_epoch",
            "speedup_per_file", "warmup_s", "final_loss_terms")
    figures = {"command": "python benchmarks/benchmark.py " + " ".join(argv),
               "rows": [{k: r.get(k) for k in keys if k in r} for r in report["variants"]],
               "examples": report["examples"]["rows"]}
    for row in report["variants"]:
        if row["variant"] == "optimized" and "s_per_epoch" in row:
            figures.update(optimized_s_per_epoch=row["s_per_epoch"],
                           optimized_speedup_per_file=row.get("speedup_per_file"))
    markdown = next(folder.glob("*.md")).read_text()
    status = "fail" if report["failures"] else "refused" if not ctx.cuda else "pass"
    return {"status": status, "figures": figures, "markdown": markdown,
            "error": "; ".join(report["failures"]) or (
                "no CUDA: the capture rows are not measured" if status == "refused" else None)}


def tone_features(n_tones: int) -> list:
    from grown_timbres.features import extract_features

    return [extract_features(p, FEATURE_CACHE)
            for p in sorted((ROOT / "scale_tones").glob("*.wav"))[:n_tones]]


def train_take(ctx: Context, batch: dict, model_size: dict, batch_size, n_steps: int,
               capture) -> dict:
    """train() from seed 0 on `batch` for n_steps, the optimized notebook's settings on CUDA
    (float16 autocast, GradScaler, TF32, precomputed waves where they hold), no compile;
    synchronised every step, so each step has its own time."""
    import torch

    from grown_timbres.batching import EXAMPLE_FRAMES
    from grown_timbres.loss import OptimizedMultiScaleSpectralLoss
    from grown_timbres.model import DDSPModel
    from grown_timbres.step import examples_per_step, make_optimizer
    from grown_timbres.train import train

    torch.manual_seed(0)
    model = DDSPModel(**model_size).to(ctx.device)
    optimizer = make_optimizer(model, capturable=ctx.cuda)
    scaler = torch.amp.GradScaler("cuda") if ctx.cuda else None
    n_examples = len(batch["examples"]["starts"])
    per_step = min(batch_size or examples_per_step(model, EXAMPLE_FRAMES, ctx.device),
                   n_examples)
    steps_per_epoch = -(-n_examples // per_step)
    torch.backends.cuda.matmul.allow_tf32 = ctx.cuda
    return train(model, optimizer, batch, OptimizedMultiScaleSpectralLoss(),
                 n_steps / steps_per_epoch, scaler=scaler,
                 amp_dtype=torch.float16 if ctx.cuda else None, sync_every=1, progress=False,
                 capture=capture, batch_size=per_step, precompute_waves=True)


def step_seconds(history: dict) -> float:
    times = [b - a for a, b in zip([0.0] + history.elapsed_seconds, history.elapsed_seconds)]
    return statistics.median(times[STEADY_AFTER:] or times)


def relative_difference(a: list, b: list) -> float:
    import numpy as np

    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def take_check(ctx: Context, reverb: bool) -> dict:
    """A long take (LONG_TAKE_EXAMPLES 4 s examples, several steps an epoch) trained captured
    against eager; dry run: 2 examples, 1 a step, a tiny model (DRY_MODEL), eager only."""
    import numpy as np
    import torch

    import benchmark
    from grown_timbres.batching import batch_to_device

    dry = ctx.dry_run or not ctx.cuda
    n_examples, batch_size = (2, 1) if dry else (LONG_TAKE_EXAMPLES, None)
    model_size = {**(DRY_MODEL if dry else {}), "reverb": reverb}
    compare, extra = (2, 1) if dry else (COMPARE_STEPS, EXTRA_STEPS)
    batch = batch_to_device(benchmark.training_examples(tone_features(2 if dry else 12),
                                                        n_examples), ctx.device)
    figures, notes = {"examples": n_examples, "model": "room" if reverb else "no room",
                      "loss_rtol": LOSS_RTOL}, []
    try:
        captured = train_take(ctx, batch, model_size, batch_size, compare + extra, "always")
    except ValueError as err:  # capture on a CPU: refused with its reason
        captured, refusal = None, str(err)
    eager = [train_take(ctx, batch, model_size, batch_size, compare, False)
             for _ in range(2)]
    figures.update(examples_per_step=eager[0]["examples_per_step"],
                   steps_per_epoch=eager[0]["steps_per_epoch"],
                   eager_s_per_step=step_seconds(eager[0]),
                   eager_vs_eager_rel=relative_difference(eager[1]["loss"], eager[0]["loss"]))
    figures["eager_examples_per_s"] = figures["examples_per_step"] / figures["eager_s_per_step"]
    if ctx.cuda:
        figures["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    if captured is None:
        return {**refused(refusal), "figures": figures, "notes": notes}
    loss = captured["loss"]
    figures.update(capture=captured["capture"], capture_s=captured.get("capture_seconds"),
                   status=captured["status"], skipped_steps=captured["skipped_steps"],
                   captured_s_per_step=step_seconds(captured),
                   captured_vs_eager_rel=relative_difference(loss[:compare], eager[0]["loss"]),
                   first_loss=loss[0], last_loss=loss[-1])
    figures["captured_examples_per_s"] = (figures["examples_per_step"] /
                                          figures["captured_s_per_step"])
    figures["capture_speedup"] = figures["eager_s_per_step"] / figures["captured_s_per_step"]
    figures["allowed_rel"] = allowed = max(LOSS_RTOL,
                                           SPREAD_MARGIN * figures["eager_vs_eager_rel"])
    problems = [p for p, bad in [
        (f"capture: {captured['capture']}", captured["capture"] != "captured"),
        (f"training {captured['status']}", captured["status"] != "finished"),
        (f"captured vs eager {figures['captured_vs_eager_rel']:.2e} > {allowed:.2e} (eager vs "
         f"eager {figures['eager_vs_eager_rel']:.2e} x {SPREAD_MARGIN}, at least {LOSS_RTOL})",
         not figures["captured_vs_eager_rel"] <= allowed),
        ("non-finite loss", not np.isfinite(loss).all())] if bad]
    return {"status": "fail" if problems else "pass", "figures": figures,
            "error": "; ".join(problems) or None, "notes": notes}


def part_long_take(ctx: Context) -> dict:
    return take_check(ctx, reverb=False)


def part_room(ctx: Context) -> dict:
    return take_check(ctx, reverb=True)


def device_time_us(event) -> float:
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def share_table(rows: list, total: float, heading: str) -> str:
    lines = [f"| {heading} | calls | ms | share |", "|---|---|---|---|"]
    lines += [f"| `{name[:90]}` | {calls} | {us / 1000:.3f} | {us / max(total, 1e-9):.1%} |"
              for name, calls, us in rows[:TOP_ROWS]]
    return "\n".join(lines)


CATEGORIES = {"copies": r"copy|memcpy|memset", "casts": r"_to_copy|to_copy|convert",
              "im2col-like": r"im2col|col2im|unfold|vol2col"}


def part_profile(ctx: Context) -> dict:
    """The bundled tones' step as the optimized notebook runs it (less compile): a few captured
    replays (kernels by CUDA time) and a few eager steps (ops by self CUDA time)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from grown_timbres.batching import StepBatches, batch_to_device, collate
    from grown_timbres.loss import OptimizedMultiScaleSpectralLoss
    from grown_timbres.model import DDSPModel
    from grown_timbres.step import make_optimizer, step_runner, with_harmonic_waves

    dry = ctx.dry_run or not ctx.cuda
    batch = batch_to_device(collate(tone_features(1 if dry else 12)), ctx.device)
    torch.manual_seed(0)
    model = DDSPModel(**(DRY_MODEL if dry else {})).to(ctx.device)
    optimizer = make_optimizer(model, capturable=ctx.cuda)
    scaler = torch.amp.GradScaler("cuda") if ctx.cuda else None
    step_batch = with_harmonic_waves(StepBatches(batch["examples"]).batch, model)
    loss = OptimizedMultiScaleSpectralLoss().precompute_target(
        step_batch["audio"], ctx.device, step_batch["lengths"])
    torch.backends.cuda.matmul.allow_tf32 = ctx.cuda
    amp = torch.float16 if ctx.cuda else None
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ctx.cuda else [])
    figures, sections, notes_first = {}, [], []

    def profiled(runner, steps):
        runner()  # one step before: lazy state, workspaces
        with profile(activities=activities) as prof:
            for _ in range(steps):
                runner()
            if ctx.cuda:
                torch.cuda.synchronize()
        return prof

    captured, _ = step_runner(model, optimizer, step_batch, loss, scaler, amp)
    problem = captured.capture()
    figures["capture"] = problem or "captured"
    if problem is None:
        prof = profiled(captured, PROFILE_STEPS)
        kernels = collections.defaultdict(lambda: [0, 0.0])
        for event in prof.events():
            if event.device_type == torch.autograd.DeviceType.CUDA:
                kernels[event.name][0] += 1
                kernels[event.name][1] += event.time_range.elapsed_us()
        rows = sorted(((n, c, us) for n, (c, us) in kernels.items()), key=lambda r: -r[2])
        total = sum(r[2] for r in rows)
        figures["captured_kernels"] = len(rows)
        figures["captured_gpu_ms_per_step"] = total / 1000 / PROFILE_STEPS
        for category, pattern in CATEGORIES.items():
            figures[f"captured_{category}_share"] = sum(
                us for n, _, us in rows if re.search(pattern, n, re.I)) / max(total, 1e-9)
        if not rows:
            notes_first = ["the profiler saw no kernel inside the replayed graph"]
        sections += [f"### {PROFILE_STEPS} captured steps: kernels by GPU time "
                     f"({total / 1000:.2f} ms in all)", "",
                     share_table(rows, total, "kernel")]
    eager, _ = step_runner(model, optimizer, step_batch, loss, scaler, amp)
    prof = profiled(eager, EAGER_PROFILE_STEPS)
    ops = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    timed = device_time_us if ctx.cuda else (lambda e: float(e.self_cpu_time_total))
    rows = sorted(((e.key, e.count, timed(e)) for e in ops), key=lambda r: -r[2])
    total = sum(r[2] for r in rows)
    figures["eager_ms_per_step"] = total / 1000 / EAGER_PROFILE_STEPS
    for category, pattern in CATEGORIES.items():
        figures[f"eager_{category}_share"] = sum(
            us for n, _, us in rows if re.search(pattern, n, re.I)) / max(total, 1e-9)
    clock = "self GPU" if ctx.cuda else "self CPU"
    sections += ["", f"### {EAGER_PROFILE_STEPS} eager steps: aten ops by {clock} time ({total / 1000:.2f} ms)", "",
                 share_table(rows, total, "op")]
    notes = notes_first + [f"shares: {', '.join(f'{k}: /{p}/' for k, p in CATEGORIES.items())} over the "
             "kernel or op names (copies include casts' copies)", "no compile (as the "
             "notebook's step, less Inductor's fusion)"]
    result = {"status": "pass", "figures": figures, "markdown": "\n".join(sections),
              "notes": notes}
    return {**result, **refused(f"capture refused: {problem}")} if problem else result


def train_parity_variant(ctx: Context, settings: dict, batch: dict, model_size: dict,
                         epochs: int) -> tuple:
    """One parity variant trained from seed 0 on `batch` -> (model, history: status, capture,
    skipped_steps, loss and terms per step, its parameters' (storage address, copy) before
    training). Raises ValueError where it needs CUDA (a capturable optimizer's own refusal on
    a CPU)."""
    import torch

    from grown_timbres.loss import OptimizedMultiScaleSpectralLoss
    from grown_timbres.model import DDSPModel
    from grown_timbres.step import make_optimizer
    from grown_timbres.train import train

    torch.manual_seed(0)
    torch.compiler.reset()  # each compiled variant compiles afresh, as the notebook does
    torch.set_float32_matmul_precision("high" if settings["tf32"] else "highest")
    model = DDSPModel(**model_size).to(ctx.device)
    if settings["compile"]:
        model.compile()
    optimizer = make_optimizer(model, capturable=settings["capture"])
    amp = torch.float16 if settings["amp"] and ctx.cuda else None
    scaler = torch.amp.GradScaler("cuda") if amp else None
    loss = OptimizedMultiScaleSpectralLoss()
    before = [(p.data_ptr(), p.detach().clone()) for p in model.parameters()]
    if settings["loop"]:
        history = benchmark_loop(ctx, settings, model, optimizer, loss, scaler, amp, batch,
                                 epochs)
    else:
        checkpoint = ctx.work / "parity_checkpoint.pt" if settings.get("grow") else None
        history = train(model, optimizer, batch, loss, epochs, scaler=scaler, amp_dtype=amp,
                        capture=settings["capture"], progress=False, precompute_waves=True,
                        checkpoint_path=checkpoint)
    return model, history, before


def benchmark_loop(ctx: Context, settings: dict, model, optimizer, loss, scaler, amp,
                   batch: dict, epochs: int) -> dict:
    """benchmarks/benchmark.py's timed_run as of 2026-11-27 (the notebook recipe's row that met
    parity): step_runner on the whole batch, its waves and target spectra precomputed, no
    StepBatches, snapshots or checkpoints -> a history as train() gives it."""
    import torch

    from grown_timbres.history import History
    from grown_timbres.step import step_runner, with_harmonic_waves

    step_batch = with_harmonic_waves(batch, model)
    loss.precompute_target(step_batch["audio"], ctx.device, step_batch["lengths"])
    runner, names = step_runner(model, optimizer, step_batch, loss, scaler, amp)
    capture = runner.capture() if settings["capture"] else "off"
    losses = torch.stack([runner() for _ in range(epochs)]).float().cpu()
    return History(status="finished", capture=capture or "captured", loss=losses[:, 0].tolist(),
                   terms={n: losses[:, i + 1].tolist() for i, n in enumerate(names)})


def parity_measures(ctx: Context, settings: dict, model, batch: dict) -> dict:
    """A trained variant's spectral loss (the plain multi-scale loss, float32) on its training
    examples through the training forward (model(...), compiled where it is, under the step's
    autocast), the eager forward in float32 and in float16 (CUDA), and the notebooks' metric:
    scoring.evaluate_batch's spectral_distance (render, eval mode, whole files; its pYIN
    left out) per file -> figures."""
    import torch

    from grown_timbres.batching import StepBatches, file_features
    from grown_timbres.loss import MultiScaleSpectralLoss
    from grown_timbres.scoring import evaluate_batch
    from grown_timbres.step import with_harmonic_waves

    plain = MultiScaleSpectralLoss()
    step_batch = with_harmonic_waves(StepBatches(batch["examples"]).batch, model)
    inputs = [step_batch[k] for k in ("f0", "loudness", "mfcc", "harmonic_waves")]

    def spectral(pred) -> float:
        return float(plain(pred.float(), step_batch["audio"], step_batch["lengths"]))

    def metric() -> list:
        metrics, _ = evaluate_batch(model, batch, progress=False,
                                    measures=("spectral_distance",), sine=False)
        return [by_kind["model"]["spectral_distance"] for by_kind in metrics.values()]

    amp = settings["amp"] and ctx.cuda
    figures = {}
    with torch.no_grad():
        with torch.autocast(ctx.device.type, dtype=torch.float16 if amp else torch.float32,
                            enabled=amp, cache_enabled=False):
            figures["train_forward"] = spectral(model(*inputs)[0])
        figures["eager_fp32"] = spectral(model.forward(*inputs)[0])
        if ctx.cuda:
            with torch.autocast("cuda", torch.float16, cache_enabled=False):
                figures["eager_fp16"] = spectral(model.forward(*inputs)[0])
    per_file = metric()
    first = Path(batch["file_paths"][0]).stem
    figures.update(metric_mean=statistics.fmean(per_file), metric_first=per_file[0],
                   first_file=first, metric_per_file=per_file)
    if settings.get("grow"):  # the notebook grows every tone before it evaluates
        from grown_timbres.growth import grow_timbre, held_note

        grow_timbre(model, held_note(model, file_features(batch, 0)))
        figures["metric_first_after_growth"] = metric()[0]
    return figures


def parity_variant(ctx: Context, settings: dict, batch: dict, model_size: dict,
                   epochs: int) -> dict:
    """Train one variant, then measure it -> its figures (status "measured"), or "refused"
    with the reason where it needs CUDA."""
    started = time.perf_counter()
    try:
        model, history, before = train_parity_variant(ctx, settings, batch, model_size, epochs)
    except ValueError as err:
        if ctx.cuda:
            raise
        return {"status": "refused", "reason": str(err)}
    after = list(model.parameters())
    figures = {"status": "measured", "training": history.status,
               "capture": history.capture or "off",
               "skipped_steps": history.skipped_steps, "last_loss": history.loss[-1],
               "best_loss": min(history.loss), "spectral_term": history.terms["spectral"][-1],
               # measured before evaluation and growth, which must change no weight
               "storages_kept": all(p.data_ptr() == address
                                    for p, (address, _) in zip(after, before)),
               "max_weight_move": max(float((p.detach() - weights).abs().max())
                                      for p, (_, weights) in zip(after, before))}
    figures.update(parity_measures(ctx, settings, model, batch))
    figures.update(train_vs_eager=figures["train_forward"] / figures["eager_fp32"] - 1,
                   metric_vs_loss=figures["metric_mean"] / figures["spectral_term"] - 1,
                   metric_vs_eager=figures["metric_mean"] / figures["eager_fp32"] - 1,
                   seconds=time.perf_counter() - started)
    return figures


def against_reference(variants: dict, tolerance: float) -> tuple[dict, list]:
    """Each measured variant's metric (mean over the files) against PARITY_REFERENCE's ->
    (figures {<name>_vs_<reference>: metric / reference's - 1}, problems: the variants beyond
    `tolerance` either way, and those that failed)."""
    reference = variants.get(PARITY_REFERENCE, {})
    figures, problems = {}, []
    for name, figs in variants.items():
        if figs["status"] == "failed":
            problems.append(f"{name}: {figs['reason']}")
        if name == PARITY_REFERENCE or figs["status"] != "measured" or \
                reference.get("status") != "measured":
            continue
        change = figs["metric_mean"] / reference["metric_mean"] - 1
        figures[f"{name}_vs_{PARITY_REFERENCE}"] = change
        if not abs(change) <= tolerance:
            problems.append(f"{name}_vs_{PARITY_REFERENCE} {change:+.1%}: metric "
                            f"{figs['metric_mean']:.3f} against {reference['metric_mean']:.3f}, "
                            f"beyond {tolerance:.0%}")
    return figures, problems


PARITY_COLUMNS = ("status", "capture", "skipped_steps", "last_loss", "best_loss",
                  "spectral_term",
                  "train_forward", "eager_fp32", "eager_fp16", "metric_mean", "metric_first",
                  "metric_first_after_growth", "metric_vs_loss", "metric_vs_eager",
                  "train_vs_eager",
                  "storages_kept", "max_weight_move", "seconds")
PARITY_NOTES = [
    "each variant: the bundled tones (figures' files: 12 on the GPU), seed 0, figures' epochs "
    "(benchmark.BATCHED_PARITY_MIN_EPOCHS, 400, on the GPU); spectral figures are "
    "the plain multi-scale loss in float32 on the training examples (train_forward: model(...) "
    "as the step calls it, compiled where compiled, under its autocast; eager_fp32, eager_fp16: "
    "model.forward); metric: the notebooks' spectral_distance (render in eval mode over whole "
    "files), mean over files and on the first (01_C4)",
    "reading it: the reference's metric_vs_loss near 0 is the CPU's behaviour (a model's metric "
    "equals its training loss); metric_vs_eager far from 0 (the same weights, eager float32, "
    "through training's forward and through the render): the gap is in evaluation, not "
    "training",
    "train_forward far from eager_fp32: the compiled or autocast forward computes another "
    "function of the same weights (then eager_fp16 says whether float16 alone does it)",
    "storages_kept false, or max_weight_move near 0: the weights evaluated are not those the "
    "captured step updated (a storage replaced under the graph)",
    "<name>_vs_fp32_eager beyond 5%: that variant's training reached a worse model; fp16_captured "
    "and tf32_captured fine but notebook not: compile; notebook off but benchmark_loop fine: "
    "train()'s own path (StepBatches, snapshots, checkpoints); metric_first_after_growth apart "
    "from metric_first: growth changes the model",
]


def chosen_parity_variants(text: str | None) -> list[str]:
    """--parity-variants' comma list (None: all of PARITY_VARIANTS) -> the names; ValueError
    for an unknown name, or a list without the reference."""
    chosen = [v.strip() for v in (text or ",".join(PARITY_VARIANTS)).split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(PARITY_VARIANTS))
    if unknown or PARITY_REFERENCE not in chosen:
        raise ValueError(f"--parity-variants: {', '.join(unknown) or 'no ' + PARITY_REFERENCE}"
                         f" (choose from {', '.join(PARITY_VARIANTS)}; {PARITY_REFERENCE} "
                         "must run, as the reference)")
    return chosen


def part_parity(ctx: Context) -> dict:
    """Where the optimized notebook's metric parts from its training loss: PARITY_VARIANTS
    trained and measured one after the other (dry run or CPU: 2 tones, DRY_MODEL, 2 epochs;
    the CUDA-only variants refused with their reason)."""
    import benchmark
    from grown_timbres.batching import batch_to_device, collate

    dry = ctx.dry_run or not ctx.cuda
    epochs = 2 if dry else ctx.parity_epochs or benchmark.BATCHED_PARITY_MIN_EPOCHS
    chosen = chosen_parity_variants(ctx.parity_variants)
    batch = batch_to_device(collate(tone_features(2 if dry else 12)), ctx.device)
    model_size = DRY_MODEL if dry else {}
    variants, figures = {}, {"epochs": epochs, "files": len(batch["file_paths"])}
    for name, settings in PARITY_VARIANTS.items():
        if name not in chosen:
            continue
        if ctx.left() < PARITY_VARIANT_LEAST_S:
            variants[name] = {"status": "not run", "reason": f"{ctx.left():.0f} s left"}
            continue
        try:
            variants[name] = parity_variant(ctx, settings, batch, model_size, epochs)
        except Exception as err:  # one variant's CUDA or compile error: the others still run
            traceback.print_exc()
            variants[name] = {"status": "failed",
                              "reason": f"{type(err).__name__}: {str(err)[:300]}"}
        measured = variants[name]
        print(f"{name}: " + (figure_text(measured, len(PARITY_COLUMNS), PARITY_COLUMNS)
                             if measured["status"] == "measured" else
                             f"{measured['status']}: {measured['reason']}"), flush=True)
        for key in ("metric_mean", "metric_vs_loss"):
            if key in measured:
                figures[f"{name}_{key}"] = measured[key]
        figures["variants"] = variants
        ctx.save_partial("parity", {"status": "fail", "figures": figures,
                                    "error": "ran out of time", "notes": PARITY_NOTES})
    compared, problems = against_reference(variants, benchmark.PARITY_TOLERANCE)
    figures.update(compared)
    refusals = [f"{n}: {v['reason']}" for n, v in variants.items()
                if v["status"] in ("refused", "not run")]
    result = {"status": "fail" if problems else "refused" if refusals else "pass",
              "figures": figures, "error": "; ".join(problems + refusals) or None,
              "notes": [f"{n}: {s['what']}" for n, s in PARITY_VARIANTS.items()] + PARITY_NOTES,
              "markdown": parity_table(variants)}
    return result


def parity_table(variants: dict) -> str:
    lines = ["| variant | " + " | ".join(PARITY_COLUMNS) + " |",
             "|---|" + "---|" * len(PARITY_COLUMNS)]
    for name, figs in variants.items():
        cells = [f"{figs[c]:.4g}" if isinstance(figs.get(c), float) else
                 str(figs.get(c, "-")) for c in PARITY_COLUMNS]
        if figs["status"] != "measured":
            cells[1:] = [figs["reason"].replace("|", "/")] + ["-"] * (len(cells) - 2)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry
def main_part(args) -> int:
    ctx = Context(args)
    started = time.perf_counter()
    try:
        result = globals()[f"part_{args.part}"](ctx)
    except Exception as err:
        traceback.print_exc()
        result = {"status": "fail", "error": f"{type(err).__name__}: "
                                               f"{str(err).strip().splitlines()[0][:300] if str(err).strip() else ''}"}
    result["part_seconds"] = time.perf_counter() - started
    (ctx.work / f"{args.part}.json").write_text(json.dumps(result, default=str))
    return 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for gpu_check.json, gpu_check.md "
                        "and the executed notebooks")
    parser.add_argument("--only", help="comma list of parts to run: " + ", ".join(PARTS) +
                        f" (default: all but {', '.join(OPTIONAL_PARTS)})")
    parser.add_argument("--dry-run", action="store_true",
                        help="the same plan at toy sizes on a CPU (CI); CUDA parts refused")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S,
                        help="seconds for the whole check")
    parser.add_argument("--parity-epochs", type=int, help="epochs each parity variant trains "
                        "(default: benchmark.BATCHED_PARITY_MIN_EPOCHS, 400; the notebook: 1000)")
    parser.add_argument("--parity-variants", help="comma list of the parity variants to run "
                        f"(default: all; {PARITY_REFERENCE} always)")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)  # a child's part
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    sys.exit(main_part(arguments) if arguments.part else main_parent(arguments))
