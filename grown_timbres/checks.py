"""What a notebook run made, checked: the smoke runs (DDSP_SMOKE=1, CI) call check_run_outputs
at their end, so wrong but finite results fail the run instead of passing because no cell
raised.

    {wav path: expected length}, metrics, growth table -> one-line summary, or RunCheckError
"""
from __future__ import annotations

import math
import numbers
import re
from pathlib import Path

import numpy as np

from .audio import SILENCE_PEAK, read_wav
from .config import HOP_LENGTH, SAMPLE_RATE
from .room_part import ROOM_SECONDS
from .stages import Stage
from .markup import markdown_text
from .notes import Note
from .melody import RELEASE_SECONDS

# A melody ends with its last note's release, on a whole frame, and a room's tail is whole frames
# too: it may run this much past its notes (and tail), never short of them (notes_to_controls).
MELODY_SLACK_SAMPLES = round(RELEASE_SECONDS * SAMPLE_RATE) + 3 * HOP_LENGTH
_STAGE_CELL = re.compile(r"^-?\d+\.\d dB, \d+ Hz$")  # a stage's level and centroid
_NOISE_CELL = re.compile(r"^-?\d+\.\d dB$")  # what the noise adds


class RunCheckError(AssertionError):
    """What a run made is wrong: the message lists every problem found, one per line."""


def expected_samples(expected, room: bool = False) -> tuple[int, int]:
    """(fewest, most) samples a wav may hold. `expected`: a length in samples; Stages (a
    growth render: the stages' seconds, exactly); Notes (a melody: its notes' seconds, up to
    MELODY_SLACK_SAMPLES more for the release); or f0 frames [T] (a melody from a recording's
    controls: T frames of HOP_LENGTH). A melody of a model with a `room` has ROOM_SECONDS
    more, where the room rings out."""
    if isinstance(expected, (int, np.integer)):
        return int(expected), int(expected)
    items = list(expected)
    if items and all(isinstance(item, Stage) for item in items):
        n = round(sum(stage.duration for stage in items) * SAMPLE_RATE)
        return n, n
    tail = round(ROOM_SECONDS * SAMPLE_RATE) if room else 0
    if items and all(isinstance(item, Note) for item in items):
        n = round(sum(note.duration for note in items) * SAMPLE_RATE) + tail
        return n, n + MELODY_SLACK_SAMPLES
    if isinstance(expected, np.ndarray) and expected.ndim == 1 and len(expected):
        n = len(expected) * HOP_LENGTH + tail
        return n, n + HOP_LENGTH  # the room's tail is a whole number of frames
    raise TypeError(f"an expected length is samples, Stages, Notes or f0 frames, got "
                    f"{type(expected).__name__}")


def wav_problems(path, expected, room: bool = False) -> list[str]:
    """What is wrong with the wav at `path`: not at SAMPLE_RATE, not finite, silent (peak under
    SILENCE_PEAK) or not as long as `expected` (see expected_samples)."""
    import soundfile as sf

    name = Path(path).name
    if not Path(path).is_file():
        return [f"{name}: not written"]
    rate = sf.info(str(path)).samplerate
    audio = read_wav(path)
    fewest, most = expected_samples(expected, room)
    problems = []
    if rate != SAMPLE_RATE:
        problems.append(f"{name}: {rate} Hz, not {SAMPLE_RATE}")
    if not np.all(np.isfinite(audio)):
        problems.append(f"{name}: {np.count_nonzero(~np.isfinite(audio))} non-finite samples")
    elif np.max(np.abs(audio), initial=0.0) < SILENCE_PEAK:
        problems.append(f"{name}: silent (peak {np.max(np.abs(audio), initial=0.0):.1e})")
    if not fewest <= len(audio) <= most:
        wanted = f"{fewest}" if fewest == most else f"{fewest} to {most}"
        problems.append(f"{name}: {len(audio)} samples, expected {wanted}")
    return problems


def metric_problems(metrics: dict) -> list[str]:
    """Every metric of evaluate_batch's {stem: {"model": {...}, "sine": {...}}} that is not a
    finite number, and an empty table."""
    if not metrics:
        return ["the metrics table is empty"]
    return [f"metric {name} of {stem} ({which}) is {value!r}"
            for stem, by_kind in metrics.items() for which, values in by_kind.items()
            for name, value in values.items()
            if not (isinstance(value, numbers.Real) and math.isfinite(value))]


def growth_table_problems(table: str, stages, stems) -> list[str]:
    """What is wrong with report.growth_table's markdown: a column per stage (its name, in
    order) and one row per grown file (`stems`), every stage's level and centroid finite."""
    lines = [line for line in table.strip().splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    names = [markdown_text(stage.name) for stage in stages]  # as growth_table escapes them
    if not cells or cells[0][1:-1] != names:
        return [f"the growth table's stages are {cells[0][1:-1] if cells else []}, not {names}"]
    problems = []
    if sorted(row[0] for row in cells[2:]) != sorted(markdown_text(stem) for stem in stems):
        problems.append(f"the growth table's rows are {[row[0] for row in cells[2:]]}, "
                        f"not one per file {list(stems)}")
    for row in cells[2:]:
        stem, levels, noise = row[0], row[1:-1], row[-1]
        problems += [f"growth of {stem}, stage {name!r}: {cell!r} is not a finite level and "
                     "centroid" for name, cell in zip(names, levels)
                     if not _STAGE_CELL.match(cell)]
        if len(levels) != len(names):
            problems.append(f"growth of {stem}: {len(levels)} stages, not {len(names)}")
        if not _NOISE_CELL.match(noise):
            problems.append(f"growth of {stem}: the noise adds {noise!r}, not a finite level")
    return problems


def check_run_outputs(wavs: dict, metrics: dict, growth_table: str, stages,
                      room: bool = False) -> str:
    """Check what a run made; returns a one-line summary, or raises RunCheckError listing
    every problem.

    wavs: {path: expected length} for every wav the run wrote (expected_samples: samples for a
    resynthesis, Stages for a growth, Notes or f0 frames for a melody; `room`: the model has
    one, so a melody has its tail); metrics: evaluate_batch's, every value finite; growth_table:
    report.growth_table's markdown over `stages`, one row per file the metrics cover."""
    stages = list(stages)
    problems = [problem for path, expected in wavs.items()
                for problem in wav_problems(path, expected, room)]
    problems += metric_problems(metrics)
    problems += growth_table_problems(growth_table, stages, list(metrics))
    if problems:
        raise RunCheckError("what the run made is wrong:\n" + "\n".join(problems))
    return (f"checked {len(wavs)} wavs (finite, not silent, as long as expected), "
            f"{sum(len(v) for by_kind in metrics.values() for v in by_kind.values())} metrics "
            f"(finite) and the growth table ({len(metrics)} files x {len(stages)} stages)")
