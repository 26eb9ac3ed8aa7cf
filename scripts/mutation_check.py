#!/usr/bin/env python3
"""Mutation check: do the tests notice plausible bugs? Run it before a large refactor.

Each mutation below is one bug a real developer could make (gradients clipped before the
GradScaler unscales them, a detached loss, a dropped loss term, growth stages at the wrong
speed, ...), written as data: an id, a one-line description and a text substitution
(old snippet -> new snippet), with alternatives for small rewordings. For each mutation the
script copies the repository to a temporary folder (the checkout is never touched: tracked
files plus untracked, non-ignored ones, so uncommitted tests count), plants the bug there, runs
the test suite and reports whether it failed:

    mutation     result          caught by                                            time
    no-time-l1   caught (tests)  tests/test_train.py::test_returned_loss_is_...     109 s

The old snippet is searched in the project's Python sources (`ddsp_helpers.py` and every
`*.py` under `grown_timbres/`, whichever exist) and must occur exactly once across them: a
snippet that is missing or ambiguous is reported as a failure, so a refactor that rewrites the
code shows up here and the snippet gets updated. Multi-line snippets ignore indentation.
Before the mutations, the unmutated suite runs once and must pass (`--skip-baseline` skips it).

Run from anywhere (it uses the interpreter that runs it):

    .venv/bin/python scripts/mutation_check.py                 # unit tests, all mutations
    .venv/bin/python scripts/mutation_check.py --list          # mutations and where they apply
    .venv/bin/python scripts/mutation_check.py --only no-zero-grad,float32-phase
    .venv/bin/python scripts/mutation_check.py --notebooks     # also the smoke notebooks (nbval)
    .venv/bin/python scripts/mutation_check.py --notebooks-only --only detached-cached-loss
    .venv/bin/python scripts/mutation_check.py --jobs 2        # two mutations at a time
    .venv/bin/python scripts/mutation_check.py --owner-tests   # each by its own file's tests

The unit tests run as `python -m pytest -x -q -rfE -p no:cacheprovider tests` (stop at the
first failure, so "caught by" names the first failing test, not every one); `--pytest-args` adds
arguments, e.g. `--pytest-args="-k 'not notebook'"`. `--owner-tests` runs, for each mutation,
only the test file of the file it changes (`tests/test_capture.py` for
`grown_timbres/capture.py`), so a bug caught only by accident elsewhere shows up as not caught.
With `--notebooks`, a mutation the unit tests miss is then tried on both notebooks in smoke
mode (`DDSP_SMOKE=1 python -m pytest -q
notebooks/ddsp_optimized.ipynb notebooks/ddsp_original.ipynb --nbval-lax --nbval-current-env`;
in smoke mode the notebooks assert their own claims). `--keep` keeps the copies and the pytest
output. Exit status: 0 when every mutation is caught, 1 when one survives or cannot be
applied, 2 when the baseline fails.

How long: on a 2-core CPU shared with other work, the full default run (baseline + 12
mutations, --jobs 1) took 21 minutes: 2 minutes for the baseline, 1 to 2.5 minutes per caught
mutation (pytest stops at the first failure); a surviving mutation costs a whole suite run.
The two smoke notebooks add about 3 minutes to the baseline and to every mutation the unit
tests miss (`--notebooks`), or to every mutation (`--notebooks-only`).
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "grown_timbres"  # the package ddsp_helpers.py is being split into
LEGACY_MODULE = "ddsp_helpers.py"
UNIT_COMMAND = ["-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider"]
UNIT_TESTS = "tests"
NOTEBOOK_COMMAND = ["-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider",
                    "notebooks/ddsp_optimized.ipynb", "notebooks/ddsp_original.ipynb",
                    "--nbval-lax", "--nbval-current-env"]


@dataclass(frozen=True)
class Mutation:
    id: str
    description: str
    substitutions: tuple  # ((old, new), ...): the first old that occurs exactly once is used


MUTATIONS = [
    Mutation("clip-before-unscale",
             "training_step clips the gradients before scaler.unscale_ (clips scaled grads)",
             (("scaler.unscale_(optimizer)\n"
               "torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)",
               "torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)\n"
               "scaler.unscale_(optimizer)"),
              ("scaler.unscale_(optimizer)\n"
               "nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)",
               "nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)\n"
               "scaler.unscale_(optimizer)"))),
    Mutation("detached-cached-loss",
             "the spectral term (the cached-target loss's too) is detached: only L1 trains",
             (('"spectral": spectral_loss(pred_audio, target_audio, lengths),',
               '"spectral": spectral_loss(pred_audio, target_audio, lengths).detach(),'),
              ("spectral = spectral_loss(pred_audio)",
               "spectral = spectral_loss(pred_audio).detach()"))),
    Mutation("stale-cached-target",
             "the cached-target loss keeps its first target's spectra whatever target it gets",
             (("if target_audio is not cached_target or lengths is not cached_lengths:",
               "if self.cached_spectra is None:"),)),
    Mutation("no-time-l1",
             "the time-domain L1 term is dropped from the total loss",
             (("return sum(terms.values()), terms", 'return terms["spectral"], terms'),
              ("loss = spectral + TIME_LOSS_WEIGHT * time_domain_l1(pred_audio, target, lengths)",
               "loss = spectral"),
              ("+ TIME_LOSS_WEIGHT * time_domain_l1(", "+ 0.0 * time_domain_l1("))),
    Mutation("stage-timing-x2",
             "stage_weights runs the growth stages at half speed (times off by 2x)",
             (("times = np.arange(n_frames) * frame_seconds",
               "times = np.arange(n_frames) * frame_seconds / 2"),)),
    Mutation("no-crossfade",
             "stage_weights switches stages abruptly (no crossfade)",
             (("width = max(crossfade_seconds, 1e-9)", "width = 1e-9"),
              ("np.clip((times - b) / width + 0.5, 0, 1)", "(times >= b).astype(float)"))),
    Mutation("interp-wrong-frame",
             "harmonic_synth interpolates the amplitudes toward the previous frame, not the next",
             (("following = torch.cat([amplitudes[:, 1:], amplitudes[:, -1:]], dim=1)",
               "following = torch.cat([amplitudes[:, :1], amplitudes[:, :-1]], dim=1)"),)),
    Mutation("upsample-wrong-frame",
             "upsample_frames (f0 to audio rate) interpolates toward the previous frame",
             (("following = torch.cat([x[:, 1:], x[:, -1:]], dim=1)",
               "following = torch.cat([x[:, :1], x[:, :-1]], dim=1)"),)),
    Mutation("sine-baseline-3db",
             "sine_baseline forgets the sine's mean square a^2/2: 3 dB too quiet",
             (("np.sqrt(2.0 * 10.0 **", "np.sqrt(10.0 **"),)),
    Mutation("speedup-inverted",
             "comparison_rows divides the run's time by the baseline's (speedup inverted)",
             (("baseline / pace if", "pace / baseline if"),)),
    Mutation("no-zero-grad",
             "training_step no longer zeroes the gradients (they accumulate over steps)",
             (("optimizer.zero_grad(set_to_none=True)", "pass"),
              ("optimizer.zero_grad()", "pass"))),
    Mutation("no-scaler-resume",
             "resume_training does not restore the GradScaler's state",
             (("scaler.load_state_dict(scaler_state)", "pass"),)),
    Mutation("no-checksum-check",
             "read_checkpoint computes the parts' checksums but never compares them",
             (("if saved.get(part) != actual[part]:", "if False:"),)),
    Mutation("files-change-unnoticed",
             "a run resumed on other files counts its epochs as if they were the same",
             (("    if not changed:\n        return", "    if True:\n        return"),)),
    Mutation("float32-phase",
             "cumulative_phase accumulates the phase in float32 instead of float64",
             (("cumsum(f0_audio.double()", "cumsum(f0_audio.float()"),)),
    Mutation("held-note-all-frames",
             "the held note is taken over all of a file's frames, release tail included",
             (("return pool & (loudness >= loudness[pool].max() - SUSTAIN_WINDOW_DB)",
               "return np.ones_like(pool)"),)),
    Mutation("absolute-record-paths",
             "run records store absolute paths (the comparison breaks when the folder moves)",
             (("return path.relative_to(Path(root).resolve()).as_posix()", "return str(path)"),)),
    Mutation("player-own-gain",
             "each player in a table is scaled on its own (relative levels lost)",
             (('f"<td>{audio_player(clips[c], gain=gain)}</td>"',
               'f"<td>{audio_player(clips[c])}</td>"'),)),
    Mutation("room-doubles-dry",
             "apply_room keeps tap 0 in the wet part: the direct sound is added twice",
             (("wet_taps = torch.cat([taps.new_zeros(1), taps[1:]])", "wet_taps = taps"),)),
    Mutation("room-ignores-gain",
             "the room drops room_gain: the room sounds in every growth stage and dry melody",
             (("return apply_room(audio, self.impulse_response(weights), gain)",
               "return apply_room(audio, self.impulse_response(weights))"),)),
    Mutation("room-noise-shared-rate",
             "the room's noise taps learn at the shared rate: its response barely moves",
             (('lr_scales = {"room_noise": ROOM_NOISE_LR_SCALE}',
               'lr_scales = {"room_noise": 1}'),)),
    Mutation("no-end-window",
             "a long file's windows stop at the last full hop: its last seconds are never trained",
             (("if starts[-1] + EXAMPLE_FRAMES < n_frames:", "if False:"),)),
    Mutation("silence-trained",
             "silent and unpitched windows of a long file are trained on",
             (("keep = loud & pitched", "keep = loud | ~loud"),)),
    Mutation("excerpt-from-start",
             "a long file's excerpt is its first 30 s, silent or not",
             (("return int(np.argmax(in_window))", "return 0"),)),
    Mutation("same-order-every-epoch",
             "every epoch steps through the examples in the same order",
             (("manual_seed(SHUFFLE_SEED + epoch)", "manual_seed(SHUFFLE_SEED)"),)),
    Mutation("capture-self-compare",
             "the captured step's check compares the replayed losses with themselves",
             (("error = ((replayed - eager).abs()", "error = ((replayed - replayed).abs()"),)),
    Mutation("held-note-mean",
             "the held note takes each control's mean over the sustained frames, not its median",
             (("np.median(value[0].double().cpu().numpy()[keep], axis=0)",
               "np.mean(value[0].double().cpu().numpy()[keep], axis=0)"),)),
    Mutation("room-gain-squared",
             "the room applies its wet gain twice (squared): a fading room is too quiet",
             (("return apply_room(audio, self.impulse_response(weights), gain)",
               "return apply_room(audio, self.impulse_response(weights), "
               "None if gain is None else gain * gain)"),)),
    Mutation("a-weighting-sign",
             "loudness applies the A-weighting with its sign flipped (bass boosted, not cut)",
             (("a_weight = 10.0 ** (librosa.A_weighting(freqs) / 10.0)",
               "a_weight = 10.0 ** (-librosa.A_weighting(freqs) / 10.0)"),)),
    Mutation("loss-unmasked-prediction",
             "the spectral loss masks the target's padding but not the prediction's",
             (("pred_audio = self._masked(pred_audio, lengths)",
               "pred_audio = pred_audio.float()"),)),
    Mutation("minibatch-stale-target",
             "with several steps an epoch the cached-target loss keeps the first step's spectra",
             (("if feed.changes:  # its cache is keyed", "if False:  # its cache is keyed"),)),
]


# ----------------------------------------------------------------------------- sources
def source_files(root: Path) -> list[Path]:
    """The project's Python sources, relative to root: the module and/or the package."""
    files = [Path(LEGACY_MODULE)] if (root / LEGACY_MODULE).is_file() else []
    if (root / PACKAGE).is_dir():
        files += sorted(p.relative_to(root) for p in (root / PACKAGE).rglob("*.py"))
    return files


def snippet_pattern(old: str) -> re.Pattern:
    """One line: the literal text. Several lines: each line's leading whitespace is free."""
    lines = old.split("\n")
    return re.compile(re.escape(lines[0]) + "".join(
        rf"\n(?P<indent{k}>[ \t]*)" + re.escape(line.lstrip())
        for k, line in enumerate(lines[1:], 1)))


def indented(new: str, match: re.Match, first_indent: str) -> str:
    """New text whose line k (k > 0) takes the indentation of the matched line k, or of the
    matched first line when the new text has more lines."""
    first, *rest = new.split("\n")
    groups = match.groupdict()
    return "\n".join([first] + [groups.get(f"indent{k}", first_indent) + line.lstrip()
                                 for k, line in enumerate(rest, 1)])


@dataclass
class Site:
    path: Path  # relative to the repository root
    line: int
    old: str
    new: str


def locate(mutation: Mutation, root: Path, texts: dict | None = None):
    """(Site, None) for the first alternative that occurs exactly once across the sources,
    else (None, reason)."""
    files = source_files(root)
    if not files:
        return None, f"no sources ({LEGACY_MODULE} or {PACKAGE}/) in {root}"
    texts = texts if texts is not None else {f: (root / f).read_text() for f in files}
    counts = []
    for old, new in mutation.substitutions:
        pattern = snippet_pattern(old)
        hits = [(f, m) for f in files for m in pattern.finditer(texts[f])]
        counts.append(len(hits))
        if len(hits) == 1:
            path, match = hits[0]
            text = texts[path]
            line_start = text.rfind("\n", 0, match.start()) + 1
            indent = re.match(r"[ \t]*", text[line_start:]).group()
            return Site(path, text.count("\n", 0, match.start()) + 1, match.group(),
                        indented(new, match, indent)), None
    if all(c == 0 for c in counts):
        return None, "snippet not found"
    return None, "snippet ambiguous: " + ", ".join(
        f"alternative {i} {'not found' if c == 0 else f'matches {c} times'}"
        for i, c in enumerate(counts, 1))


def apply(site: Site, root: Path) -> str | None:
    """Plant the bug in root (a copy); returns an error if the result is not valid Python."""
    path = root / site.path
    text = path.read_text()
    assert text.count(site.old) >= 1
    mutated = text.replace(site.old, site.new, 1)
    try:
        compile(mutated, str(path), "exec")
    except SyntaxError as error:
        return f"mutated source does not compile: {error}"
    path.write_text(mutated)
    return None


# ----------------------------------------------------------------------------- running
def repository_files(root: Path) -> list[str]:
    """Tracked files plus untracked, non-ignored ones (as in the working tree)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=root, check=True, capture_output=True).stdout
    return sorted({name for name in out.decode().split("\0") if name})


def snapshot(root: Path, destination: Path) -> Path:
    """Copy the repository's files (repository_files) as they are now to destination."""
    for name in repository_files(root):
        source = root / name
        if source.is_file():  # a tracked file deleted in the working tree is left out
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def fresh_copy(source: Path, parent: Path, label: str) -> Path:
    """A copy of the snapshot to run in (runs write outputs/, so each gets its own)."""
    destination = Path(tempfile.mkdtemp(prefix=f"{label}_", dir=parent)) / "repo"
    shutil.copytree(source, destination, symlinks=True)
    return destination


@dataclass
class Outcome:
    passed: bool
    failures: list
    seconds: float
    stage: str
    tail: str = ""


def run_pytest(copy: Path, args: list, smoke: bool, timeout: float, stage: str) -> Outcome:
    env = dict(os.environ, PYTHONPATH=str(copy), MPLBACKEND="Agg")
    env.pop("DDSP_SMOKE", None)
    if smoke:
        env["DDSP_SMOKE"] = "1"
    start = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, *args], cwd=copy, env=env, timeout=timeout,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except subprocess.TimeoutExpired as expired:
        output = expired.stdout or ""
        output = output.decode(errors="replace") if isinstance(output, bytes) else output
        return Outcome(False, [f"(timed out after {timeout:.0f} s)"],
                       time.perf_counter() - start, stage, output[-3000:])
    (copy / f"mutation_check_{stage}.log").write_text(result.stdout)  # kept with --keep
    failures = [line.split(" - ")[0].split(" ", 1)[1]
                for line in result.stdout.splitlines()
                if line.startswith(("FAILED ", "ERROR "))]
    if result.returncode != 0 and not failures:
        failures = [f"(pytest exit status {result.returncode})"]
    return Outcome(result.returncode == 0, failures, time.perf_counter() - start, stage,
                   result.stdout[-3000:])


def owner_tests(site: Site) -> str:
    """The test file that owns the mutated file: tests/test_<name>.py for <package>/<name>.py."""
    return f"{UNIT_TESTS}/test_{site.path.stem}.py"


def run_suite(copy: Path, unit: bool, notebooks: bool, timeout: float, stop_early: bool,
              extra: list = (), tests: list = (UNIT_TESTS,)) -> Outcome:
    """The unit tests in `tests` (extra: more pytest arguments), then the smoke notebooks, as
    asked;
    stop_early: skip the notebooks once the unit tests have failed."""
    runs = []
    if unit:
        runs.append(run_pytest(copy, UNIT_COMMAND + list(tests) + list(extra), False, timeout,
                               "tests"))
    if notebooks and not (stop_early and runs and not runs[0].passed):
        runs.append(run_pytest(copy, NOTEBOOK_COMMAND, True, timeout, "notebooks"))
    return Outcome(all(r.passed for r in runs), [f for r in runs for f in r.failures],
                   sum(r.seconds for r in runs),
                   "+".join(r.stage for r in runs if not r.passed),
                   "\n".join(r.tail for r in runs))


# ----------------------------------------------------------------------------- reporting
def fmt_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def print_table(rows: list) -> None:
    """rows: (id, result, caught by, time)."""
    header = ("mutation", "result", "caught by", "time")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row[:3], widths)), row[3], sep="  ")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Plants each mutation in a temporary copy of the repository and runs the tests.")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--only", metavar="ID[,ID]", help="run only these mutations")
    parser.add_argument("--notebooks", action="store_true",
                        help="also run the two notebooks in smoke mode (nbval)")
    parser.add_argument("--notebooks-only", action="store_true",
                        help="run only the smoke notebooks, not the unit tests")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="mutations run in parallel (default 1)")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="do not run the unmutated suite first")
    parser.add_argument("--timeout", type=float, default=1800, metavar="S",
                        help="limit per pytest command in seconds (default 1800)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies (with the "
                        "pytest output in mutation_check_*.log)")
    parser.add_argument("--owner-tests", action="store_true",
                        help="run only the test file that owns each mutated file "
                        "(tests/test_<name>.py for grown_timbres/<name>.py): is each bug caught "
                        "where it belongs? The baseline runs those files only")
    parser.add_argument("--pytest-args", default="", metavar="ARGS",
                        help="more arguments for the unit-test run, e.g. \"-k 'not slow'\"")
    args = parser.parse_args(argv)

    mutations = MUTATIONS
    if args.only:
        wanted = [m.strip() for m in args.only.split(",") if m.strip()]
        unknown = sorted(set(wanted) - {m.id for m in MUTATIONS})
        if unknown:
            parser.error(f"unknown mutation {', '.join(unknown)}; --list shows them")
        mutations = [m for m in MUTATIONS if m.id in wanted]

    if args.list:
        sites = {m.id: locate(m, ROOT) for m in mutations}
        width = max(len(m.id) for m in mutations)
        for m in mutations:
            site, problem = sites[m.id]
            where = f"{site.path}:{site.line}" if site else f"FAILS: {problem}"
            print(f"{m.id.ljust(width)}  {m.description}\n{'':{width}}  -> {where}")
        return 1 if any(site is None for site, _ in sites.values()) else 0

    extra = shlex.split(args.pytest_args)
    workdir = Path(tempfile.mkdtemp(prefix="mutation_check_"))
    # One snapshot of the working tree, so that every run sees the same code and tests even if
    # files change while the check runs; the snippets are located in it.
    source = snapshot(ROOT, workdir / "snapshot")
    sites = {m.id: locate(m, source) for m in mutations}
    unit, notebooks = not args.notebooks_only, args.notebooks or args.notebooks_only

    def suite_for(site):
        """The test files to run: all, or with --owner-tests the mutated file's owner (the
        baseline: every owner of a mutation that applies)."""
        if not args.owner_tests:
            return [UNIT_TESTS]
        if site is not None:
            return [owner_tests(site)]
        return sorted({owner_tests(s) for s, _ in sites.values() if s is not None})
    what = " + ".join(["unit tests"] * unit + ["smoke notebooks"] * notebooks)
    print(f"{len(mutations)} mutations, {what}, {args.jobs} at a time; copies in {workdir}",
          flush=True)
    total_start = time.perf_counter()
    try:
        if not args.skip_baseline:
            copy = fresh_copy(source, workdir, "baseline")
            baseline = run_suite(copy, unit, notebooks, args.timeout, stop_early=False,
                                 extra=extra, tests=suite_for(None))
            if not baseline.passed:
                print(f"\nBASELINE FAILS ({fmt_seconds(baseline.seconds)}): the unmutated "
                      f"suite must pass before mutations mean anything. Failing: "
                      f"{', '.join(baseline.failures)}\n--- output tail ---\n{baseline.tail}")
                return 2
            print(f"baseline passes ({fmt_seconds(baseline.seconds)})", flush=True)

        def check(mutation: Mutation):
            site, problem = sites[mutation.id]
            if site is None:
                return mutation.id, f"FAILED: {problem}", "-", 0.0, False
            copy = fresh_copy(source, workdir, mutation.id)
            problem = apply(site, copy)
            if problem:
                return mutation.id, f"FAILED: {problem}", "-", 0.0, False
            outcome = run_suite(copy, unit, notebooks, args.timeout, stop_early=True,
                                extra=extra, tests=suite_for(site))
            if not args.keep:
                shutil.rmtree(copy.parent, ignore_errors=True)
            if outcome.passed:
                return mutation.id, "NOT caught", "-", outcome.seconds, False
            return (mutation.id, f"caught ({outcome.stage})", ", ".join(outcome.failures),
                    outcome.seconds, True)

        rows = []
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            for row in pool.map(check, mutations):
                print(f"  {row[0]}: {row[1]} {fmt_seconds(row[3])}", flush=True)
                rows.append(row)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print_table([(r[0], r[1], r[2], fmt_seconds(r[3])) for r in rows])
    survivors = [r[0] for r in rows if not r[4]]
    print(f"\n{len(rows) - len(survivors)}/{len(rows)} caught in "
          f"{fmt_seconds(time.perf_counter() - total_start)}"
          + (f"; not caught or not applied: {', '.join(survivors)}" if survivors else ""))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
