"""Growth stages as data (Stage): a name, how many harmonics sound (None = all), whether the
noise sounds, for how long, and whether the model's learned room sounds; the default growth
(GROWTH_STAGES, then ROOM_STAGE for a model with a room), and stages read from a form's table
and written back to one, checked in one place."""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

import numpy as np

from .config import MAX_RENDER_SECONDS, MAX_STAGE_SECONDS, MAX_STAGES, MIN_STAGE_SECONDS

_TRUE_WORDS = {"1", "true", "yes", "y", "on", "x"}
_FALSE_WORDS = {"0", "false", "no", "n", "off", ""}
_ALL_WORD = "all"  # "none" or "" could as well mean no harmonics: only 'all' means all


@dataclass(frozen=True)
class Stage:
    """One growth stage: `name`, how many harmonics sound (`n_harmonics`, None = all), whether
    the `noise` sounds, for how long (`duration`, seconds within MIN_STAGE_SECONDS ..
    MAX_STAGE_SECONDS), and whether the model's `room` sounds (DDSPModel(room=True) only).

    Values may come as a form gives them: n_harmonics '3' or 'all' (or None); noise and room
    on/off, yes/no, true/false, 1/0 (empty or None = off); duration '1.5'. They are checked and
    normalised here, the one place: ValueError names the stage and what is wrong."""

    name: str
    n_harmonics: int | None
    noise: bool
    duration: float
    room: bool = False

    def __post_init__(self):
        where = f"stage {self.name!r}"
        object.__setattr__(self, "n_harmonics", _harmonic_count(self.n_harmonics, where))
        object.__setattr__(self, "noise", _switch(self.noise, where, "noise"))
        object.__setattr__(self, "duration", _seconds(self.duration, where))
        object.__setattr__(self, "room", _switch(self.room, where, "room"))


def _harmonic_count(count, where: str) -> int | None:
    if count is None or (isinstance(count, str) and count.strip().lower() == _ALL_WORD):
        return None
    if isinstance(count, str) and count.strip().isdecimal():
        return int(count)
    if isinstance(count, (int, np.integer)) and not isinstance(count, bool) and count >= 0:
        return int(count)
    if isinstance(count, (float, np.floating)) and float(count).is_integer() and count >= 0:
        return int(count)
    raise ValueError(f"{where}: n_harmonics must be a whole number >= 0 or 'all', got {count!r}")


def _switch(value, where: str, field: str) -> bool:
    if value is None:
        return False
    if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
        return value.strip().lower() in _TRUE_WORDS
    if isinstance(value, (bool, np.bool_, numbers.Real)) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{where}: {field} must be on or off, got {value!r}")


def _seconds(duration, where: str) -> float:
    try:
        seconds = float(duration)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: duration must be seconds, got {duration!r}") from None
    if not (math.isfinite(seconds) and MIN_STAGE_SECONDS <= seconds <= MAX_STAGE_SECONDS):
        raise ValueError(f"{where}: duration must be {MIN_STAGE_SECONDS:g} to "
                         f"{MAX_STAGE_SECONDS:g} s (MIN_STAGE_SECONDS, MAX_STAGE_SECONDS), "
                         f"got {duration!r}")
    return seconds


STAGE_FIELDS = tuple(field.name for field in fields(Stage))  # a form row's columns, in order
GROWTH_STAGES = (
    Stage("fundamental", 1, False, 1.0),
    Stage("3 harmonics", 3, False, 1.0),
    Stage("8 harmonics", 8, False, 1.0),
    Stage("all harmonics", None, False, 1.0),
    Stage("full timbre (harmonics + noise)", None, True, 1.5),
)
ROOM_STAGE = Stage("+ room", None, True, 1.5, room=True)


def stages_from_table(rows) -> list:
    """Stages from Stages, dicts {name, n_harmonics, noise, duration[, room]} or sequences in
    that order (text is fine, see Stage; without room: off); a missing name becomes
    'stage <n>'. Every render takes
    its stages through here. At most MAX_STAGES stages, MAX_RENDER_SECONDS in all. Raises
    ValueError naming the stage and what is wrong.
    Render with grow_timbre(model, ..., stages=stages_from_table(rows)): no retraining."""
    if isinstance(rows, (Stage, dict, str)) or not hasattr(rows, "__iter__"):
        raise ValueError(f"stages are a list of stages (put one stage in a list), got "
                         f"{type(rows).__name__}")
    stages, total = [], 0.0
    for i, row in enumerate(rows, start=1):
        if i > MAX_STAGES:
            raise ValueError(f"more than MAX_STAGES={MAX_STAGES} stages")
        stage = row if isinstance(row, Stage) else Stage(*_stage_values(row, i))
        total += stage.duration
        if total > MAX_RENDER_SECONDS:
            raise ValueError(f"stage {stage.name!r} (row {i}) brings the growth to {total:g} s, "
                             f"more than MAX_RENDER_SECONDS={MAX_RENDER_SECONDS:g} s")
        stages.append(stage)
    if not stages:
        raise ValueError("a growth needs at least one stage")
    return stages


def _stage_values(row, i: int) -> list:
    """A dict or sequence row's values in STAGE_FIELDS order, its name defaulted."""
    if isinstance(row, (str, bytes)) or not isinstance(row, (dict, list, tuple)):
        raise ValueError(f"stage row {i}: a stage is a Stage, a dict or a sequence "
                         f"{STAGE_FIELDS}, got {type(row).__name__} {row!r:.40}")
    if not isinstance(row, dict):
        if len(row) not in (len(STAGE_FIELDS) - 1, len(STAGE_FIELDS)):
            raise ValueError(f"stage {str(row[0]) if row else ''!r} (row {i}) has "
                             f"{len(row)} values, not {len(STAGE_FIELDS) - 1} or "
                             f"{len(STAGE_FIELDS)} {STAGE_FIELDS} (room may be left out)")
        row = dict(zip(STAGE_FIELDS, row))
    name = str(row.get("name") or "").strip() or f"stage {i}"
    missing = [f for f in STAGE_FIELDS[1:-1] if f not in row]  # room may be left out: off
    unknown = sorted(map(str, set(row) - set(STAGE_FIELDS)))
    if missing or unknown:
        raise ValueError(f"stage {name!r} (row {i}) "
                         + (f"lacks {missing}" if missing else "")
                         + (" and " if missing and unknown else "")
                         + (f"has unknown field(s) {unknown}" if unknown else "")
                         + f"; a stage has {STAGE_FIELDS}")
    return [name, *(row.get(field) for field in STAGE_FIELDS[1:])]


def stages_to_table(stages=GROWTH_STAGES) -> list:
    """Stages as form rows (n_harmonics None -> 'all'), the inverse of stages_from_table."""
    return [{**asdict(s), "n_harmonics": "all" if s.n_harmonics is None else s.n_harmonics}
            for s in stages_from_table(stages)]
