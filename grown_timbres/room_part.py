"""The room part: a learned room after the other parts (ModelConfig.room), an impulse response
of ROOM_SECONDS made of noise, a level and a decay time, all trained (synth.room_impulse_response).

    audio [B, N], room_noise [L], room_level [1], room_decay [1] -> audio [B, N]
"""
from __future__ import annotations

import math

import torch

from .part import SynthPart
from .synth import apply_room, room_impulse_response, upsample_frames

ROOM_SECONDS = 1.0  # the room's impulse response: 22050 taps at the default rate
ROOM_INITIAL_LEVEL = 1e-3  # an untrained room is near-dry: 37 dB below the direct sound
ROOM_INITIAL_DECAY_SECONDS = 0.05  # time constant of its envelope: a small, dead room
# The room's noise taps start uniform in [-1, 1], a thousand times Adam's learning rate, while
# a weight starts within about 1/sqrt(fan-in): at the shared rate the taps would take thousands
# of steps to move by their own size. They learn at this multiple of it (of 1x, 10x, 30x and
# 100x, 30x trained the room best: BENCHMARKS.md, Learned room).
ROOM_NOISE_LR_SCALE = 30
# The room's wet part at most this far above the dry sound (the energy of its taps). The room
# BENCHMARKS.md measured learned is at +5 dB and a far seat in a large hall hears some +10 to
# +20 dB; a level like 1e30 is +600.
ROOM_MAX_GAIN_DB = 30.0


class RoomPart(SynthPart):
    name = "room"
    switch = "room"
    gain = "room_gain"  # [B or 1, T, 1]: the wet part's share; without it the full room
    stage_switch = "room"
    tail_seconds = ROOM_SECONDS
    weight_names = ("room_noise", "room_level", "room_decay")
    lr_scales = {"room_noise": ROOM_NOISE_LR_SCALE}

    def initial_weights(self) -> dict:
        """A room to start from: noise [L] uniform in [-1, 1] (torch's global random state,
        like every other initial weight), level [1], decay [1] seconds."""
        n_taps = round(ROOM_SECONDS * self.config.sample_rate)
        return {"room_noise": torch.rand(n_taps) * 2 - 1,
                "room_level": torch.tensor([ROOM_INITIAL_LEVEL]),
                "room_decay": torch.tensor([ROOM_INITIAL_DECAY_SECONDS])}

    def impulse_response(self, weights: dict) -> torch.Tensor:
        """The room's taps [ROOM_SECONDS * sample_rate] (tap 0 is unused)."""
        return room_impulse_response(weights["room_noise"], weights["room_level"],
                                     weights["room_decay"], self.config.sample_rate)

    def play(self, audio, f0, controls: dict, gain, weights: dict, waves=None, generator=None):
        if gain is not None:
            gain = upsample_frames(gain.float(), self.config.hop_length)[..., 0]
        return apply_room(audio, self.impulse_response(weights), gain)

    def check_weights(self, weights: dict) -> None:
        """A room whose wet part is more than ROOM_MAX_GAIN_DB above the dry sound is no
        room's: ValueError."""
        taps = self.impulse_response(weights)
        wet_db = 10 * math.log10(max(float(torch.sum(taps[1:].double() ** 2)), 1e-300))
        if not wet_db <= ROOM_MAX_GAIN_DB:
            raise ValueError(f"render input room: its wet part is {wet_db:+.0f} dB against the "
                             f"dry sound, above ROOM_MAX_GAIN_DB=+{ROOM_MAX_GAIN_DB:g} dB: the "
                             "model's room weights are no room's; load a trained checkpoint")
