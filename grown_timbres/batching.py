"""Batching: files -> training examples and listening excerpts -> a TrainingSet; the batches
of training steps.

A file longer than one example is cut into EXAMPLE_SECONDS windows every EXAMPLE_HOP_SECONDS
(as magenta does), the last one ending at the file's end so that every second is used; windows
that are silent or mostly unpitched are dropped. A shorter file is one example of its own
length. Evaluation, growth and melodies use one excerpt per file: the whole file up to
EXCERPT_SECONDS, else its most sustained EXCERPT_SECONDS.

    paths -> load_multiple_files -> [Features] -> collate -> TrainingSet (training_set.py):
      excerpts: the files' excerpts, padded (f0 [B, T, 1] Hz, ..., lengths [B]);
      examples: every file's frames end to end, each file followed by EXAMPLE_FRAMES of
        padding, and per example its start frame and length: starts [E], lengths [E];
      file_paths, sources (a row per file: what training used of it), errors {path: reason}
    StepBatches(examples, batch_size).load(step) -> the padded batch [batch_size, T, ...] of
      one training step, written into the same tensors every step
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from .audio import AudioInputError
from .config import FRAME_RATE, HOP_LENGTH, LOUDNESS_FLOOR_DB, SAMPLE_RATE, checked_number
from .features import Features, extract_files
from .training_set import FRAME_FIELDS, Examples, Excerpts, TrainingSet

EXAMPLE_SECONDS = 4.0  # magenta's training examples: 4 s, one every second
EXAMPLE_HOP_SECONDS = 1.0
# Windows are counted in frames of config's hop (FRAME_RATE), read when a batch is made
EXAMPLE_FRAMES = int(EXAMPLE_SECONDS * FRAME_RATE)  # 344 frames, 3.99 s
EXAMPLE_HOP_FRAMES = int(EXAMPLE_HOP_SECONDS * FRAME_RATE)  # 86
EXCERPT_SECONDS = 30.0  # what evaluation, growth and melodies see of a file
EXCERPT_FRAMES = int(EXCERPT_SECONDS * FRAME_RATE)
# A window of a long file is trained on when some frame is louder than this and enough of its
# frames are pitched; a file that is one example is always kept (it passed the file's checks).
SILENT_EXAMPLE_DB = -60.0
MIN_VOICED_FRACTION = 0.25
SHUFFLE_SEED = 0  # each epoch's order of examples: randperm seeded by SHUFFLE_SEED + epoch


def pad_to(array: np.ndarray, n_frames: int, frame_axis: int = 0, hop: int = 1,
           value: float | None = None) -> np.ndarray:
    """Pad along `frame_axis` to n_frames * hop: with `value`, or by holding the last entry."""
    missing = n_frames * hop - array.shape[frame_axis]
    widths = [(0, 0)] * array.ndim
    widths[frame_axis] = (0, missing)
    if value is None:
        return np.pad(array, widths, mode="edge")
    return np.pad(array, widths, mode="constant", constant_values=value)


def padding(hop_length: int) -> dict:
    """How each feature is padded: {name: (samples per frame, fill value; None holds the last
    entry)}. f0 and MFCCs are held, loudness floored, audio zeroed, padding unvoiced; the loss
    masks it out."""
    return {"f0": (1, None), "loudness": (1, LOUDNESS_FLOOR_DB), "mfcc": (1, None),
            "audio": (hop_length, 0.0), "voiced": (1, False)}


PADDING = padding(HOP_LENGTH)  # at config's hop: for takes made by hand (benchmarks)


def example_starts(n_frames: int) -> np.ndarray:
    """Start frames of the training windows of a file of n_frames: one window of the whole file
    when it is no longer than EXAMPLE_FRAMES, else every EXAMPLE_HOP_FRAMES and one more that
    ends at the file's end (each window EXAMPLE_FRAMES long)."""
    if n_frames <= EXAMPLE_FRAMES:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n_frames - EXAMPLE_FRAMES + 1, EXAMPLE_HOP_FRAMES)
    if starts[-1] + EXAMPLE_FRAMES < n_frames:
        starts = np.append(starts, n_frames - EXAMPLE_FRAMES)
    return starts.astype(np.int64)


def split_examples(features: Features) -> dict:
    """One file's training windows: {starts [E], lengths [E] frames, silent, unpitched} with
    the dropped windows counted (silent: no frame above SILENT_EXAMPLE_DB; unpitched: some
    sound, but under MIN_VOICED_FRACTION of its frames voiced, such as a window mostly of
    silence or of noise)."""
    n_frames = len(features.f0)
    starts = example_starts(n_frames)
    lengths = np.minimum(n_frames - starts, EXAMPLE_FRAMES)
    if len(starts) == 1:
        return {"starts": starts, "lengths": lengths, "silent": 0, "unpitched": 0}
    windows = starts[:, None] + np.arange(EXAMPLE_FRAMES)
    loud = features.loudness[windows].max(axis=1) > SILENT_EXAMPLE_DB
    pitched = features.voiced[windows].mean(axis=1) >= MIN_VOICED_FRACTION
    keep = loud & pitched
    return {"starts": starts[keep], "lengths": lengths[keep],
            "silent": int(np.sum(~loud)), "unpitched": int(np.sum(loud & ~pitched))}


def excerpt_start(features: Features) -> int:
    """Start frame of a file's excerpt: 0 for a file of at most EXCERPT_FRAMES, else the first
    window of EXCERPT_FRAMES with the most frames that are voiced and not silent."""
    n_frames = len(features.f0)
    if n_frames <= EXCERPT_FRAMES:
        return 0
    sustained = features.voiced & (features.loudness > SILENT_EXAMPLE_DB)
    counts = np.concatenate([[0], np.cumsum(sustained)])
    in_window = counts[EXCERPT_FRAMES:] - counts[:-EXCERPT_FRAMES]
    return int(np.argmax(in_window))


def excerpt(features: Features) -> Features:
    """A file's features cut to its excerpt (excerpt_start)."""
    start = excerpt_start(features)
    end = start + min(len(features.f0), EXCERPT_FRAMES)
    hop = features.hop_length
    return replace(features, audio=features.audio[start * hop: end * hop],
                   **{name: getattr(features, name)[start:end]
                      for name in ("f0", "loudness", "mfcc", "voiced")})


def padded_batch(features: list, hop_length: int) -> Excerpts:
    """Features -> Excerpts: padded torch tensors (CPU), each row padded to the longest."""
    n_frames = max(len(f.f0) for f in features)
    rows = {name: torch.from_numpy(np.stack([pad_to(getattr(f, name), n_frames, 0, hop, value)
                                             for f in features]))
            for name, (hop, value) in padding(hop_length).items()}
    rows["f0"], rows["loudness"] = rows["f0"][..., None], rows["loudness"][..., None]
    return Excerpts(**rows, lengths=torch.tensor([len(f.f0) for f in features]))


def usable_files(features: list, errors: dict) -> list:
    """[(features, split_examples of them)] of the files with a window worth training on; a
    file without (all silent or unpitched) is listed in `errors` with a warning; when none is
    left, AudioInputError."""
    import warnings
    from pathlib import Path

    usable = []
    for f in features:
        split = split_examples(f)
        if len(split["starts"]):
            usable.append((f, split))
        else:
            errors[f.path] = (f"no {EXAMPLE_SECONDS:.0f} s stretch to train on: of its "
                              f"windows, {split['silent']} are silent and "
                              f"{split['unpitched']} mostly unpitched")
            warnings.warn(f"{f.path}: {errors[f.path]}", stacklevel=3)
    if not usable:
        raise AudioInputError(", ".join(f.path for f in features) or "<none>",
                              "no usable audio file (" + ("; ".join(
                                  f"{Path(p).name}: {r}" for p, r in errors.items())
                                  or "no files given") + ")")
    return usable


def source_row(f: Features, split: dict) -> dict:
    """What training used of one file: a row of TrainingSet.sources."""
    from pathlib import Path

    frame_rate = f.sample_rate / f.hop_length
    covered = np.zeros(len(f.f0), dtype=bool)
    for start, length in zip(split["starts"], split["lengths"]):
        covered[start: start + length] = True
    return {"file": Path(f.path).name, "seconds": len(f.f0) / frame_rate,
            "examples": len(split["starts"]), "silent": split["silent"],
            "unpitched": split["unpitched"], "seconds_used": float(covered.sum()) / frame_rate,
            "excerpt_start_seconds": excerpt_start(f) / frame_rate}


def collate(features: list, errors: dict | None = None) -> TrainingSet:
    """Features (or dicts of their keys) -> the TrainingSet described at the top of this file
    (CPU tensors); its files must share one sample rate and hop. A file with no window worth
    training on is left out and listed in `errors` (usable_files)."""
    features = [Features.from_mapping(f) for f in features]
    framings = {(f.sample_rate, f.hop_length) for f in features}
    if len(framings) > 1:
        raise ValueError(f"files of different (sample rate, hop) {sorted(framings)} cannot "
                         "be trained on together")
    errors = dict(errors or {})
    usable = usable_files(features, errors)
    sample_rate, hop_length = framings.pop()
    pad = padding(hop_length)
    parts = {name: [] for name in FRAME_FIELDS}
    starts, lengths, offset = [], [], 0
    for f, split in usable:
        for name, (hop, value) in pad.items():
            parts[name].append(pad_to(getattr(f, name), len(f.f0) + EXAMPLE_FRAMES, 0, hop,
                                      value))
        starts.append(split["starts"] + offset)
        lengths.append(split["lengths"])
        offset += len(f.f0) + EXAMPLE_FRAMES
    examples = Examples(**{name: torch.from_numpy(np.concatenate(parts[name]))
                           for name in FRAME_FIELDS},
                        starts=torch.from_numpy(np.concatenate(starts)),
                        lengths=torch.from_numpy(np.concatenate(lengths)), hop_length=hop_length)
    features = [f for f, _ in usable]
    return TrainingSet(excerpts=padded_batch([excerpt(f) for f in features], hop_length),
                       examples=examples, file_paths=[f.path for f in features],
                       sources=[source_row(f, split) for f, split in usable], errors=errors,
                       sample_rate=sample_rate, hop_length=hop_length)


def load_multiple_files(file_paths, progress: bool = True, cache_dir=None,
                        n_workers: int | None = None, hop_length: int = HOP_LENGTH
                        ) -> TrainingSet:
    """Many files' features (features.extract_files: which files fail and why, `cache_dir`,
    `n_workers`, the stop button, frames of `hop_length` samples) collated as a TrainingSet."""
    features, errors = extract_files(file_paths, progress, cache_dir, n_workers, hop_length)
    return collate(features, errors)


def batch_to_device(batch: TrainingSet, device) -> TrainingSet:
    """batch.to(device): every tensor, the examples' too, on `device`."""
    return batch.to(device)


def file_features(batch, index: int) -> Features:
    """batch.file_features(index): file `index`'s excerpt, padding cut, as extract_features gave
    it; `batch` a TrainingSet, or a dict of its old keys (made by code from before it)."""
    if isinstance(batch, TrainingSet):
        return batch.file_features(index)
    excerpts = Excerpts(**{name: batch[name] for name in (*FRAME_FIELDS, "lengths")})
    return excerpts.features(index, batch["file_paths"][index],
                             batch.get("sample_rate", SAMPLE_RATE),
                             batch.get("hop_length", HOP_LENGTH))


class StepBatches:
    """The examples (collate's, on the training device) as the batches of training steps:
    `batch_size` examples a step (default: all), each example once an epoch, in an order
    shuffled per epoch with a seed of its own (SHUFFLE_SEED + epoch), so a resumed run sees the
    same order. The last step of an epoch is filled up from the start of the epoch's order:
    every step has the same shape (for compile and capture). `batch` holds one step's padded
    batch (f0 [b, T, 1], loudness, mfcc, audio, voiced, lengths [b]; T: the longest example);
    load(step) writes step's examples into those same tensors, so a captured graph reading
    them sees each step's. With all examples in one step it is built once and never changes."""

    def __init__(self, examples: Examples, batch_size: int | None = None):
        self.examples = examples = Examples.from_mapping(examples)
        self.n_examples = len(examples.starts)
        if self.n_examples == 0:
            raise ValueError("no training examples: StepBatches needs at least one")
        if batch_size is not None:
            batch_size = checked_number("batch_size", batch_size, whole=True, at_least=1)
        self.batch_size = min(batch_size or self.n_examples, self.n_examples)
        self.steps_per_epoch = math.ceil(self.n_examples / self.batch_size)
        self.n_frames = int(examples.lengths.max())
        self.rows = torch.arange(self.batch_size)  # the examples `batch` holds
        self.batch = self.gather(self.rows)

    @property
    def changes(self) -> bool:
        """True when steps see different examples (then nothing computed from one step's
        targets may be kept for the next)."""
        return self.steps_per_epoch > 1

    def rows_of(self, step: int) -> torch.Tensor:
        """Indices of the examples of training step `step` (counted from the first epoch)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        order = torch.randperm(self.n_examples,
                               generator=torch.Generator().manual_seed(SHUFFLE_SEED + epoch))
        return torch.cat([order, order])[k * self.batch_size: (k + 1) * self.batch_size]

    def gather(self, rows: torch.Tensor) -> dict:
        """The padded batch of examples `rows` (new tensors on the examples' device)."""
        examples = self.examples
        device, hop = examples.f0.device, examples.hop_length
        rows = rows.to(device)
        frames = examples.starts[rows, None] + torch.arange(self.n_frames, device=device)
        samples = (frames[:, :, None] * hop + torch.arange(hop, device=device)).flatten(1)
        return {"f0": examples.f0[frames][..., None],
                "loudness": examples.loudness[frames][..., None],
                "mfcc": examples.mfcc[frames], "audio": examples.audio[samples],
                "voiced": examples.voiced[frames], "lengths": examples.lengths[rows]}

    def load(self, step: int) -> dict:
        """Write step `step`'s examples into `batch` (in place) and return it."""
        rows = self.rows_of(step) if self.changes else self.rows
        if not torch.equal(rows, self.rows):
            with torch.no_grad():
                for key, value in self.gather(rows).items():
                    self.batch[key].copy_(value)
            self.rows = rows
        return self.batch
