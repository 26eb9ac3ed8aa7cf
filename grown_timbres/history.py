"""The training history: the loss and each of its terms per step, when the host synchronised
and what the run did, as train returns it and a training checkpoint stores it (to_dict;
from_dict reads the older dicts too); and how its steps count as epochs, also across a change
of the files trained on.

The rule for a changed set of files: an epoch is a pass over the examples trained on now, so
the epochs done before the change are counted in examples,

    epochs done = epochs before x examples before / examples now,

and steps after the change are counted at the new steps per epoch. Example: 8 epochs of 1
example, resumed on 12 examples, count as 0.67 epochs of the 12, and `N - epochs_done` more
trains to N epochs and never past them.

    History: loss [steps], terms {name: [steps]}, timed_steps [syncs] and elapsed_seconds
             [syncs], steps_per_epoch, examples_per_step, examples, files, status, ...
"""
from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from dataclasses import dataclass, field

# Keys of the dict a history was before it became a History -> the field holding them now.
RENAMED = {"timed_epochs": "timed_steps"}
# Keys older checkpoints wrote, whose values live elsewhere now (History.from_dict moves them).
RETIRED = {"spectral_loss": 'terms["spectral"]'}


@dataclass
class History:
    """What train records, step by step. A field that is None was not recorded (the run did
    not do that, or an older history did not keep it).

    loss: the total loss of each step; terms: {term name: its value each step}
        (loss.training_loss; a term new since a resume reads NaN for the steps before it)
    timed_steps: the step count at each host synchronisation; elapsed_seconds: the training
        seconds at each (capture excluded)
    skipped_steps: steps a GradScaler skipped (non-finite gradients)
    status: "not started", "running", "finished", or why training stopped
    steps_per_epoch, examples_per_step, examples: the step batches of the last run
    files: [name, seconds] of the files trained on (files_trained)
    epochs_before, steps_before: epochs done when the files last changed, and at which step
        (continue_on)
    checkpoint: what the last checkpoint save did; capture: how the step ran ("captured", or
        why not) and capture_seconds: its warm-up, capture and check; harmonic_waves and
        cached_targets: whether those were computed once or every step

    history["loss"] and history.get(key, default) read it as the old dict was read, with the
    old keys (timed_epochs is timed_steps); a field that is None counts as absent."""

    loss: list = field(default_factory=list)
    terms: dict = field(default_factory=dict)
    timed_steps: list = field(default_factory=list)
    elapsed_seconds: list = field(default_factory=list)
    skipped_steps: int = 0
    status: str = "not started"
    steps_per_epoch: int = 1
    examples_per_step: int | None = None
    examples: int | None = None
    files: list | None = None
    epochs_before: float = 0.0
    steps_before: int = 0
    checkpoint: str | None = None
    capture: str | None = None
    capture_seconds: float | None = None
    harmonic_waves: str | None = None
    cached_targets: str | None = None

    @classmethod
    def from_dict(cls, saved: dict) -> History:
        """A copy of the history in `saved`: a dict to_dict wrote, or an older one (its
        timed_epochs is timed_steps; a spectral_loss curve from before the loss had named terms
        becomes terms["spectral"]). Keys this version does not know are left out; the values
        are not checked here (resume.checked_history checks a checkpoint's)."""
        values = {}
        for key, value in saved.items():
            name = RENAMED.get(key, key)
            if name in FIELD_NAMES and (name == key or name not in saved):
                values[name] = copy.deepcopy(value)
        if "spectral_loss" in saved:
            values["terms"] = {"spectral": copy.deepcopy(saved["spectral_loss"])}
        return cls(**values)

    @property
    def steps_are_epochs(self) -> bool:
        """Whether a step is an epoch: all examples in one step, and no change of files."""
        return self.steps_per_epoch == 1 and not self.steps_before

    def position(self, step: int) -> str:
        """Where `step` is, as status and checkpoint messages say it."""
        return (f"epoch {step}" if self.steps_are_epochs else
                f"step {step} (epoch {epochs_at(self, step):.2f})")

    def record_steps(self, values, names: list, seconds: float) -> None:
        """Append the steps run since the last sync: values [steps, 1 + terms] (each step's
        total, then its terms named `names`), the last of them timed at `seconds`."""
        recorded = len(self.loss)
        self.loss += values[:, 0].tolist()
        for column, name in enumerate(names, start=1):  # a term new since a resume: NaN before
            self.terms.setdefault(name, [math.nan] * recorded).extend(values[:, column].tolist())
        self.timed_steps.append(len(self.loss))
        self.elapsed_seconds.append(seconds)

    def cut_back(self, step: int) -> None:
        """Forget the steps after `step`: their losses and timings."""
        for curve in [self.loss, *self.terms.values()]:
            del curve[step:]
        kept = sum(timed <= step for timed in self.timed_steps)
        del self.timed_steps[kept:], self.elapsed_seconds[kept:]

    def to_dict(self) -> dict:
        """The fields that were recorded (not None), as plain lists, dicts and numbers: what a
        training checkpoint stores."""
        return {name: value for name, value in dataclasses.asdict(self).items()
                if value is not None}

    def __getitem__(self, key: str):
        """history["loss"]: the field under `key`, an old key too (field_of)."""
        return getattr(self, field_of(key))

    def get(self, key: str, default=None):
        """The field under `key` (an old key too), or `default` where it is None or unknown,
        as dict.get read the old history."""
        name = RENAMED.get(key, key)
        value = getattr(self, name) if name in FIELD_NAMES else None
        return default if value is None else value

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def __getattr__(self, name: str):  # only reached for a name that is no attribute
        if name in RENAMED:
            raise AttributeError(f"History has no {name}: it is called {RENAMED[name]} now")
        raise AttributeError(f"'History' object has no attribute {name!r}")


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(History))


def field_of(key: str) -> str:
    """The History field an old history dict's `key` is; KeyError naming where it went, or the
    fields, for a key that is none."""
    name = RENAMED.get(key, key)
    if name in FIELD_NAMES:
        return name
    moved = f": it is {RETIRED[key]} now" if key in RETIRED else ""
    raise KeyError(f"a History has no field {key}{moved} (its fields: {', '.join(FIELD_NAMES)})")


def as_history(history) -> History:
    """`history` as a History: None is a new one, a History itself, a dict (an older history)
    a copy read by History.from_dict."""
    if history is None:
        return History()
    if isinstance(history, History):
        return history
    if isinstance(history, dict):
        return History.from_dict(history)
    raise TypeError(f"history must be a History (or None), not {type(history).__name__}")


def epochs_at(history, step: int) -> float:
    """Epochs done after `step` steps of `history` (a History, or an older history dict):
    those before its last change of files (epochs_before, at steps_before; a step before it
    gets its even share of them), then a step per 1 / steps_per_epoch of an epoch."""
    before, changed_at = history.get("epochs_before", 0.0), history.get("steps_before", 0)
    if step < changed_at:
        return before * step / changed_at
    return before + (step - changed_at) / history.get("steps_per_epoch", 1)


def epochs_done(history) -> float:
    """Epochs a history holds (0 without a history), counted as epochs_at counts them."""
    return epochs_at(history, len(history["loss"])) if history else 0.0


def files_trained(batch) -> list:
    """What identifies the files of a batch (batching.collate): [name, seconds] per file."""
    return [[source["file"], source["seconds"]] for source in batch.get("sources", [])]


def continue_on(history: History, n_examples: int, files: list,
                where: str = "the history") -> None:
    """Make `history` count on over `n_examples` examples of `files` (files_trained): where
    they differ from those it was trained on, the epochs done so far are converted by the rule
    at the top of this file, with one warning; unchanged, nothing moves."""
    saved_files, saved_examples = history.files, history.examples
    changed = ((saved_files is not None and saved_files != files)
               or (saved_examples is not None and saved_examples != n_examples))
    history.files = files
    if not changed:
        return
    before = epochs_done(history)
    history.epochs_before = before * (saved_examples or n_examples) / n_examples
    history.steps_before = len(history.loss)
    history.examples = n_examples
    saved_names = {name for name, _ in saved_files or []}
    names = {name for name, _ in files}
    what = [f"{label} {', '.join(sorted(group)[:3])}{' ...' if len(group) > 3 else ''}"
            for label, group in (("new", names - saved_names), ("gone", saved_names - names))
            if group] or ["the same names, other lengths" if saved_files else "other files"]
    of_examples = f" of {saved_examples} examples" if saved_examples else ""
    warnings.warn(f"{where}: trained on other files than these ({'; '.join(what)}): its "
                  f"{before:g} epochs{of_examples} count as "
                  f"{history.epochs_before:.3g} epochs of the {n_examples} examples now "
                  "(epochs done = epochs before x examples before / examples now)",
                  stacklevel=3)
