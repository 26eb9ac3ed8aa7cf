"""The model's configuration (ModelConfig): its sizes, its rates and which optional parts it has,
validated in one place; what checkpoints and run records store, and how old ones read back."""
from __future__ import annotations

import operator
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from .config import (HOP_LENGTH, MAX_AUDIO_SAMPLE_RATE, MIN_AUDIO_SAMPLE_RATE, N_MFCC,
                     SAMPLE_RATE)

N_HARMONICS = 64
N_NOISE_BANDS = 65  # noise filter: 65 magnitudes -> a 128-tap linear-phase FIR per frame
HIDDEN_SIZE = 512
Z_DIM = 16
# Each whole-number field as (lowest, highest); checked before a layer is built, a checkpoint's
# config included. hidden_size 1024 is twice magenta's (0.1 GB of weights; 4096 would be 1.6).
MODEL_LIMITS = {
    "n_harmonics": (1, 128),  # the synthesizer's memory grows with it (64 by default)
    "n_noise_bands": (2, 257),  # a 512-tap noise filter at most
    "hidden_size": (1, 1024),
    "n_mfcc": (1, 128),
    "z_dim": (1, 256),
    # the rates any recording may have (config's audio limits); a frame of 16 samples at the
    # lowest rate is 2 ms, one of 4096 at the default rate 0.19 s: beyond either, no note's
    # shape is left between frames
    "sample_rate": (MIN_AUDIO_SAMPLE_RATE, MAX_AUDIO_SAMPLE_RATE),
    "hop_length": (16, 4096),
}
OLD_NAMES = {"reverb": "room"}  # a field's name in checkpoints and calls before issue 23


@dataclass(frozen=True)
class ModelConfig:
    """What DDSPModel is built from: decoder sizes (hidden_size, z_dim, n_mfcc: the MFCCs it
    reads), the synthesizer's (n_harmonics, n_noise_bands), the rates its frames and audio run
    at (sample_rate Hz, hop_length samples per frame: the training data's must be the same,
    DDSPModel.check_data) and whether it has the learned `room`. Every field is checked here
    (MODEL_LIMITS, switches True or False): ValueError names the field, its value and the limit.
    `config["hidden_size"]` reads a field as the dict of earlier versions did."""

    n_harmonics: int = N_HARMONICS
    n_noise_bands: int = N_NOISE_BANDS
    hidden_size: int = HIDDEN_SIZE
    n_mfcc: int = N_MFCC
    z_dim: int = Z_DIM
    sample_rate: int = SAMPLE_RATE
    hop_length: int = HOP_LENGTH
    room: bool = False

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            checked = (_switch(field.name, value) if field.type == "bool"
                       else _whole_number(field.name, value))
            object.__setattr__(self, field.name, checked)

    @classmethod
    def from_dict(cls, values) -> ModelConfig:
        """A configuration as checkpoints and run records store it, today's (as_dict) or an
        earlier one: `reverb` is the old name of `room`, and a field it lacks (a checkpoint
        from before the room has no `reverb`) takes its default. ValueError for anything that
        is not a dict of known fields with valid values."""
        if not isinstance(values, dict):
            raise ValueError(f"a model configuration is a dict of DDSPModel's arguments, got "
                             f"{type(values).__name__}")
        return cls(**_renamed(values))

    def replaced(self, **fields) -> ModelConfig:
        """This configuration with `fields` changed (old names too), checked as any."""
        return replace(self, **_renamed(fields))

    def as_dict(self) -> dict:
        """{field: value}, plain ints and bools: what a checkpoint stores."""
        return asdict(self)

    def keys(self):
        """The field names, so that dict(config) is as_dict()."""
        return self.as_dict().keys()

    def __getitem__(self, name: str):
        name = OLD_NAMES.get(name, name)
        if name not in self.keys():
            raise KeyError(f"{name!r}: a model configuration has " + ", ".join(self.keys()))
        return getattr(self, name)


def _renamed(values: dict) -> dict:
    """`values` with old field names (OLD_NAMES) under today's; unknown names refused."""
    known = {field.name for field in fields(ModelConfig)}
    unknown = sorted(map(str, set(values) - known - set(OLD_NAMES)))
    if unknown:
        raise ValueError(f"unknown model configuration field(s) {unknown}; DDSPModel takes "
                         + ", ".join(sorted(known)) + " (reverb: the old name of room)")
    for old, new in OLD_NAMES.items():
        if old in values and new in values and values[old] != values[new]:
            raise ValueError(f"model configuration: {old}={values[old]!r} and {new}="
                             f"{values[new]!r} name one field twice ({old} is the old name of "
                             f"{new})")
    return {OLD_NAMES.get(name, name): value for name, value in values.items()}


def _switch(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"model configuration {name}={value!r} is not True or False")
    return bool(value)


def _whole_number(name: str, value) -> int:
    low, high = MODEL_LIMITS[name]
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"model configuration {name}={value!r} is not a whole number") from None
    if not low <= number <= high:
        raise ValueError(f"model configuration {name}={number} is outside {low}..{high} "
                         f"(MODEL_LIMITS[{name!r}] in grown_timbres.model_config)")
    return number
