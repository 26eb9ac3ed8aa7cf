"""The training set, typed: what batching.collate makes of many files' Features (torch tensors,
on the CPU until .to(device)).

    TrainingSet: excerpts (Excerpts: each file's excerpt, padded: f0 [B, T, 1] ...),
                 examples (Examples: every file's frames end to end, and the training windows
                 in them: starts [E], lengths [E]), file_paths [B], sources [B], errors
                 {path: reason}, sample_rate, hop_length
    TrainingSet.file_features(i) -> Features of file i's excerpt, padding cut
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from .config import HOP_LENGTH
from .features import Features
from .old_keys import OldKeys

FRAME_FIELDS = ("f0", "loudness", "mfcc", "audio", "voiced")  # a feature per frame (audio: hop)


def tensors_to(data, device):
    """A copy of dataclass `data` with each of its tensor fields on `device`."""
    return replace(data, **{field.name: getattr(data, field.name).to(device)
                            for field in fields(data)
                            if isinstance(getattr(data, field.name), torch.Tensor)})


@dataclass(frozen=True, eq=False)
class Excerpts:
    """Each file's excerpt (what evaluation, growth and melodies see of it), padded to the
    longest: f0 [B, T, 1] Hz, loudness [B, T, 1] dB, mfcc [B, T, N_MFCC], audio
    [B, T * hop_length], voiced [B, T] bool, lengths [B] (valid frames)."""

    f0: torch.Tensor
    loudness: torch.Tensor
    mfcc: torch.Tensor
    audio: torch.Tensor
    voiced: torch.Tensor
    lengths: torch.Tensor

    def features(self, index: int, path: str, sample_rate: int, hop_length: int) -> Features:
        """Row `index`, padding cut, as extract_features gave it (numpy): audio
        [n * hop_length], f0 [n] Hz, voiced [n], loudness [n] dB, mfcc [n, N_MFCC]."""
        n = int(self.lengths[index])
        return Features(path=path, audio=self.audio[index, : n * hop_length].cpu().numpy(),
                        f0=self.f0[index, :n, 0].cpu().numpy(),
                        voiced=self.voiced[index, :n].cpu().numpy(),
                        loudness=self.loudness[index, :n, 0].cpu().numpy(),
                        mfcc=self.mfcc[index, :n].cpu().numpy(),
                        sample_rate=sample_rate, hop_length=hop_length)


@dataclass(frozen=True, eq=False)
class Examples(OldKeys):
    """Every file's frames end to end, each file followed by EXAMPLE_FRAMES of padding: f0 [F],
    loudness [F], mfcc [F, N_MFCC], audio [F * hop_length], voiced [F]; the training windows in
    them: starts [E] (first frame), lengths [E] (frames). Reads as the dict it replaced too
    (examples["starts"]; OldKeys)."""

    f0: torch.Tensor
    loudness: torch.Tensor
    mfcc: torch.Tensor
    audio: torch.Tensor
    voiced: torch.Tensor
    starts: torch.Tensor
    lengths: torch.Tensor
    hop_length: int
    OLD_KEYS = {name: name for name in (*FRAME_FIELDS, "starts", "lengths")}

    @classmethod
    def from_mapping(cls, examples) -> Examples:
        """Examples as they are, or from a dict of their old keys (hop_length: config's when
        it lacks one, the only hop then)."""
        if isinstance(examples, cls):
            return examples
        return cls(**{name: examples[name] for name in cls.OLD_KEYS},
                   hop_length=examples.get("hop_length", HOP_LENGTH))

    def to(self, device) -> Examples:
        return tensors_to(self, device)


@dataclass(frozen=True, eq=False)
class TrainingSet(OldKeys):
    """Many files made ready to train on (batching.collate): their excerpts, their examples,
    their paths, a row of `sources` per file (what training used of it: file, seconds,
    examples, silent, unpitched, seconds_used, excerpt_start_seconds), the files left out
    ({path: reason}), and the data's sample rate and hop. Reads as the dict it replaced too
    (batch["f0"] is batch.excerpts.f0; OldKeys)."""

    excerpts: Excerpts
    examples: Examples
    file_paths: list
    sources: list
    errors: dict
    sample_rate: int
    hop_length: int
    OLD_KEYS = {**{name: f"excerpts.{name}" for name in (*FRAME_FIELDS, "lengths")},
                **{name: name for name in ("file_paths", "errors", "sources", "examples")}}

    def __post_init__(self):
        if self.examples.hop_length != self.hop_length:
            raise ValueError(f"the examples' hop_length {self.examples.hop_length} is not the "
                             f"training set's {self.hop_length}")

    def to(self, device) -> TrainingSet:
        """The same training set with every tensor, the examples' too, on `device`."""
        return replace(self, excerpts=tensors_to(self.excerpts, device),
                       examples=self.examples.to(device))

    def file_features(self, index: int) -> Features:
        """File `index`'s excerpt, padding cut, as extract_features gave it (numpy)."""
        return self.excerpts.features(index, self.file_paths[index], self.sample_rate,
                                      self.hop_length)

