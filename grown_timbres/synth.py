"""The synthesizer: harmonic oscillators plus filtered noise, driven by frame-rate controls.

    f0 [B, T, 1] Hz, harmonic amplitudes [B, T, H] -> audio [B, T * hop]
    noise magnitudes [B, T, M]                   -> audio [B, T * hop]
    audio [B, N], room taps [L]                  -> audio [B, N] (dry plus the room)

Phase is accumulated in float64; every output is float32. magenta/ddsp's core.py and synths.py
in PyTorch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import HOP_LENGTH, SAMPLE_RATE

def exp_sigmoid(x: torch.Tensor, exponent: float = 10.0, max_value: float = 2.0,
                threshold: float = 1e-7) -> torch.Tensor:
    """magenta's output nonlinearity: positive, 1e-7 floor, gentle slope for large inputs."""
    return max_value * torch.sigmoid(x) ** math.log(exponent) + threshold


def upsample_frames(x: torch.Tensor, hop_length: int = HOP_LENGTH) -> torch.Tensor:
    """Linear interpolation from frame to audio rate: [B, T, C] -> [B, T * hop_length, C].

    Sample t * hop_length sits exactly on frame t; the last frame is held."""
    batch, n_frames, channels = x.shape
    following = torch.cat([x[:, 1:], x[:, -1:]], dim=1)
    ramp = torch.arange(hop_length, device=x.device, dtype=x.dtype) / hop_length
    out = x[:, :, None, :] + (following - x)[:, :, None, :] * ramp[None, None, :, None]
    return out.reshape(batch, n_frames * hop_length, channels)


def nyquist_mask(f0: torch.Tensor, n_harmonics: int, sample_rate: int = SAMPLE_RATE):
    """1 where harmonic k * f0 is below Nyquist, else 0: f0 [..., 1] Hz -> [..., H]."""
    k = torch.arange(1, n_harmonics + 1, device=f0.device, dtype=f0.dtype)
    return (f0 * k < sample_rate / 2).to(f0.dtype)


def normalize_harmonic_distribution(distribution: torch.Tensor, f0: torch.Tensor,
                                    sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Zero harmonics at or above Nyquist and rescale the rest to sum to 1: [B, T, H]."""
    distribution = distribution * nyquist_mask(f0, distribution.shape[-1], sample_rate)
    return distribution / distribution.sum(-1, keepdim=True).clamp_min(1e-7)


def cumulative_phase(f0_audio: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Phase in cycles, wrapped to [0, 1): f0 [B, N, 1] Hz -> [B, N, 1] float32.

    Accumulated in float64: a float32 running sum of f0 / sr over 88k samples drifts by up to
    half a cycle at harmonic 20. Wrapping before the cast keeps float32 resolution at 6e-8
    cycles, so 2 * pi * k * phase stays within 3e-5 rad for every harmonic."""
    cycles = torch.cumsum(f0_audio.double() / sample_rate, dim=1)
    wrapped = (cycles - torch.floor(cycles)).float()
    return torch.where(wrapped >= 1.0, wrapped - 1.0, wrapped)  # 1 - 1e-12 rounds up to 1.0


@torch.no_grad()  # f0 is an input: the waves need no gradient
def harmonic_waves(f0: torch.Tensor, n_harmonics: int, sample_rate: int = SAMPLE_RATE,
                   hop_length: int = HOP_LENGTH) -> torch.Tensor:
    """Unit sinusoids of every harmonic, silenced at and above Nyquist sample by sample:
    f0 [B, T, 1] Hz -> sin(2 pi k phase) [B, T, hop_length, H], float32.

    They depend on f0 alone, so training (f0 fixed) can compute them once."""
    batch, n_frames, _ = f0.shape
    f0_audio = upsample_frames(f0.float(), hop_length)
    k = torch.arange(1, n_harmonics + 1, device=f0.device, dtype=torch.float32)
    waves = torch.sin((2 * math.pi) * cumulative_phase(f0_audio, sample_rate) * k)
    waves = waves * nyquist_mask(f0_audio, n_harmonics, sample_rate)
    return waves.reshape(batch, n_frames, hop_length, n_harmonics)


def harmonic_synth(f0: torch.Tensor, harmonic_amplitudes: torch.Tensor,
                   sample_rate: int = SAMPLE_RATE, hop_length: int = HOP_LENGTH,
                   waves: torch.Tensor | None = None) -> torch.Tensor:
    """Additive synthesis: f0 [B, T, 1] Hz, amplitudes [B, T, H] -> audio [B, T * hop_length].

    Amplitudes are interpolated linearly to audio rate. Inside frame t, sample j of the output
    is sum_k wave[t, j, k] * (a[t, k] + j / hop * (a[t+1, k] - a[t, k])): two matrix products
    per frame instead of an audio-rate [B, N, H] amplitude tensor, in both passes. `waves`:
    harmonic_waves(f0, H) computed beforehand (same result, less work per call)."""
    batch, n_frames, n_harmonics = harmonic_amplitudes.shape
    if waves is None:
        waves = harmonic_waves(f0, n_harmonics, sample_rate, hop_length)
    amplitudes = harmonic_amplitudes.float()
    following = torch.cat([amplitudes[:, 1:], amplitudes[:, -1:]], dim=1)
    start_and_slope = torch.stack([amplitudes, following - amplitudes], dim=-1)  # [B, T, H, 2]
    parts = torch.matmul(waves, start_and_slope)  # [B, T, hop, 2]
    ramp = torch.arange(hop_length, device=f0.device, dtype=torch.float32) / hop_length
    return (parts[..., 0] + parts[..., 1] * ramp).reshape(batch, n_frames * hop_length)


def noise_impulse_responses(magnitudes: torch.Tensor) -> torch.Tensor:
    """Linear-phase FIR filters from frequency magnitudes: [B, T, M] -> [B, T, 2 * (M - 1)].

    Zero-phase inverse FFT, rotated to be causal (delay M - 1 taps), Hann-windowed."""
    impulse = torch.fft.irfft(magnitudes.float(), dim=-1)
    ir_size = impulse.shape[-1]
    window = torch.hann_window(ir_size, periodic=False, device=impulse.device)
    return torch.roll(impulse, ir_size // 2, dims=-1) * window


def filtered_noise(magnitudes: torch.Tensor, hop_length: int = HOP_LENGTH,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform noise shaped per frame: magnitudes [B, T, M] -> audio [B, T * hop_length].

    Each frame of noise is convolved with its frame's FIR by FFT, and the (longer) filtered
    frames are overlap-added; the FIR's delay is removed so noise lines up with harmonics."""
    batch, n_frames, _ = magnitudes.shape
    impulse = noise_impulse_responses(magnitudes)
    ir_size = impulse.shape[-1]
    noise = torch.rand(batch, n_frames, hop_length, device=magnitudes.device,
                       generator=generator) * 2 - 1
    filtered_size = hop_length + ir_size - 1
    n_fft = 1 << (filtered_size - 1).bit_length()
    filtered = torch.fft.irfft(torch.fft.rfft(noise, n_fft) * torch.fft.rfft(impulse, n_fft),
                               n_fft)[..., :filtered_size]
    delay = ir_size // 2
    return overlap_add(filtered, hop_length)[:, delay: delay + n_frames * hop_length]


def overlap_add(frames: torch.Tensor, hop_length: int) -> torch.Tensor:
    """Frames placed hop_length apart and summed: [B, T, L] -> [B, (T - 1) * hop_length + L].

    A frame spans ceil(L / hop_length) hops, so the sum is that many shifted adds of
    [B, T, hop_length] pieces: F.fold does the same through col2im, whose backward (im2col)
    runs one kernel per example."""
    batch, n_frames, frame_size = frames.shape
    spans = -(-frame_size // hop_length)
    pieces = F.pad(frames, (0, spans * hop_length - frame_size)).reshape(
        batch, n_frames, spans, hop_length)
    out = frames.new_zeros(batch, n_frames + spans - 1, hop_length)
    for span in range(spans):
        out[:, span: span + n_frames] += pieces[:, :, span]
    return out.reshape(batch, -1)[:, : (n_frames - 1) * hop_length + frame_size]


ROOM_MIN_DECAY_SECONDS = 1e-3


def room_impulse_response(noise: torch.Tensor, level: torch.Tensor, decay: torch.Tensor,
                          sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """The room's taps: level [1] * noise [L] * exp(-t / decay [1] seconds) -> [L] (decay
    kept above ROOM_MIN_DECAY_SECONDS).

    As acids-ircam's ddsp_pytorch, not magenta's free taps: Adam moves every parameter by
    about its learning rate per step, so 22050 free taps all move at once and swamp the dry
    sound within a few steps, while a level and a decay time in seconds (1 ms a step at
    lr 1e-3) learn the room's size in a few hundred; the noise, at room_part.ROOM_NOISE_LR_SCALE
    times the learning rate, learns the room's own response."""
    t = torch.arange(noise.shape[-1], device=noise.device, dtype=torch.float32) / sample_rate
    return level * noise * torch.exp(-t / decay.clamp_min(ROOM_MIN_DECAY_SECONDS))


def apply_room(audio: torch.Tensor, taps: torch.Tensor,
               wet_gain: torch.Tensor | None = None) -> torch.Tensor:
    """audio [B, N] + wet_gain [B or 1, N] * (audio convolved with taps [L]) -> [B, N], float32.

    Tap 0 is the direct path, which the dry signal already is: it is left out of the wet part
    (magenta's add_dry), so the room only adds what comes after. FFT convolution of size
    >= N + L - 1 (no wrap-around), cut to the input's length. Without wet_gain: the full room."""
    audio, taps = audio.float(), taps.float()
    n_samples = audio.shape[-1]
    wet_taps = torch.cat([taps.new_zeros(1), taps[1:]])
    n_fft = 1 << (n_samples + len(taps) - 2).bit_length()
    wet = torch.fft.irfft(torch.fft.rfft(audio, n_fft) * torch.fft.rfft(wet_taps, n_fft),
                          n_fft)[..., :n_samples]
    return audio + (wet if wet_gain is None else wet * wet_gain)
