"""Batching: files -> training examples and listening excerpts -> padded batches.

A file longer than one example is cut into EXAMPLE_SECONDS windows every EXAMPLE_HOP_SECONDS
(as magenta does), the last one ending at the file's end so that every second is used; windows
that are silent or mostly unpitched are dropped. A shorter file is one example of its own
length. Evaluation, growth and melodies use one excerpt per file: the whole file up to
EXCERPT_SECONDS, else its most sustained EXCERPT_SECONDS.

    features (features.extract_features, one dict per file) -> collate -> batch:
      f0 [B, T, 1] Hz, loudness [B, T, 1] dB, mfcc [B, T, N_MFCC], audio [B, T * HOP_LENGTH],
      voiced [B, T], lengths [B] (valid frames): the files' excerpts, padded;
      file_paths, errors {path: reason}, sources (a row per file: what training used of it),
      examples: every file's frames end to end, each file followed by EXAMPLE_FRAMES of padding
        (f0 [F], loudness [F], mfcc [F, N_MFCC], audio [F * HOP_LENGTH], voiced [F]), and per
        example its start frame and length: starts [E], lengths [E]
    StepBatches(examples, batch_size).load(step) -> the padded batch [batch_size, T, ...] of
      one training step, written into the same tensors every step
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .audio import AudioInputError
from .config import FRAME_RATE, HOP_LENGTH, LOUDNESS_FLOOR_DB, checked_number

EXAMPLE_SECONDS = 4.0  # magenta's training examples: 4 s, one every second
EXAMPLE_HOP_SECONDS = 1.0
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


# How each key is padded: (samples per frame, fill value; None holds the last entry). f0 and
# MFCCs are held, loudness floored, audio zeroed, padding unvoiced; the loss masks it out.
PADDING = {"f0": (1, None), "loudness": (1, LOUDNESS_FLOOR_DB), "mfcc": (1, None),
           "audio": (HOP_LENGTH, 0.0), "voiced": (1, False)}


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


def split_examples(features: dict) -> dict:
    """One file's training windows: {starts [E], lengths [E] frames, silent, unpitched} with
    the dropped windows counted (silent: no frame above SILENT_EXAMPLE_DB; unpitched: some
    sound, but under MIN_VOICED_FRACTION of its frames voiced, such as a window mostly of
    silence or of noise)."""
    n_frames = len(features["f0"])
    starts = example_starts(n_frames)
    lengths = np.minimum(n_frames - starts, EXAMPLE_FRAMES)
    if len(starts) == 1:
        return {"starts": starts, "lengths": lengths, "silent": 0, "unpitched": 0}
    windows = starts[:, None] + np.arange(EXAMPLE_FRAMES)
    loud = features["loudness"][windows].max(axis=1) > SILENT_EXAMPLE_DB
    pitched = features["voiced"][windows].mean(axis=1) >= MIN_VOICED_FRACTION
    keep = loud & pitched
    return {"starts": starts[keep], "lengths": lengths[keep],
            "silent": int(np.sum(~loud)), "unpitched": int(np.sum(loud & ~pitched))}


def excerpt_start(features: dict) -> int:
    """Start frame of a file's excerpt: 0 for a file of at most EXCERPT_FRAMES, else the first
    window of EXCERPT_FRAMES with the most frames that are voiced and not silent."""
    n_frames = len(features["f0"])
    if n_frames <= EXCERPT_FRAMES:
        return 0
    sustained = features["voiced"] & (features["loudness"] > SILENT_EXAMPLE_DB)
    counts = np.concatenate([[0], np.cumsum(sustained)])
    in_window = counts[EXCERPT_FRAMES:] - counts[:-EXCERPT_FRAMES]
    return int(np.argmax(in_window))


def excerpt(features: dict) -> dict:
    """A file's features cut to its excerpt (excerpt_start), keys as extract_features'."""
    start = excerpt_start(features)
    end = start + min(len(features["f0"]), EXCERPT_FRAMES)
    cut = {key: features[key][start:end] for key, (hop, _) in PADDING.items() if hop == 1}
    return {**features, **cut, "audio": features["audio"][start * HOP_LENGTH: end * HOP_LENGTH]}


def padded_batch(features: list) -> dict:
    """Feature dicts -> padded torch tensors (CPU): f0 [B, T, 1], loudness [B, T, 1],
    mfcc [B, T, N_MFCC], audio [B, T * HOP_LENGTH], voiced [B, T], lengths [B]."""
    n_frames = max(len(f["f0"]) for f in features)
    batch = {key: torch.from_numpy(np.stack([pad_to(f[key], n_frames, 0, hop, value)
                                             for f in features]))
             for key, (hop, value) in PADDING.items()}
    batch["f0"], batch["loudness"] = batch["f0"][..., None], batch["loudness"][..., None]
    batch["lengths"] = torch.tensor([len(f["f0"]) for f in features])
    return batch


def collate(features: list, errors: dict | None = None) -> dict:
    """extract_features dicts -> the batch described at the top of this file (CPU tensors).
    file_features(batch, i) gives file i's excerpt back. A file with no window worth training
    on (all silent or unpitched) is left out and listed in `errors` with a warning; when none
    is left, AudioInputError."""
    import warnings
    from pathlib import Path

    errors, usable = dict(errors or {}), []
    for f in features:
        split = split_examples(f)
        if len(split["starts"]):
            usable.append((f, split))
        else:
            errors[f["path"]] = (f"no {EXAMPLE_SECONDS:.0f} s stretch to train on: of its "
                                 f"windows, {split['silent']} are silent and "
                                 f"{split['unpitched']} mostly unpitched")
            warnings.warn(f"{f['path']}: {errors[f['path']]}", stacklevel=2)
    if not usable:
        raise AudioInputError(", ".join(f["path"] for f in features) or "<none>",
                              "no usable audio file (" + ("; ".join(
                                  f"{Path(p).name}: {r}" for p, r in errors.items())
                                  or "no files given") + ")")
    features = [f for f, _ in usable]
    parts = {key: [] for key in PADDING}
    starts, lengths, sources, offset = [], [], [], 0
    for f, split in usable:
        for key, (hop, value) in PADDING.items():
            parts[key].append(pad_to(f[key], len(f["f0"]) + EXAMPLE_FRAMES, 0, hop, value))
        starts.append(split["starts"] + offset)
        lengths.append(split["lengths"])
        covered = np.zeros(len(f["f0"]), dtype=bool)
        for start, length in zip(split["starts"], split["lengths"]):
            covered[start: start + length] = True
        sources.append({"file": Path(f["path"]).name, "seconds": len(f["f0"]) / FRAME_RATE,
                        "examples": len(split["starts"]), "silent": split["silent"],
                        "unpitched": split["unpitched"],
                        "seconds_used": float(covered.sum()) / FRAME_RATE,
                        "excerpt_start_seconds": excerpt_start(f) / FRAME_RATE})
        offset += len(f["f0"]) + EXAMPLE_FRAMES
    examples = {key: torch.from_numpy(np.concatenate(parts[key])) for key in PADDING}
    examples.update(starts=torch.from_numpy(np.concatenate(starts)),
                    lengths=torch.from_numpy(np.concatenate(lengths)))
    return {**padded_batch([excerpt(f) for f in features]),
            "file_paths": [f["path"] for f in features], "errors": errors,
            "sources": sources, "examples": examples}


def batch_to_device(batch: dict, device) -> dict:
    """The same dict with every tensor, also those of its examples, moved to `device`."""
    return {k: batch_to_device(v, device) if isinstance(v, dict) and k == "examples" else
            v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def file_features(batch: dict, index: int) -> dict:
    """File `index`'s excerpt from a padded batch, padding cut, as extract_features gave it
    (numpy): path, audio [n * HOP_LENGTH], f0 [n] Hz, voiced [n], loudness [n] dB,
    mfcc [n, N_MFCC]."""
    n = int(batch["lengths"][index])
    return {"path": batch["file_paths"][index],
            "audio": batch["audio"][index, : n * HOP_LENGTH].cpu().numpy(),
            "f0": batch["f0"][index, :n, 0].cpu().numpy(),
            "voiced": batch["voiced"][index, :n].cpu().numpy(),
            "loudness": batch["loudness"][index, :n, 0].cpu().numpy(),
            "mfcc": batch["mfcc"][index, :n].cpu().numpy()}


class StepBatches:
    """The examples (collate's, on the training device) as the batches of training steps:
    `batch_size` examples a step (default: all), each example once an epoch, in an order
    shuffled per epoch with a seed of its own (SHUFFLE_SEED + epoch), so a resumed run sees the
    same order. The last step of an epoch is filled up from the start of the epoch's order:
    every step has the same shape (for compile and capture). `batch` holds one step's padded
    batch (f0 [b, T, 1], loudness, mfcc, audio, voiced, lengths [b]; T: the longest example);
    load(step) writes step's examples into those same tensors, so a captured graph reading
    them sees each step's. With all examples in one step it is built once and never changes."""

    def __init__(self, examples: dict, batch_size: int | None = None):
        self.examples = examples
        self.n_examples = len(examples["starts"])
        if self.n_examples == 0:
            raise ValueError("no training examples: StepBatches needs at least one")
        if batch_size is not None:
            batch_size = checked_number("batch_size", batch_size, whole=True, at_least=1)
        self.batch_size = min(batch_size or self.n_examples, self.n_examples)
        self.steps_per_epoch = math.ceil(self.n_examples / self.batch_size)
        self.n_frames = int(examples["lengths"].max())
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
        device = examples["f0"].device
        rows = rows.to(device)
        frames = examples["starts"][rows, None] + torch.arange(self.n_frames, device=device)
        samples = (frames[:, :, None] * HOP_LENGTH +
                   torch.arange(HOP_LENGTH, device=device)).flatten(1)
        return {"f0": examples["f0"][frames][..., None],
                "loudness": examples["loudness"][frames][..., None],
                "mfcc": examples["mfcc"][frames], "audio": examples["audio"][samples],
                "voiced": examples["voiced"][frames], "lengths": examples["lengths"][rows]}

    def load(self, step: int) -> dict:
        """Write step `step`'s examples into `batch` (in place) and return it."""
        rows = self.rows_of(step) if self.changes else self.rows
        if not torch.equal(rows, self.rows):
            with torch.no_grad():
                for key, value in self.gather(rows).items():
                    self.batch[key].copy_(value)
            self.rows = rows
        return self.batch
