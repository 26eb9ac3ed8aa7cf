"""DDSP Grown Timbres: everything both notebooks share, in the order the data flows.

    audio -> features -> synthesizer -> model -> loss -> batching -> training -> growth ->
    files and checkpoints -> notebook support, evaluation, run records, comparison ->
    timbre transfer (melodies from notes, MIDI or another recording) and stages as data

Shapes use B (files in a batch), T (frames, one per HOP_LENGTH samples), N = T * HOP_LENGTH
(audio samples), H (harmonics) and M (noise bands). f0 is in Hz, loudness in A-weighted dB.
The design follows magenta/ddsp (core.py, synths.py, decoders.py) in PyTorch.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------- configuration
SAMPLE_RATE = 22050
HOP_LENGTH = 256  # 86 frames per second
FFT_SIZES = (2048, 1024, 512, 256)  # multi-scale loss; hop = size / 4
MIN_AUDIO_SAMPLES = max(FFT_SIZES)  # shorter input cannot fill the largest loss frame
MAX_AUDIO_SECONDS = 30.0  # longer files are cut here, with a warning, to bound memory
SILENCE_PEAK = 1e-4  # -80 dBFS: below this a file is "silent"

F0_MIN_HZ = 65.41  # C2
F0_MAX_HZ = 2093.0  # C7
PYIN_FRAME_LENGTH = 2048
VOICED_PROB_MIN = 0.1  # pYIN's voicing: bundled tones >= 0.85 when voiced, white noise <= 0.01
LOUDNESS_N_FFT = 2048
LOUDNESS_FLOOR_DB = -80.0  # loudness is clipped here; the model scales it as db / 80 + 1
N_MFCC = 20
MFCC_N_FFT = 1024
MFCC_N_MELS = 64

N_HARMONICS = 64
N_NOISE_BANDS = 65  # noise filter: 65 magnitudes -> a 128-tap linear-phase FIR per frame
HIDDEN_SIZE = 512
Z_DIM = 16
NOISE_INITIAL_BIAS = -5.0  # magenta: start with quiet noise so harmonics are learned first

LOG_MAG_FLOOR = 1e-5  # magenta's safe_log
TIME_LOSS_WEIGHT = 0.1  # the seed: spectral loss + 0.1 x L1 in time
LEARNING_RATE = 1e-3
CLIP_GRAD_NORM = 1.0
SNAPSHOT_EVERY = 25  # epochs between in-memory copies of good weights (restored on a NaN loss)

CROSSFADE_SECONDS = 0.08  # between growth stages
EDGE_FADE_SECONDS = 0.01  # at the very start and end of a render

FRAME_RATE = SAMPLE_RATE / HOP_LENGTH  # control frames per second (86.13)
MELODY_LOUDNESS_DB = -20.0  # a note list's level unless told (see training_ranges)
ATTACK_SECONDS = 0.03  # floor -> note level, linear in dB
RELEASE_SECONDS = 0.1  # note level -> floor, linear in dB
PORTAMENTO_SECONDS = 0.03  # legato glide between tied notes, linear in log frequency
VIBRATO_DELAY_SECONDS = 0.25  # after each note's onset, vibrato starts ...
VIBRATO_FADE_SECONDS = 0.15  # ... and reaches full depth this much later
PERCUSSION_CHANNEL = 9  # General MIDI drums (channel 10, 0-based 9): skipped unless asked for
MELODY_MAX_SECONDS = 120.0  # render_melody refuses longer (the synthesizer holds [N, H] waves)


# ----------------------------------------------------------------------------- audio
class AudioInputError(ValueError):
    """The one error for unusable input. `str(err)` is "<path>: <reason>"."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable: worker processes of load_multiple_files return these
        return type(self), (self.path, self.reason)


def load_audio(path, max_seconds: float = MAX_AUDIO_SECONDS) -> np.ndarray:
    """Read any soundfile-readable file as float32 mono at SAMPLE_RATE: [n_samples] in [-1, 1].

    Stereo is averaged, other rates resampled (soxr), samples beyond +/-1 rescaled with a
    warning, files longer than `max_seconds` cut with a warning (only that much is read).
    Raises AudioInputError for missing, empty, unreadable, non-finite, silent or too-short input.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioInputError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioInputError(path, "file is empty (0 bytes)")
    try:
        info = sf.info(str(path))
        max_frames = int(max_seconds * info.samplerate)
        data, file_rate = sf.read(str(path), frames=min(info.frames, max_frames),
                                  dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile reports every unreadable format its own way
        raise AudioInputError(path, f"not a readable audio file ({err})") from None
    if info.frames > max_frames:
        warnings.warn(f"{path}: {info.frames / info.samplerate:.1f} s long; "
                      f"only the first {max_seconds:.0f} s are used", stacklevel=2)
    if data.size == 0:
        raise AudioInputError(path, "contains no audio samples")
    audio = data.mean(axis=1)
    if not np.all(np.isfinite(audio)):
        raise AudioInputError(path, "contains NaN or infinite samples")
    peak = float(np.max(np.abs(audio)))
    if peak < SILENCE_PEAK:
        raise AudioInputError(path, f"is silent (peak {20 * np.log10(peak + 1e-12):.0f} dBFS)")
    if peak > 1.0:
        warnings.warn(f"{path}: samples reach {peak:.2f} (beyond full scale); rescaled to 1.0",
                      stacklevel=2)
        audio = audio / peak
    if file_rate != SAMPLE_RATE:
        import librosa

        audio = librosa.resample(audio, orig_sr=file_rate, target_sr=SAMPLE_RATE,
                                 res_type="soxr_hq")
    if len(audio) < MIN_AUDIO_SAMPLES:
        raise AudioInputError(path, f"too short: {1000 * len(audio) / SAMPLE_RATE:.0f} ms, "
                                    f"needs at least {1000 * MIN_AUDIO_SAMPLES / SAMPLE_RATE:.0f} ms")
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- features
def hz_to_midi(f0):
    """Hz -> MIDI note number (float); works on numpy arrays and torch tensors."""
    log2 = torch.log2 if isinstance(f0, torch.Tensor) else np.log2
    return 12.0 * log2(f0 / 440.0) + 69.0


def estimate_f0(audio: np.ndarray, path="<audio>") -> tuple[np.ndarray, np.ndarray]:
    """pYIN f0 per frame: audio [N] -> (f0 [N // HOP_LENGTH] Hz, voiced [same] bool).

    Unvoiced frames are filled by linear interpolation between voiced ones (held at the
    edges), so f0 is never NaN. Raises AudioInputError when no frame is voiced.
    """
    import librosa

    n_frames = len(audio) // HOP_LENGTH
    f0, voiced, voiced_prob = librosa.pyin(audio, fmin=F0_MIN_HZ, fmax=F0_MAX_HZ,
                                           sr=SAMPLE_RATE, frame_length=PYIN_FRAME_LENGTH,
                                           hop_length=HOP_LENGTH)
    f0 = f0[:n_frames]
    voiced = voiced[:n_frames] & np.isfinite(f0) & (voiced_prob[:n_frames] >= VOICED_PROB_MIN)
    if not voiced.any():
        raise AudioInputError(path, f"no pitched frames (pYIN found no pitch between "
                                    f"{F0_MIN_HZ:.0f} and {F0_MAX_HZ:.0f} Hz)")
    frames = np.arange(n_frames)
    filled = np.interp(frames, frames[voiced], f0[voiced])
    return filled.astype(np.float32), voiced


def a_weighted_power(n_fft: int = LOUDNESS_N_FFT) -> np.ndarray:
    """Per-bin weights [n_fft // 2 + 1] turning |rfft|^2 of a Hann frame into mean-square power,
    A-weighted. Bins at DC and Nyquist count once, the others twice (one-sided spectrum)."""
    import librosa

    freqs = np.fft.rfftfreq(n_fft, 1.0 / SAMPLE_RATE)
    with np.errstate(divide="ignore"):  # log10(0) at DC: floored to -80 dB by librosa
        a_weight = 10.0 ** (librosa.A_weighting(freqs) / 10.0)
    one_sided = np.full(len(freqs), 2.0)
    one_sided[[0, -1]] = 1.0
    window = np.hanning(n_fft + 1)[:-1]
    return a_weight * one_sided / (n_fft * np.sum(window ** 2))


def compute_loudness(audio: np.ndarray, n_frames: int | None = None) -> np.ndarray:
    """A-weighted loudness per frame: audio [N] -> [N // HOP_LENGTH] dB, floored at -80.

    Power is averaged across frequency before taking dB, so a gain of g dB shifts loudness by
    exactly g dB (above the floor). A full-scale 1 kHz sine reads -3 dB.
    """
    import librosa

    n_frames = len(audio) // HOP_LENGTH if n_frames is None else n_frames
    spectrum = librosa.stft(audio, n_fft=LOUDNESS_N_FFT, hop_length=HOP_LENGTH,
                            window="hann", center=True, pad_mode="constant")
    power = a_weighted_power() @ (np.abs(spectrum) ** 2)
    loudness = 10.0 * np.log10(np.maximum(power, 1e-20))
    return np.maximum(loudness, LOUDNESS_FLOOR_DB)[:n_frames].astype(np.float32)


def compute_mfcc(audio: np.ndarray, n_frames: int | None = None) -> np.ndarray:
    """MFCC per frame: audio [N] -> [N // HOP_LENGTH, N_MFCC]."""
    import librosa

    n_frames = len(audio) // HOP_LENGTH if n_frames is None else n_frames
    mfcc = librosa.feature.mfcc(y=audio, sr=SAMPLE_RATE, n_mfcc=N_MFCC, n_fft=MFCC_N_FFT,
                                hop_length=HOP_LENGTH, n_mels=MFCC_N_MELS)
    return mfcc.T[:n_frames].astype(np.float32)


FEATURE_SETTINGS = {  # what the features depend on besides the file's bytes: the cache key
    "version": 1, "sample_rate": SAMPLE_RATE, "hop_length": HOP_LENGTH,
    "max_audio_seconds": MAX_AUDIO_SECONDS, "f0_range_hz": (F0_MIN_HZ, F0_MAX_HZ),
    "pyin_frame_length": PYIN_FRAME_LENGTH, "loudness_n_fft": LOUDNESS_N_FFT,
    "loudness_floor_db": LOUDNESS_FLOOR_DB, "n_mfcc": N_MFCC, "mfcc_n_fft": MFCC_N_FFT,
    "mfcc_n_mels": MFCC_N_MELS,
}
FEATURE_KEYS = ("audio", "f0", "voiced", "loudness", "mfcc")


def feature_cache_path(path, cache_dir) -> Path:
    """Where a file's features are cached: named by a hash of its bytes and FEATURE_SETTINGS, so
    an edited file or a changed setting misses, and a renamed or re-uploaded copy hits."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(FEATURE_SETTINGS, sort_keys=True).encode())
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return Path(cache_dir) / f"{digest.hexdigest()[:32]}.npz"


def extract_features(path, cache_dir=None) -> dict:
    """One file's features (numpy): audio [N], f0 [T] Hz, voiced [T], loudness [T] dB,
    mfcc [T, N_MFCC], with N == T * HOP_LENGTH exactly (the last partial frame is dropped).

    With `cache_dir`, features are read from and written to `<cache_dir>/<hash>.npz`; a cache
    hit needs neither soundfile nor librosa (a GPU box can train from carried caches)."""
    cached = feature_cache_path(path, cache_dir) if cache_dir and Path(path).is_file() else None
    if cached is not None and cached.is_file():
        with np.load(cached) as stored:
            return {"path": str(path), **{key: stored[key] for key in FEATURE_KEYS}}
    audio = load_audio(path)
    n_frames = len(audio) // HOP_LENGTH
    audio = audio[: n_frames * HOP_LENGTH]
    f0, voiced = estimate_f0(audio, path)
    features = {
        "path": str(path),
        "audio": audio,
        "f0": f0,
        "voiced": voiced,
        "loudness": compute_loudness(audio, n_frames),
        "mfcc": compute_mfcc(audio, n_frames),
    }
    if cached is not None:
        arrays = {key: features[key] for key in FEATURE_KEYS}
        atomic_write(cached, lambda tmp: np.savez(open(tmp, "wb"), **arrays))
    return features


# ----------------------------------------------------------------------------- synthesizer
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
    total = (n_frames - 1) * hop_length + filtered_size
    audio = F.fold(filtered.transpose(1, 2), output_size=(1, total),
                   kernel_size=(1, filtered_size), stride=(1, hop_length))
    delay = ir_size // 2
    return audio.reshape(batch, total)[:, delay: delay + n_frames * hop_length]


# ----------------------------------------------------------------------------- model
def mlp(in_size: int, hidden_size: int, n_layers: int = 3) -> nn.Sequential:
    """magenta's fc_stack: n_layers x [Linear, LayerNorm, LeakyReLU]."""
    layers = []
    for i in range(n_layers):
        layers += [nn.Linear(in_size if i == 0 else hidden_size, hidden_size),
                   nn.LayerNorm(hidden_size), nn.LeakyReLU()]
    return nn.Sequential(*layers)


class DDSPModel(nn.Module):
    """MFCC encoder + magenta-style RNN/FC decoder driving a harmonic-plus-noise synthesizer.

    Inputs f0 [B, T, 1] Hz, loudness [B, T, 1] dB, mfcc [B, T, N_MFCC]. The encoder maps each
    frame's MFCCs to a timbre code z [B, T, Z_DIM]; f0 (as MIDI / 127), loudness (as db / 80 + 1)
    and z each pass through their own MLP, a GRU runs over time, and the output MLP sees the
    three MLP outputs beside the GRU's. Heads: overall amplitude (1), harmonic distribution (H),
    noise filter magnitudes (M).
    """

    def __init__(self, n_harmonics: int = N_HARMONICS, n_noise_bands: int = N_NOISE_BANDS,
                 hidden_size: int = HIDDEN_SIZE, n_mfcc: int = N_MFCC, z_dim: int = Z_DIM,
                 sample_rate: int = SAMPLE_RATE, hop_length: int = HOP_LENGTH):
        super().__init__()
        self.config = dict(n_harmonics=n_harmonics, n_noise_bands=n_noise_bands,
                           hidden_size=hidden_size, n_mfcc=n_mfcc, z_dim=z_dim,
                           sample_rate=sample_rate, hop_length=hop_length)
        self.n_harmonics, self.n_noise_bands = n_harmonics, n_noise_bands
        self.sample_rate, self.hop_length = sample_rate, hop_length
        self.mfcc_norm = nn.LayerNorm(n_mfcc)
        self.encoder = nn.Linear(n_mfcc, z_dim)
        self.f0_mlp = mlp(1, hidden_size)
        self.loudness_mlp = mlp(1, hidden_size)
        self.z_mlp = mlp(z_dim, hidden_size)
        self.gru = nn.GRU(3 * hidden_size, hidden_size, batch_first=True)
        self.out_mlp = mlp(4 * hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, 1 + n_harmonics + n_noise_bands)

    def get_controls(self, f0, loudness, mfcc) -> dict:
        """Synthesizer controls at frame rate: amplitude [B, T, 1], harmonic_distribution
        [B, T, H] (sums to 1 below Nyquist), noise_magnitudes [B, T, M]."""
        stacks = [self.f0_mlp(hz_to_midi(f0) / 127.0),
                  self.loudness_mlp(loudness / -LOUDNESS_FLOOR_DB + 1.0),
                  self.z_mlp(self.encoder(self.mfcc_norm(mfcc)))]
        recurrent, _ = self.gru(torch.cat(stacks, dim=-1))
        out = self.out_proj(self.out_mlp(torch.cat(stacks + [recurrent], dim=-1))).float()
        amplitude, distribution, noise = out.split(
            [1, self.n_harmonics, self.n_noise_bands], dim=-1)
        return {
            "amplitude": exp_sigmoid(amplitude),
            "harmonic_distribution": normalize_harmonic_distribution(
                exp_sigmoid(distribution), f0.float(), self.sample_rate),
            "noise_magnitudes": exp_sigmoid(noise + NOISE_INITIAL_BIAS),
        }

    def synthesize(self, f0, controls: dict, harmonic_gain=None, noise_gain=None, waves=None,
                   generator: torch.Generator | None = None):
        """Audio [B, T * hop] from controls, in float32 whatever autocast says. Optional gains
        at frame rate mute or fade parts of the sound: harmonic_gain [B or 1, T, H],
        noise_gain [B or 1, T, 1] (used by the growth stages). `waves`: see harmonic_synth;
        `generator`: the noise's random source (default: torch's global one)."""
        with torch.autocast(f0.device.type, enabled=False):
            harmonic = controls["amplitude"] * controls["harmonic_distribution"]
            noise = controls["noise_magnitudes"]
            if harmonic_gain is not None:
                harmonic = harmonic * harmonic_gain
            if noise_gain is not None:
                noise = noise * noise_gain
            return (harmonic_synth(f0, harmonic, self.sample_rate, self.hop_length, waves)
                    + filtered_noise(noise, self.hop_length, generator))

    def forward(self, f0, loudness, mfcc, waves=None):
        """-> (audio [B, T * hop], harmonic controls {amplitude, harmonic_distribution},
        noise controls [B, T, M]). `waves`: harmonic_waves(f0, H), when precomputed."""
        controls = self.get_controls(f0, loudness, mfcc)
        audio = self.synthesize(f0, controls, waves=waves)
        harmonic = {k: controls[k] for k in ("amplitude", "harmonic_distribution")}
        return audio, harmonic, controls["noise_magnitudes"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module itself, also when `torch.compile(model)` wrapped it."""
    return getattr(model, "_orig_mod", model)


@contextmanager
def evaluating(model):
    """Yield the plain module in eval mode without autograd; its mode is restored after.
    Rendering calls get_controls and synthesize eagerly: a compiled forward would recompile."""
    core = unwrap_model(model)
    was_training = core.training
    core.eval()
    try:
        with torch.no_grad():
            yield core
    finally:
        core.train(was_training)


def steady_note(core, f0_mean: float, loudness_mean: float, mfcc_mean, n_frames: int):
    """One note held for n_frames, on the model's device: f0 [1, T, 1] Hz, loudness [1, T, 1] dB,
    mfcc [1, T, N_MFCC] from scalars and an mfcc vector [N_MFCC]."""
    device = next(core.parameters()).device
    mfcc = torch.as_tensor(np.asarray(mfcc_mean, dtype=np.float32), device=device)
    return (torch.full((1, n_frames, 1), float(f0_mean), device=device),
            torch.full((1, n_frames, 1), float(loudness_mean), device=device),
            mfcc.reshape(1, 1, -1).expand(1, n_frames, -1))


# ----------------------------------------------------------------------------- loss
def sample_mask(lengths, n_samples: int, device, hop_length: int = HOP_LENGTH):
    """[B, N] float: 1 on each file's valid samples (lengths: valid frames per file)."""
    lengths = torch.as_tensor(lengths, device=device).reshape(-1, 1)
    return (torch.arange(n_samples, device=device)[None] < lengths * hop_length).float()


def magnitude_spectrogram(audio: torch.Tensor, n_fft: int) -> torch.Tensor:
    """|STFT|: audio [B, N] -> [B, n_fft // 2 + 1, N // (n_fft // 4) + 1], float32.

    Zero (not reflect) padding at the edges, so a frame near a file's end sees the same zeros
    whether or not padding follows the file."""
    window = torch.hann_window(n_fft, device=audio.device)
    spectrum = torch.stft(audio.float(), n_fft, hop_length=n_fft // 4, window=window,
                          center=True, pad_mode="constant", return_complex=True)
    power = torch.view_as_real(spectrum).square().sum(-1)
    return power.clamp_min(1e-14).sqrt()  # clamp: the gradient of |z| at z = 0 is NaN


def frame_mask(lengths, n_stft_frames: int, n_fft: int, device, hop_length: int = HOP_LENGTH):
    """[B, 1, frames] float: STFT frames centred inside each file (frame j <= samples // hop)."""
    if lengths is None:
        return None
    n_samples = torch.as_tensor(lengths, device=device).reshape(-1, 1, 1) * hop_length
    frames = torch.arange(n_stft_frames, device=device)[None, None]
    return (frames <= n_samples // (n_fft // 4)).float()


def spectral_distance(pred_mag, target_mag, target_log_mag, mask) -> torch.Tensor:
    """Mean L1 of magnitude plus mean L1 of log magnitude over valid frames: scalar."""
    difference = (pred_mag - target_mag).abs() + (
        torch.log(pred_mag.clamp_min(LOG_MAG_FLOOR)) - target_log_mag).abs()
    if mask is None:
        return difference.mean()
    return (difference * mask).sum() / (mask.sum() * difference.shape[1])


class MultiScaleSpectralLoss(nn.Module):
    """magenta's multi-scale spectral loss, averaged over FFT sizes, always in float32.

    forward(pred_audio [B, N], target_audio [B, N], lengths=None) -> scalar. `lengths` gives
    the valid frames (HOP_LENGTH samples each) per file, as `load_multiple_files` returns them:
    samples beyond are zeroed in both signals and STFT frames centred beyond are left out."""

    def __init__(self, fft_sizes=FFT_SIZES):
        super().__init__()
        self.fft_sizes = tuple(fft_sizes)

    def _masked(self, audio, lengths):
        audio = audio.float()
        if lengths is None:
            return audio
        return audio * sample_mask(lengths, audio.shape[-1], audio.device)

    def _target_spectra(self, target_audio, lengths) -> dict:
        spectra = {}
        for n_fft in self.fft_sizes:
            magnitude = magnitude_spectrogram(target_audio, n_fft)
            spectra[n_fft] = (magnitude, torch.log(magnitude.clamp_min(LOG_MAG_FLOOR)),
                              frame_mask(lengths, magnitude.shape[-1], n_fft, magnitude.device))
        return spectra

    def _loss(self, pred_audio, target_spectra: dict) -> torch.Tensor:
        total = 0.0
        for n_fft, (target_mag, target_log_mag, mask) in target_spectra.items():
            pred_mag = magnitude_spectrogram(pred_audio, n_fft)
            total = total + spectral_distance(pred_mag, target_mag, target_log_mag, mask)
        return total / len(target_spectra)

    def forward(self, pred_audio, target_audio, lengths=None):
        with torch.autocast(pred_audio.device.type, enabled=False):
            target = self._masked(target_audio, lengths)
            return self._loss(self._masked(pred_audio, lengths),
                              self._target_spectra(target, lengths))


class OptimizedMultiScaleSpectralLoss(MultiScaleSpectralLoss):
    """The same loss with the target's spectra computed once: call precompute_target before
    training, then forward(pred_audio) computes only the prediction's STFTs."""

    def __init__(self, fft_sizes=FFT_SIZES):
        super().__init__(fft_sizes)
        self.target_spectra = None
        self.lengths = None

    @torch.no_grad()
    def precompute_target(self, target_audio, device, lengths=None):
        target_audio = torch.as_tensor(target_audio).to(device)
        self.lengths = None if lengths is None else torch.as_tensor(lengths).to(device)
        with torch.autocast(target_audio.device.type, enabled=False):
            self.target_spectra = self._target_spectra(
                self._masked(target_audio, self.lengths), self.lengths)
        return self

    def forward(self, pred_audio):
        if self.target_spectra is None:
            raise RuntimeError("call precompute_target(target_audio, device) before the loss")
        with torch.autocast(pred_audio.device.type, enabled=False):
            return self._loss(self._masked(pred_audio, self.lengths), self.target_spectra)


def time_domain_l1(pred_audio, target_audio, lengths=None) -> torch.Tensor:
    """Mean |pred - target| over valid samples: [B, N], [B, N] -> scalar (float32)."""
    difference = (pred_audio.float() - target_audio.float()).abs()
    if lengths is None:
        return difference.mean()
    mask = sample_mask(lengths, difference.shape[-1], difference.device)
    return (difference * mask).sum() / mask.sum()


# ----------------------------------------------------------------------------- batching
def pad_to(array: np.ndarray, n_frames: int, frame_axis: int = 0, hop: int = 1,
           value: float | None = None) -> np.ndarray:
    """Pad along `frame_axis` to n_frames * hop: with `value`, or by holding the last entry."""
    missing = n_frames * hop - array.shape[frame_axis]
    widths = [(0, 0)] * array.ndim
    widths[frame_axis] = (0, missing)
    if value is None:
        return np.pad(array, widths, mode="edge")
    return np.pad(array, widths, mode="constant", constant_values=value)


def collate(features: list, errors: dict | None = None) -> dict:
    """extract_features dicts -> one padded batch of torch tensors (CPU).

    f0 [B, T, 1], loudness [B, T, 1], mfcc [B, T, N_MFCC], audio [B, T * HOP_LENGTH],
    voiced [B, T], lengths [B] (valid frames per file), file_paths, errors. Padding holds f0
    and MFCCs, floors loudness and zeroes audio; the loss masks it out."""
    n_frames = max(len(f["f0"]) for f in features)

    def stack(key, hop=1, value=None):
        return torch.from_numpy(np.stack([pad_to(f[key], n_frames, 0, hop, value)
                                          for f in features]))

    return {
        "f0": stack("f0")[..., None],
        "loudness": stack("loudness", value=LOUDNESS_FLOOR_DB)[..., None],
        "mfcc": stack("mfcc"),
        "audio": stack("audio", HOP_LENGTH, 0.0),
        "voiced": stack("voiced", value=False),
        "lengths": torch.tensor([len(f["f0"]) for f in features]),
        "file_paths": [f["path"] for f in features],
        "errors": dict(errors or {}),
    }


_FEATURE_KERNELS_COMPILED = False


def compile_feature_kernels() -> None:
    """Run the feature pipeline once, in this process, on a short sine: librosa's numba kernels
    are then compiled, and written to numba's on-disk cache, by one process before workers
    fork (and inherit them). Two workers compiling at once can corrupt that cache: every later
    pYIN call then segfaults (seen on a fresh install)."""
    global _FEATURE_KERNELS_COMPILED
    if not _FEATURE_KERNELS_COMPILED:
        seconds = np.arange(4 * MIN_AUDIO_SAMPLES) / SAMPLE_RATE
        sine = (0.5 * np.sin(2 * np.pi * 220.0 * seconds)).astype(np.float32)
        estimate_f0(sine)
        compute_loudness(sine)
        compute_mfcc(sine)
        _FEATURE_KERNELS_COMPILED = True


def _features_or_error(path, cache_dir):
    """extract_features for a worker process: returns features or the AudioInputError."""
    try:
        return extract_features(path, cache_dir)
    except AudioInputError as err:
        return err


def load_multiple_files(file_paths, progress: bool = True, cache_dir=None,
                        n_workers: int | None = None) -> dict:
    """Features of many files as one padded batch (see `collate` for the keys).

    A file that fails is skipped with a warning and listed in `errors` {path: reason}.
    Raises AudioInputError only when no file is usable. `cache_dir`: see extract_features.
    `n_workers` > 1 extracts in that many processes (default: one per core, at most one per
    file not yet cached); 1 extracts here, in order."""
    from tqdm.auto import tqdm

    file_paths = [str(p) for p in file_paths]
    uncached = [p for p in file_paths if not (
        cache_dir and Path(p).is_file() and feature_cache_path(p, cache_dir).is_file())]
    # one process per core, at most one per file to extract: cache hits need no pool
    n_workers = min(n_workers or os.cpu_count() or 1, max(len(uncached), 1))
    bar = tqdm(total=len(file_paths), desc="features", disable=not progress)
    if n_workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        compile_feature_kernels()
        # fork where there is one: spawn would re-run a calling script that lacks a __main__
        # guard. The workers use numpy, soundfile and librosa only, never torch's OpenMP pool.
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ProcessPoolExecutor(n_workers, mp_context=context) as pool:
            futures = [pool.submit(_features_or_error, p, cache_dir) for p in file_paths]
            for future in futures:
                future.add_done_callback(lambda _: bar.update())
            results = [future.result() for future in futures]
    else:
        results = []
        for path in file_paths:
            results.append(_features_or_error(path, cache_dir))
            bar.update()
    bar.close()
    features, errors = [], {}
    for path, result in zip(file_paths, results):
        if isinstance(result, AudioInputError):
            errors[path] = result.reason
            warnings.warn(str(result), stacklevel=2)
        else:
            features.append(result)
    if not features:
        detail = "; ".join(f"{Path(p).name}: {r}" for p, r in errors.items()) or "no files given"
        raise AudioInputError(", ".join(file_paths) or "<none>", f"no usable audio file ({detail})")
    return collate(features, errors)


def batch_to_device(batch: dict, device) -> dict:
    """The same dict with every tensor moved to `device`."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def with_harmonic_waves(batch: dict, model) -> dict:
    """The batch plus its harmonic_waves [B, T, hop, H] for `model`: training_step then skips
    computing them every step (f0 never changes during training). Memory: B * N * H floats."""
    core = unwrap_model(model)
    waves = harmonic_waves(batch["f0"], core.n_harmonics, core.sample_rate, core.hop_length)
    return {**batch, "harmonic_waves": waves}


# ----------------------------------------------------------------------------- training
def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_has_fast_bfloat16() -> bool:
    """True where the CPU multiplies bfloat16 in hardware (AMX or AVX512-BF16): only there does
    CPU autocast to bfloat16 pay (measured 1.5x per step on a 2-core AMX Xeon); elsewhere it is
    emulated and slower than float32."""
    checks = [getattr(torch.cpu, name, None)
              for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(check() for check in checks if check is not None)


def make_optimizer(model: nn.Module, lr: float = LEARNING_RATE) -> torch.optim.Optimizer:
    """Adam; the fused kernel on CUDA (one launch for all parameters)."""
    device = next(model.parameters()).device
    return torch.optim.Adam(model.parameters(), lr=lr, fused=device.type == "cuda")


def training_step(model, optimizer, batch: dict, spectral_loss: MultiScaleSpectralLoss,
                  scaler=None, amp_dtype=None, clip_grad_norm: float = CLIP_GRAD_NORM):
    """One full-batch step; returns (total loss, spectral loss) as detached tensors (no sync).

    Only the model runs under autocast (`amp_dtype`); both losses are float32. With a
    GradScaler the gradients are unscaled before clipping, so the clip sees true norms."""
    optimizer.zero_grad(set_to_none=True)
    device_type = batch["f0"].device.type
    with torch.autocast(device_type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None):
        pred_audio, _, _ = model(batch["f0"], batch["loudness"], batch["mfcc"],
                                 batch.get("harmonic_waves"))
    target, lengths = batch["audio"], batch.get("lengths")
    if isinstance(spectral_loss, OptimizedMultiScaleSpectralLoss):
        spectral = spectral_loss(pred_audio)
    else:
        spectral = spectral_loss(pred_audio, target, lengths)
    loss = spectral + TIME_LOSS_WEIGHT * time_domain_l1(pred_audio, target, lengths)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
    return loss.detach(), spectral.detach()


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def new_history() -> dict:
    """An empty training history (see train)."""
    return {"loss": [], "spectral_loss": [], "timed_epochs": [], "elapsed_seconds": [],
            "skipped_steps": 0, "status": "not started"}


def parameters_finite(model) -> bool:
    norms = torch.stack([p.detach().float().norm() for p in model.parameters()])
    return bool(torch.isfinite(norms).all())


def train(model, optimizer, batch: dict, spectral_loss, n_epochs: int, scaler=None,
          amp_dtype=None, sync_every: int | None = None, progress: bool = True,
          desc: str = "training", history: dict | None = None, checkpoint_path=None,
          checkpoint_every: int = 100) -> dict:
    """Run `n_epochs` full-batch steps with a tqdm bar and return the history: loss and
    spectral_loss per epoch, elapsed_seconds at each synchronised epoch (timed_epochs),
    skipped_steps (GradScaler overflow skips) and status.

    The host waits for the device only every `sync_every` steps (default: 25 on CUDA, 1 on CPU)
    to read the losses, take honest wall times and check for trouble:
    - a NaN or inf loss stops training: the weights of the last good check are restored and
      `status` says what happened (no exception: the notebook can still save and listen);
    - an interrupt (KeyboardInterrupt, Colab's stop button) stops cleanly the same way;
    - with `checkpoint_path`, a resumable checkpoint (weights, optimizer, scaler, history) is
      written atomically every `checkpoint_every` epochs and when training stops.
    Pass an earlier history (resume_training) to continue its curves and epoch count."""
    from tqdm.auto import tqdm

    device = batch["f0"].device
    core = unwrap_model(model)
    sync_every = sync_every or (25 if device.type == "cuda" else 1)
    history = history or new_history()
    first_epoch = len(history["loss"])
    time_offset = history["elapsed_seconds"][-1] if history["elapsed_seconds"] else 0.0
    good_state = {k: v.detach().clone() for k, v in core.state_dict().items()}
    good_epoch = first_epoch
    scale = scaler.get_scale() if scaler is not None else None
    history["status"] = "running"
    pending = []
    synchronize(device)
    start = time.perf_counter()

    def drain() -> bool:
        """Record the pending losses; False if one is not finite (weights then restored)."""
        nonlocal good_state, good_epoch, scale
        if not pending:
            return True
        values = torch.stack([torch.stack(p) for p in pending]).cpu()  # the one sync
        pending.clear()
        finite = torch.isfinite(values).all(dim=1)
        n_good = len(values) if finite.all() else int((~finite).int().argmax())
        history["loss"] += values[:n_good, 0].tolist()
        history["spectral_loss"] += values[:n_good, 1].tolist()
        epoch = len(history["loss"])
        history["timed_epochs"].append(epoch)
        history["elapsed_seconds"].append(time_offset + time.perf_counter() - start)
        if scaler is not None:  # each skipped step halves the scale
            new_scale = scaler.get_scale()
            history["skipped_steps"] += max(0, round(math.log2(scale / new_scale)))
            scale = new_scale
        if n_good < len(values):
            core.load_state_dict(good_state)
            history["status"] = (f"stopped at epoch {epoch + 1}: the loss became "
                                 f"{values[n_good, 0].item()}; weights restored from epoch "
                                 f"{good_epoch}")
            warnings.warn(history["status"], stacklevel=3)
            return False
        if epoch - good_epoch >= SNAPSHOT_EVERY and parameters_finite(core):
            good_state = {k: v.detach().clone() for k, v in core.state_dict().items()}
            good_epoch = epoch
        return True

    def save():
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, model, history=history,
                            optimizer_state_dict=optimizer.state_dict(),
                            scaler_state_dict=scaler.state_dict() if scaler else None,
                            rng_state=torch.get_rng_state(),  # the noise continues exactly
                            cuda_rng_state=torch.cuda.get_rng_state(device)
                            if device.type == "cuda" else None)

    bar = tqdm(range(n_epochs), desc=desc, disable=not progress)
    try:
        for step in bar:
            if device.type == "cuda":  # CUDA graphs must know where a step begins
                torch.compiler.cudagraph_mark_step_begin()
            pending.append(training_step(model, optimizer, batch, spectral_loss, scaler,
                                         amp_dtype))
            if (step + 1) % sync_every == 0 or step + 1 == n_epochs:
                if not drain():
                    break
                bar.set_postfix(loss=f"{history['loss'][-1]:.4f}")
                if (first_epoch + step + 1) % checkpoint_every < sync_every:
                    save()
        else:
            history["status"] = "finished"
    except KeyboardInterrupt:
        drain()
        history["status"] = f"interrupted at epoch {len(history['loss'])}"
        warnings.warn(history["status"], stacklevel=2)
    finally:
        bar.close()
    save()
    return history


def resume_training(path, model, optimizer=None, scaler=None) -> dict:
    """Load a checkpoint written by train into model (and optimizer, scaler): returns its
    history, to pass to train so that epochs and curves continue where they stopped."""
    _, checkpoint = load_checkpoint(path, model)
    if optimizer is not None and checkpoint.get("optimizer_state_dict"):
        optimizer.load_state_dict(checkpoint["optimizer_state_dict"])  # moves state to params
    if scaler is not None and checkpoint.get("scaler_state_dict"):
        scaler.load_state_dict(checkpoint["scaler_state_dict"])
    if checkpoint.get("rng_state") is not None:
        torch.set_rng_state(checkpoint["rng_state"])
    if checkpoint.get("cuda_rng_state") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(checkpoint["cuda_rng_state"])
    return checkpoint.get("history") or new_history()


# ----------------------------------------------------------------------------- growth
# A stage is data: what sounds (harmonic count, None = all; noise on or off) and for how long.
GROWTH_STAGES = [
    {"name": "fundamental", "n_harmonics": 1, "noise": False, "duration": 1.0},
    {"name": "3 harmonics", "n_harmonics": 3, "noise": False, "duration": 1.0},
    {"name": "8 harmonics", "n_harmonics": 8, "noise": False, "duration": 1.0},
    {"name": "all harmonics", "n_harmonics": None, "noise": False, "duration": 1.0},
    {"name": "full timbre (harmonics + noise)", "n_harmonics": None, "noise": True,
     "duration": 1.5},
]


def stage_weights(stages, n_frames: int, frame_seconds: float,
                  crossfade_seconds: float = CROSSFADE_SECONDS) -> np.ndarray:
    """How much each stage sounds in each frame: [n_stages, n_frames], summing to 1 per frame.

    Neighbouring stages cross linearly over `crossfade_seconds` centred on their boundary."""
    times = np.arange(n_frames) * frame_seconds
    boundaries = np.cumsum([s["duration"] for s in stages])[:-1]
    width = max(crossfade_seconds, 1e-9)
    entered = [np.ones(n_frames)] + [np.clip((times - b) / width + 0.5, 0, 1) for b in boundaries]
    entered.append(np.zeros(n_frames))
    return np.stack([entered[i] - entered[i + 1] for i in range(len(stages))])


def harmonic_mask(stage: dict, n_harmonics: int) -> np.ndarray:
    """[H] bool: the harmonics that sound in `stage` (n_harmonics None = all)."""
    count = n_harmonics if stage["n_harmonics"] is None else stage["n_harmonics"]
    return np.arange(n_harmonics) < count


def stage_gains(stages, n_frames: int, n_harmonics: int, frame_seconds: float):
    """Frame-rate gains for the synthesizer: harmonic [1, T, H] and noise [1, T, 1]."""
    weights = stage_weights(stages, n_frames, frame_seconds)
    harmonic_masks = np.stack([harmonic_mask(s, n_harmonics) for s in stages]).astype(np.float64)
    noise_on = np.array([float(s["noise"]) for s in stages])
    harmonic = torch.from_numpy((weights.T @ harmonic_masks).astype(np.float32))
    noise = torch.from_numpy((weights.T @ noise_on).astype(np.float32))
    return harmonic[None], noise[None, :, None]


def validate_stages(stages) -> list:
    """Check a stage list; returns it. Raises ValueError saying which stage is wrong and why."""
    if not stages:
        raise ValueError("a growth needs at least one stage")
    for i, stage in enumerate(stages):
        name = stage.get("name", f"stage {i}")
        missing = {"n_harmonics", "noise", "duration"} - set(stage)
        if missing:
            raise ValueError(f"stage {name!r} lacks {sorted(missing)}")
        if not 0 < stage["duration"] < math.inf:
            raise ValueError(f"stage {name!r}: duration must be a finite number of seconds > 0, "
                             f"got {stage['duration']}")
        count = stage["n_harmonics"]
        if count is not None and (int(count) != count or count < 0):
            raise ValueError(f"stage {name!r}: n_harmonics must be None or a count >= 0")
    return list(stages)


def finish_render(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A render ready to play: EDGE_FADE_SECONDS fades at both ends (no click where it starts
    or stops), scaled down if it would clip: float32 [N]."""
    audio = np.asarray(audio, dtype=np.float64).copy()
    fade = min(int(EDGE_FADE_SECONDS * sample_rate), len(audio) // 2)
    ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
    audio[:fade] *= ramp
    audio[len(audio) - fade:] *= ramp[::-1]
    return fit_to_full_scale(audio.astype(np.float32))


def render_stages(model, f0_mean: float, loudness_mean: float, mfcc_mean, stages,
                  seed: int = 0) -> np.ndarray:
    """Render `stages` back to back from one steady note: float32 [sum of durations * SR].

    The note (f0_mean Hz, loudness_mean dB, mfcc_mean [N_MFCC]) is held for the whole render;
    controls and phase run continuously and only the stage gains change, crossfading at
    boundaries, so nothing clicks. Short fades at both ends; scaled down if it would clip."""
    stages = validate_stages(stages)
    with evaluating(model) as core:
        sample_rate, hop = core.sample_rate, core.hop_length
        n_samples = int(round(sum(s["duration"] for s in stages) * sample_rate))
        n_frames = -(-n_samples // hop)
        f0, loudness, mfcc = steady_note(core, f0_mean, loudness_mean, mfcc_mean, n_frames)
        harmonic_gain, noise_gain = stage_gains(stages, n_frames, core.n_harmonics,
                                                hop / sample_rate)
        generator = torch.Generator(device=f0.device).manual_seed(seed)
        audio = core.synthesize(f0, core.get_controls(f0, loudness, mfcc),
                                harmonic_gain.to(f0.device), noise_gain.to(f0.device),
                                generator=generator)
    return finish_render(audio[0, :n_samples].cpu().numpy(), sample_rate)


def synthesize_stage(model, f0_mean, loudness_mean, mfcc_mean, stage: dict,
                     seed: int = 0) -> np.ndarray:
    """One growth stage as float32 audio [stage duration * SR]."""
    return render_stages(model, f0_mean, loudness_mean, mfcc_mean, [stage], seed)


def grow_timbre(model, f0_mean, loudness_mean, mfcc_mean, stages=GROWTH_STAGES,
                seed: int = 0) -> np.ndarray:
    """All stages in order, crossfaded: float32 audio [sum of durations * SR], peak <= 1
    (scaled to 0.99 if it would clip)."""
    return render_stages(model, f0_mean, loudness_mean, mfcc_mean, stages, seed)


def mean_note(batch: dict, index: int) -> tuple[float, float, np.ndarray]:
    """A file's average note for growth: (f0 Hz over voiced frames, loudness dB, mfcc [N_MFCC]),
    averaged over its valid frames only."""
    n = int(batch["lengths"][index])
    f0 = batch["f0"][index, :n, 0].cpu().numpy()
    voiced = batch["voiced"][index, :n].cpu().numpy() if "voiced" in batch else np.ones(n, bool)
    f0_mean = float(np.exp(np.mean(np.log(f0[voiced] if voiced.any() else f0))))
    loudness_mean = float(batch["loudness"][index, :n, 0].mean())
    mfcc_mean = batch["mfcc"][index, :n].mean(0).cpu().numpy()
    return f0_mean, loudness_mean, mfcc_mean


# ----------------------------------------------------------------------------- files
def atomic_write(path, write) -> Path:
    """Call write(tmp_path), then move tmp_path over `path`: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def fit_to_full_scale(audio: np.ndarray, peak: float = 0.99) -> np.ndarray:
    """float32 audio [N] scaled down to `peak` if it would clip, untouched otherwise. A DDSP
    resynthesis matches the target's spectrum, not its phases, so its waveform can peak higher
    than the target's: scaling keeps the spectrum, clipping would add broadband distortion."""
    audio = np.asarray(audio, dtype=np.float32)
    loudest = float(np.max(np.abs(audio))) if audio.size else 0.0
    return audio * (peak / loudest) if loudest > 1.0 else audio


def write_wav(path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write float audio [N] as 16-bit PCM wav, atomically (scaled down if it would clip)."""
    import soundfile as sf

    audio = fit_to_full_scale(audio)
    return atomic_write(path, lambda tmp: sf.write(tmp, audio, sample_rate, subtype="PCM_16",
                                                   format="WAV"))


# ----------------------------------------------------------------------------- checkpoints
COMPILED_PREFIX = "_orig_mod."


def clean_state_dict(state_dict: dict) -> dict:
    """Drop torch.compile's `_orig_mod.` prefix from every key."""
    return {key.replace(COMPILED_PREFIX, ""): value for key, value in state_dict.items()}


def save_checkpoint(path, model, **extras) -> Path:
    """Write {"model_state_dict", "config", **extras} atomically. Keys are those of the plain
    module, whether or not `model` was compiled. Extras must be weights_only-loadable
    (tensors, numbers, strings, lists, dicts)."""
    core = unwrap_model(model)
    state = {k: v.detach().cpu() for k, v in clean_state_dict(core.state_dict()).items()}
    payload = {"model_state_dict": state, "config": dict(core.config), **extras}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path, model=None, map_location="cpu"):
    """Load a checkpoint safely (weights_only=True) -> (model, checkpoint dict).

    Without `model` one is built from the saved config; with one (compiled or not) its config
    must match, else ValueError lists what differs. `_orig_mod.` keys are accepted."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(f"{path}: not a loadable checkpoint ({err})") from None
    if not isinstance(checkpoint, dict) or "model_state_dict" not in checkpoint:
        raise ValueError(f"{path}: not a DDSP checkpoint (no model_state_dict)")
    saved_config = checkpoint.get("config", {})
    if model is None:
        model = DDSPModel(**saved_config)
    core = unwrap_model(model)
    differences = [f"{key}: checkpoint {saved_config.get(key)!r}, model {value!r}"
                   for key, value in core.config.items()
                   if key in saved_config and saved_config[key] != value]
    if differences:
        raise ValueError(f"{path}: checkpoint was saved with another model configuration ("
                         + "; ".join(differences) + ")")
    core.load_state_dict(clean_state_dict(checkpoint["model_state_dict"]))
    return model, checkpoint


# ----------------------------------------------------------------------------- notebook support
RUNTIME_PACKAGES = {"librosa": "librosa", "soundfile": "soundfile", "tqdm": "tqdm",
                    "matplotlib": "matplotlib", "ipywidgets": "ipywidgets"}


def install_missing(packages: dict = RUNTIME_PACKAGES) -> list[str]:
    """pip-install the runtime packages ({import name: pip name}) that are missing; never torch,
    so Colab keeps its CUDA build. Returns what was installed."""
    import importlib.util
    import subprocess
    import sys

    missing = [pip for module, pip in packages.items() if importlib.util.find_spec(module) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    return missing


def cpu_name() -> str:
    """The processor's model name (Linux /proc/cpuinfo), else what platform knows."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_report(device=None) -> dict:
    """What the run ran on, for the notebook's first cell and the run record."""
    import platform

    device = torch.device(device or pick_device())
    report = {"device_type": device.type, "torch": torch.__version__,
              "python": platform.python_version(), "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        report.update(device=properties.name, gpu_memory_gb=round(properties.total_memory / 2**30, 1),
                      cuda=torch.version.cuda)
    else:
        report["device"] = cpu_name()
    return report


def safe_upload_name(name: str) -> str:
    """A bare file name from an uploaded name: no folders (`../../x.wav` -> `x.wav`), no leading
    dots, no characters outside letters, digits and `-_. `. Raises ValueError if nothing is left."""
    base = name.replace("\\", "/").split("/")[-1]
    cleaned = "".join(c if c.isalnum() or c in "-_. " else "_" for c in base).strip().lstrip(".")
    if not cleaned:
        raise ValueError(f"{name!r} is not a usable file name")
    return cleaned


def save_uploads(uploads, folder) -> list[Path]:
    """Write uploaded files into `folder` only: uploads is {name: bytes} (Colab's
    files.upload()) or a sequence of {"name", "content"} dicts (ipywidgets 8 FileUpload.value).
    Same-named uploads are kept apart (`x.wav`, `x_2.wav`). Returns the written paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    items = uploads.items() if isinstance(uploads, dict) else (
        (item["name"], item["content"]) for item in uploads)
    written = []
    for name, content in items:
        target = folder / safe_upload_name(name)
        stem, suffix, n = target.stem, target.suffix, 2
        while target.exists() or target in written:
            target = folder / f"{stem}_{n}{suffix}"
            n += 1
        written.append(atomic_write(target, lambda tmp, data=bytes(content):
                                    Path(tmp).write_bytes(data)))
    return written


def audio_player(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
    """HTML <audio> element at the clip's true level (no normalisation; scaled down only if
    it would clip): [N]."""
    from IPython.display import Audio

    return Audio(fit_to_full_scale(audio), rate=sample_rate, normalize=False)._repr_html_()


def players_table(rows: dict, columns) -> str:
    """HTML table of players: rows {label: {column: audio [N] or None}}; renders in Jupyter,
    Colab and on GitHub."""
    head = "".join(f"<th>{c}</th>" for c in ["file", *columns])
    body = ""
    for label, clips in rows.items():
        cells = "".join(f"<td>{audio_player(clips[c]) if clips.get(c) is not None else '-'}</td>"
                        for c in columns)
        body += f"<tr><td>{label}</td>{cells}</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


# ----------------------------------------------------------------------------- evaluation
def sine_baseline(f0: np.ndarray, loudness: np.ndarray) -> np.ndarray:
    """A plain sine at f0 [T] Hz whose A-weighted loudness matches loudness [T] dB: audio [N].

    Inverts compute_loudness for one partial: mean-square a^2 / 2 times the A-weight at f0."""
    import librosa

    a_weight_db = librosa.A_weighting(np.asarray(f0, dtype=np.float64))
    amplitude = np.sqrt(2.0 * 10.0 ** ((np.asarray(loudness) - a_weight_db) / 10.0))
    amplitude[np.asarray(loudness) <= LOUDNESS_FLOOR_DB] = 0.0
    f0_t = torch.as_tensor(np.asarray(f0, dtype=np.float32)).reshape(1, -1, 1)
    amp_t = torch.as_tensor(amplitude.astype(np.float32)).reshape(1, -1, 1)
    return harmonic_synth(f0_t, amp_t)[0].numpy()


def resynthesis_metrics(output: np.ndarray, target: np.ndarray, f0: np.ndarray,
                        voiced: np.ndarray, loudness: np.ndarray) -> dict:
    """How close `output` [N] is to `target` [N] (N = T * HOP_LENGTH), given the target's
    features f0 [T], voiced [T], loudness [T]:
    spectral_distance (the multi-scale loss), f0_error_cents (mean |cents| of pYIN on the output
    vs the input, frames voiced in both) and loudness_l1_db (mean |dB| difference)."""
    output = np.asarray(output, dtype=np.float32)[: len(target)]
    with torch.no_grad():
        spectral = float(MultiScaleSpectralLoss()(torch.from_numpy(output)[None],
                                                  torch.from_numpy(target)[None]))
    try:
        out_f0, out_voiced = estimate_f0(output)
        both = voiced & out_voiced
        cents = np.abs(1200.0 * np.log2(out_f0[both] / f0[both])) if both.any() else []
        f0_error = float(np.mean(cents)) if len(cents) else float("nan")
        voiced_share = float(both.sum() / max(voiced.sum(), 1))
    except AudioInputError:  # the output has no pitch at all
        f0_error, voiced_share = float("nan"), 0.0
    loudness_l1 = float(np.mean(np.abs(compute_loudness(output, len(loudness)) - loudness)))
    return {"spectral_distance": spectral, "f0_error_cents": f0_error,
            "voiced_frames_matched": voiced_share, "loudness_l1_db": loudness_l1}


def resynthesize(model, batch: dict, seed: int = 0) -> list[np.ndarray]:
    """The model's output for every file of a batch, each cut to its valid length (float32).
    The noise is seeded by `seed`; torch's global random state is left alone."""
    with evaluating(model) as core:
        generator = torch.Generator(device=batch["f0"].device).manual_seed(seed)
        controls = core.get_controls(batch["f0"], batch["loudness"], batch["mfcc"])
        audio = core.synthesize(batch["f0"], controls, generator=generator)
    audio = audio.float().cpu().numpy()
    return [audio[i, : int(n) * core.hop_length]
            for i, n in enumerate(batch["lengths"])]


def evaluate_batch(model, batch: dict, progress: bool = True) -> tuple[dict, list]:
    """Metrics per file for the model and for the sine baseline -> ({stem: {"model": {...},
    "sine": {...}}}, resynthesized audio per file)."""
    from tqdm.auto import tqdm

    outputs = resynthesize(model, batch)
    metrics = {}
    for i in tqdm(range(len(outputs)), desc="metrics", disable=not progress):
        n = int(batch["lengths"][i])
        target = batch["audio"][i, : n * HOP_LENGTH].cpu().numpy()
        f0 = batch["f0"][i, :n, 0].cpu().numpy()
        voiced = batch["voiced"][i, :n].cpu().numpy()
        loudness = batch["loudness"][i, :n, 0].cpu().numpy()
        metrics[Path(batch["file_paths"][i]).stem] = {
            "model": resynthesis_metrics(outputs[i], target, f0, voiced, loudness),
            "sine": resynthesis_metrics(sine_baseline(f0, loudness), target, f0, voiced,
                                        loudness),
        }
    return metrics, outputs


def metrics_table(metrics: dict) -> str:
    """Markdown table of evaluate_batch's metrics, model beside sine baseline."""
    lines = ["| file | spectral distance (model / sine) | f0 error cents (model / sine) "
             "| loudness L1 dB (model / sine) |", "|---|---|---|---|"]
    for stem, m in metrics.items():
        lines.append(f"| {stem} | {m['model']['spectral_distance']:.3f} / "
                     f"{m['sine']['spectral_distance']:.3f} | {m['model']['f0_error_cents']:.1f} / "
                     f"{m['sine']['f0_error_cents']:.1f} | {m['model']['loudness_l1_db']:.2f} / "
                     f"{m['sine']['loudness_l1_db']:.2f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- run records
def epoch_seconds(history: dict) -> list[float]:
    """Wall time of every epoch, from the synchronised timestamps (each window's mean)."""
    seconds, previous_epoch, previous_time = [], 0, 0.0
    for epoch, elapsed in zip(history["timed_epochs"], history["elapsed_seconds"]):
        window = epoch - previous_epoch
        seconds += [(elapsed - previous_time) / window] * window
        previous_epoch, previous_time = epoch, elapsed
    return seconds


def make_run_record(notebook: str, model, batch: dict, history: dict, config: dict,
                    metrics: dict, wavs: list, feature_seconds: float, device=None,
                    **extras) -> dict:
    """Everything the side-by-side comparison needs from one notebook run (JSON-ready)."""
    total = history["elapsed_seconds"][-1] if history["elapsed_seconds"] else 0.0
    n_files = len(batch["file_paths"])
    tail = history["spectral_loss"][-10:]
    return {
        "notebook": notebook,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        **device_report(device),
        "config": {**config, "model": dict(unwrap_model(model).config)},
        "files": batch["file_paths"],
        "rejected_files": batch.get("errors", {}),
        "n_files": n_files,
        "n_epochs": len(history["loss"]),
        "feature_seconds": feature_seconds,
        "total_training_seconds": total,
        "seconds_per_file": total / max(n_files, 1),
        "epoch_seconds": epoch_seconds(history),
        "loss_curve": history["loss"],
        "spectral_loss_curve": history["spectral_loss"],
        "timed_epochs": history["timed_epochs"],
        "elapsed_seconds": history["elapsed_seconds"],
        "training_status": history.get("status"),
        "skipped_steps": history.get("skipped_steps", 0),
        "final_loss": history["loss"][-1] if history["loss"] else None,
        "final_spectral_loss": float(np.mean(tail)) if tail else None,
        "metrics": metrics,
        "wavs": [str(w) for w in wavs],
        **extras,
    }


def save_run_record(path, record: dict) -> Path:
    import json

    text = json.dumps(record, indent=1, default=str)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def load_run_record(path) -> dict | None:
    """The record at `path`, or None if there is none yet."""
    import json

    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


# ----------------------------------------------------------------------------- plots and comparison
def plot_features(features: dict, title: str = ""):
    """f0, loudness and spectrogram of one file's features (extract_features' dict)."""
    import librosa
    import matplotlib.pyplot as plt

    times = np.arange(len(features["f0"])) * HOP_LENGTH / SAMPLE_RATE
    fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
    axes[0].plot(times, features["f0"], label="f0 (filled)")
    voiced_f0 = np.where(features["voiced"], features["f0"], np.nan)
    axes[0].plot(times, voiced_f0, lw=3, alpha=0.6, label="voiced")
    axes[0].set_ylabel("f0 (Hz)")
    axes[0].legend(loc="upper right")
    axes[1].plot(times, features["loudness"])
    axes[1].set_ylabel("loudness (dB A)")
    spectrum = librosa.amplitude_to_db(np.abs(librosa.stft(features["audio"], n_fft=1024,
                                                           hop_length=HOP_LENGTH)), ref=np.max)
    axes[2].imshow(spectrum, origin="lower", aspect="auto", cmap="magma", vmin=-80,
                   extent=[0, times[-1] if len(times) else 1, 0, SAMPLE_RATE / 2])
    axes[2].set_ylabel("frequency (Hz)")
    axes[2].set_xlabel("time (s)")
    fig.suptitle(title or Path(features.get("path", "")).name)
    fig.tight_layout()
    return fig


def plot_growth(audio: np.ndarray, stages, title: str = "grown timbre"):
    """Waveform and spectrogram of a growth render, stage boundaries marked and named."""
    import librosa
    import matplotlib.pyplot as plt

    times = np.arange(len(audio)) / SAMPLE_RATE
    fig, axes = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    axes[0].plot(times, audio, lw=0.4)
    axes[0].set_ylabel("amplitude")
    spectrum = librosa.amplitude_to_db(np.abs(librosa.stft(audio, n_fft=2048,
                                                           hop_length=HOP_LENGTH)), ref=np.max)
    axes[1].imshow(spectrum, origin="lower", aspect="auto", cmap="magma", vmin=-80,
                   extent=[0, times[-1], 0, SAMPLE_RATE / 2])
    axes[1].set_ylim(0, 8000)
    axes[1].set_ylabel("frequency (Hz)")
    axes[1].set_xlabel("time (s)")
    start = 0.0
    for stage in stages:
        for ax in axes:
            ax.axvline(start, color="w" if ax is axes[1] else "k", lw=0.8, ls="--")
        axes[0].text(start + 0.03, 0.95, stage["name"], transform=axes[0].get_xaxis_transform(),
                     va="top", fontsize=8)
        start += stage["duration"]
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_loss(history_or_record: dict, title: str = "training loss"):
    """Total and spectral loss against epoch (a train() history or a run record)."""
    import matplotlib.pyplot as plt

    loss = history_or_record.get("loss") or history_or_record.get("loss_curve")
    spectral = (history_or_record.get("spectral_loss")
                or history_or_record.get("spectral_loss_curve"))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(np.arange(1, len(loss) + 1), loss, label="total")
    ax.plot(np.arange(1, len(spectral) + 1), spectral, label="spectral")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    return fig


RUN_LABELS = {"ddsp_original": "original", "ddsp_optimized": "optimized"}


def comparison_rows(records: dict) -> list[dict]:
    """One row per run record {label: record}: what the side-by-side table shows."""
    rows = []
    baseline = next(iter(records.values()))
    for label, record in records.items():
        model_metrics = [m["model"] for m in record["metrics"].values()]
        sine_metrics = [m["sine"] for m in record["metrics"].values()]

        def mean(items, key):
            values = [x[key] for x in items if np.isfinite(x[key])]
            return float(np.mean(values)) if values else float("nan")

        rows.append({
            "run": label,
            "device": record["device"],
            "files": record["n_files"],
            "epochs": record["n_epochs"],
            "training s": record["total_training_seconds"],
            "s per file": record["seconds_per_file"],
            "s per file per 1000 epochs": 1000 * record["seconds_per_file"] / max(record["n_epochs"], 1),
            "speedup per file": (baseline["seconds_per_file"] / max(baseline["n_epochs"], 1))
            / (record["seconds_per_file"] / max(record["n_epochs"], 1)),
            "final spectral loss": record["final_spectral_loss"],
            "spectral distance (sine)": f"{mean(model_metrics, 'spectral_distance'):.3f} "
                                        f"({mean(sine_metrics, 'spectral_distance'):.3f})",
            "f0 error cents (sine)": f"{mean(model_metrics, 'f0_error_cents'):.1f} "
                                     f"({mean(sine_metrics, 'f0_error_cents'):.1f})",
            "loudness L1 dB (sine)": f"{mean(model_metrics, 'loudness_l1_db'):.2f} "
                                     f"({mean(sine_metrics, 'loudness_l1_db'):.2f})",
        })
    return rows


def comparison_markdown(records: dict) -> str:
    """The side-by-side table as markdown (speedup: time per file per epoch vs the first run)."""
    rows = comparison_rows(records)
    keys = list(rows[0])

    def cell(value):
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def plot_loss_comparison(records: dict):
    """Spectral loss curves of several runs against epoch and against wall-clock time."""
    import matplotlib.pyplot as plt

    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(12, 4))
    for label, record in records.items():
        curve = np.asarray(record["spectral_loss_curve"])
        by_epoch.plot(np.arange(1, len(curve) + 1), curve, label=label)
        seconds = np.cumsum(record["epoch_seconds"]) if record["epoch_seconds"] else []
        by_time.plot(seconds, curve[: len(seconds)], label=label)
    for ax, xlabel in ((by_epoch, "epoch"), (by_time, "training time (s)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("spectral loss")
        ax.set_yscale("log")
        ax.legend()
    by_time.set_xscale("log")
    fig.tight_layout()
    return fig


def plot_spectrogram_comparison(clips: dict, title: str = ""):
    """Spectrograms side by side: clips {label: audio [N]}."""
    import librosa
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(clips), figsize=(4 * len(clips), 3.5), sharey=True)
    for ax, (label, audio) in zip(np.atleast_1d(axes), clips.items()):
        spectrum = librosa.amplitude_to_db(np.abs(librosa.stft(audio, n_fft=1024,
                                                               hop_length=HOP_LENGTH)), ref=1.0)
        ax.imshow(spectrum, origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=20,
                  extent=[0, len(audio) / SAMPLE_RATE, 0, SAMPLE_RATE / 2])
        ax.set_ylim(0, 8000)
        ax.set_title(label)
        ax.set_xlabel("time (s)")
    np.atleast_1d(axes)[0].set_ylabel("frequency (Hz)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def resynthesis_wav(record: dict, stem: str) -> Path | None:
    """The resynthesis wav of `stem` that a run record lists, if it exists."""
    return next((Path(w) for w in record["wavs"]
                 if Path(w).name == f"resynth_{stem}.wav" and Path(w).is_file()), None)


def show_comparison(runs_dir) -> dict | None:
    """The side-by-side section: table, loss curves (by epoch and by wall time), spectrograms
    and players of one tone that both runs learned. Says what to run when a record is missing."""
    from IPython.display import HTML, Markdown, display

    runs_dir = Path(runs_dir)
    records = {label: load_run_record(runs_dir / f"{name}.json")
               for name, label in RUN_LABELS.items()}
    missing = [f"`notebooks/{name}.ipynb`" for name, label in RUN_LABELS.items()
               if records[label] is None]
    if missing:
        display(Markdown(f"No run record yet in `{runs_dir}` from {' and '.join(missing)}: run "
                         "that notebook to the end, then re-run this cell."))
        return None
    display(Markdown(comparison_markdown(records)))
    if len({r["device"] for r in records.values()}) > 1:
        display(Markdown("**The two runs used different devices**: the speedup mixes hardware "
                         "with optimizations."))
    plot_loss_comparison(records)
    original, optimized = records["original"], records["optimized"]
    stem = Path(original["files"][0]).stem
    original_wav, optimized_wav = resynthesis_wav(original, stem), resynthesis_wav(optimized, stem)
    if original_wav is None or optimized_wav is None:
        display(Markdown(f"The optimized run did not learn `{stem}` (the original's file): no "
                         "sound to compare."))
        return records
    clips = {"target": load_audio(original["files"][0]), "original": load_audio(original_wav),
             "optimized": load_audio(optimized_wav)}
    plot_spectrogram_comparison(clips, stem)
    display(HTML(players_table({stem: clips}, list(clips))))
    return records


# ----------------------------------------------------------------------------- timbre transfer
# A melody for a trained model comes as frame-rate controls, f0 [T] Hz and loudness [T] dB, from
# one of three sources: a note list ("C4:0.5 E4:0.5 G4:1"), a MIDI file, or another recording's
# f0 and loudness moved into the training range. The timbre is an MFCC vector [N_MFCC]: one
# file's (timbre_mfcc(batch, i)) or the mean over all files ("the whole model").

NOTE_OFFSETS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTALS = {"": 0, "#": 1, "\u266f": 1, "b": -1, "\u266d": -1}
_NOTE_NAME = re.compile(r"^([A-Ga-g])([#b\u266f\u266d]?)(-?\d+)$")
_REST_NAMES = {"r", "rest"}


@dataclass(frozen=True)
class Note:
    """One note of a melody: pitch_midi (float MIDI number, 60 = C4; None for a rest) held for
    `duration` seconds (onset to release; the release tail follows, see notes_to_controls)."""

    pitch_midi: float | None
    duration: float

    @property
    def is_rest(self) -> bool:
        return self.pitch_midi is None


def midi_to_hz(midi):
    """MIDI note number -> Hz (the inverse of hz_to_midi); numpy arrays, tensors or floats."""
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def note_to_midi(name: str) -> float:
    """'C4' -> 60, 'C#4' / 'Db4' -> 61, 'Bb3' -> 58, 'C-1' -> 0 (scientific pitch, letters in
    either case, one # or b), or a MIDI number as text ('60', '61.5'). Raises ValueError."""
    text = name.strip()
    match = _NOTE_NAME.match(text)
    if match:
        letter, accidental, octave = match.groups()
        midi = 12 * (int(octave) + 1) + NOTE_OFFSETS[letter.upper()] + _ACCIDENTALS[accidental]
    else:
        try:
            midi = float(text)
        except ValueError:
            raise ValueError(f"{name!r} is not a note: use a name A-G with optional # or b and "
                             "an octave (C4, F#3, Bb2), a MIDI number (60) or R for a rest"
                             ) from None
    if not 0 <= midi <= 127:
        raise ValueError(f"{name!r} is MIDI {midi:g}, outside 0..127 (C-1..G9)")
    return float(midi)


def parse_note_list(text: str) -> list:
    """'C4:0.5 E4:0.5 R:0.25 G4:1' -> [Note(60, 0.5), Note(64, 0.5), Note(None, 0.25), ...].

    Tokens are `pitch:seconds`, separated by whitespace or commas (spaces around ':' are fine).
    pitch: a note name (C4, c#4, Db4, Bb3, C-1), a MIDI number (60, 61.5) or R / rest.
    Raises ValueError naming the bad token and why (unknown pitch, missing or non-positive
    duration, empty list)."""
    if not isinstance(text, str):
        raise ValueError(f"a note list is text like 'C4:0.5 E4:1', got {type(text).__name__}")
    tokens = [t for t in re.split(r"[\s,]+", re.sub(r"\s*:\s*", ":", text.strip())) if t]
    if not tokens:
        raise ValueError("the note list is empty: write notes like 'C4:0.5 E4:0.5 G4:1'")
    notes = []
    for i, token in enumerate(tokens, start=1):
        where = f"note {i} {token!r}"
        if token.count(":") != 1:
            raise ValueError(f"{where}: expected pitch:seconds (like C4:0.5), "
                             + ("missing ':duration'" if ":" not in token else "too many ':'"))
        pitch_text, duration_text = token.split(":")
        if pitch_text.lower() in _REST_NAMES:
            pitch = None
        else:
            try:
                pitch = note_to_midi(pitch_text)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
        try:
            duration = float(duration_text)
        except ValueError:
            raise ValueError(f"{where}: duration {duration_text!r} is not a number of "
                             "seconds") from None
        if not (math.isfinite(duration) and duration > 0):
            raise ValueError(f"{where}: duration must be a finite number of seconds > 0, "
                             f"got {duration_text}")
        notes.append(Note(pitch, duration))
    return notes


def _as_notes(notes) -> list:
    """A note list given as text, Notes, dicts {pitch_midi, duration} or (pitch, duration)
    pairs; a pitch may be a MIDI number, a note name or None / 'R' for a rest."""
    if isinstance(notes, str):
        return parse_note_list(notes)
    result = []
    for note in notes:
        if isinstance(note, Note):
            pitch, duration = note.pitch_midi, note.duration
        elif isinstance(note, dict):
            pitch, duration = note.get("pitch_midi"), note["duration"]
        else:
            pitch, duration = note
        if isinstance(pitch, str):
            pitch = None if pitch.strip().lower() in _REST_NAMES else note_to_midi(pitch)
        elif pitch is not None and not 0 <= float(pitch) <= 127:
            raise ValueError(f"{note}: pitch {pitch} is outside MIDI 0..127")
        if not (math.isfinite(float(duration)) and float(duration) > 0):
            raise ValueError(f"{note}: duration must be a finite number of seconds > 0")
        result.append(Note(None if pitch is None else float(pitch), float(duration)))
    return result


# ----------------------------------------------------------------------------- MIDI files
def _tempo_map(tracks):
    """[(tick, tempo us per beat)] sorted, from set_tempo events (type 0/1: all tracks share
    them; type 2: each track has its own, so pass one track)."""
    changes = []
    for track in tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "set_tempo":
                changes.append((tick, message.tempo))
    changes.sort(key=lambda c: c[0])  # stable: the later of two at one tick wins below
    return [(0, 500000)] + changes  # 120 bpm until the first change (the MIDI default)


def _ticks_to_seconds(ticks: np.ndarray, tempo_map, ticks_per_beat: int) -> np.ndarray:
    """Absolute ticks [K] -> seconds [K] under a piecewise-constant tempo map."""
    change_ticks = np.array([c[0] for c in tempo_map], dtype=np.float64)
    tempos = np.array([c[1] for c in tempo_map], dtype=np.float64) / 1e6 / ticks_per_beat
    # seconds at each change: integrate the previous segment's seconds-per-tick
    starts = np.concatenate([[0.0], np.cumsum(np.diff(change_ticks) * tempos[:-1])])
    index = np.searchsorted(change_ticks, ticks, side="right") - 1
    return starts[index] + (ticks - change_ticks[index]) * tempos[index]


def _track_notes(track):
    """(start tick, end tick, pitch, channel) of every note in one track. A note still on at
    the track's end ends there; a re-struck sounding pitch ends the earlier note."""
    sounding, notes, tick = {}, [], 0
    for message in track:
        tick += message.time
        if message.type not in ("note_on", "note_off"):
            continue
        key = (message.channel, message.note)
        if key in sounding:  # note_off, note_on velocity 0, or a re-strike
            notes.append((sounding.pop(key), tick, message.note, message.channel))
        if message.type == "note_on" and message.velocity > 0:
            sounding[key] = tick
    notes += [(start, tick, note, channel) for (channel, note), start in sounding.items()]
    return [n for n in notes if n[1] > n[0]]


def _monophonic(intervals, overlap: str) -> list:
    """Overlapping (start s, end s, pitch) -> Notes with rests, one pitch at a time.

    Wherever notes overlap, `overlap="highest"` sounds the highest, "latest" the most recently
    started (falling back to a still-held earlier note when it ends). Leading silence is
    dropped."""
    if overlap not in ("highest", "latest"):
        raise ValueError(f"overlap must be 'highest' or 'latest', got {overlap!r}")
    starting, ending = {}, {}
    for i, (start, end, _) in enumerate(intervals):
        starting.setdefault(start, []).append(i)
        ending.setdefault(end, []).append(i)
    times = sorted(set(starting) | set(ending))
    active, chosen = set(), []  # chosen: [start, end, interval index or None]
    for start, end in zip(times[:-1], times[1:]):  # a sweep: polyphony stays small
        active.difference_update(ending.get(start, ()))
        active.update(starting.get(start, ()))
        if not active:
            pick = None
        elif overlap == "highest":
            pick = max(active, key=lambda i: (intervals[i][2], intervals[i][0]))
        else:
            pick = max(active, key=lambda i: (intervals[i][0], intervals[i][2]))
        if chosen and chosen[-1][2] == pick:
            chosen[-1][1] = end
        else:
            chosen.append([start, end, pick])
    return [Note(None if pick is None else float(intervals[pick][2]), end - start)
            for start, end, pick in chosen]


def read_midi(path, track: int | None = None, channel: int | None = None, merge: bool = False,
              overlap: str = "highest") -> list:
    """A MIDI file's melody as Notes (with rests), tempo changes honoured.

    Which notes: `track` / `channel` pick them; by default the first track with notes and, in
    it, the channel of its first note; `merge=True` takes every track and channel. The General
    MIDI drum channel (PERCUSSION_CHANNEL) is left out unless `channel` names it or it is all
    there is. The result is monophonic: where notes overlap, `overlap="highest"` keeps the
    highest, "latest" the most recently started. Velocities are ignored (the loudness curve
    comes from notes_to_controls). Needs `mido` (pip install mido). Raises ValueError naming
    the file when it is missing, not MIDI, or has no notes (in the chosen track/channel)."""
    try:
        import mido
    except ImportError:
        raise ImportError("reading MIDI files needs mido: pip install mido") from None
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        midi = mido.MidiFile(str(path))
    except Exception as err:  # mido raises OSError, EOFError, ValueError, KeyError ...
        raise ValueError(f"{path}: not a readable MIDI file ({type(err).__name__}: {err})"
                         ) from None
    if not 0 < midi.ticks_per_beat < 0x8000:
        raise ValueError(f"{path}: SMPTE time division is not supported (only ticks per beat)")
    shared_tempo = _tempo_map(midi.tracks) if midi.type != 2 else None
    intervals_by_part = {}  # (track, channel) -> [(start s, end s, pitch)]
    for index, midi_track in enumerate(midi.tracks):
        notes = _track_notes(midi_track)
        if not notes:
            continue
        tempo = shared_tempo or _tempo_map([midi_track])  # type 2: tracks keep their own
        ticks = np.array([[n[0], n[1]] for n in notes], dtype=np.float64)
        seconds = _ticks_to_seconds(ticks.ravel(), tempo, midi.ticks_per_beat).reshape(-1, 2)
        for (start, end), (_, _, pitch, chan) in zip(seconds, notes):
            intervals_by_part.setdefault((index, chan), []).append((start, end, pitch))
    parts = [p for p in intervals_by_part
             if (track is None or p[0] == track) and (channel is None or p[1] == channel)]
    if channel is None and any(p[1] != PERCUSSION_CHANNEL for p in parts):
        parts = [p for p in parts if p[1] != PERCUSSION_CHANNEL]  # drums have no melody
    if not parts:
        which = (f" in track {track}" if track is not None else "") + (
            f" on channel {channel}" if channel is not None else "")
        raise ValueError(f"{path}: the MIDI file has no notes{which}")
    if not merge:
        first_track = min(p[0] for p in parts)
        parts = [min((p for p in parts if p[0] == first_track),
                     key=lambda p: min(s for s, _, _ in intervals_by_part[p]))]
    intervals = sorted(i for p in parts for i in intervals_by_part[p])
    notes = _monophonic(intervals, overlap)
    while notes and notes[0].is_rest:
        notes.pop(0)
    return notes


# ----------------------------------------------------------------------------- note shapes
def _frame_range(times: np.ndarray, start: float, end: float) -> slice:
    """Frames with start <= time < end."""
    return slice(int(np.searchsorted(times, start - 1e-9)),
                 int(np.searchsorted(times, end - 1e-9)))


def notes_to_controls(notes, loudness_db: float = MELODY_LOUDNESS_DB,
                      attack: float = ATTACK_SECONDS, release: float = RELEASE_SECONDS,
                      legato: bool = True, portamento: float = PORTAMENTO_SECONDS,
                      vibrato_rate: float = 0.0, vibrato_depth_cents: float = 0.0,
                      vibrato_delay: float = VIBRATO_DELAY_SECONDS,
                      vibrato_fade: float = VIBRATO_FADE_SECONDS, pitch_shift: float = 0.0,
                      frame_rate: float = FRAME_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Notes -> (f0 [T] Hz, loudness [T] dB), float32 at `frame_rate` (frame t at t / frame_rate
    seconds), T covering every note plus the last note's release (the last frame is at or past
    its end, so the melody ends at the floor).

    notes: parse_note_list text, Notes, or dicts {pitch_midi, duration}.
    loudness: each phrase rises from LOUDNESS_FLOOR_DB to `loudness_db` over `attack` s and,
    after its last note ends, falls back to the floor over `release` s, both linear in dB (a
    phrase: one note, or with `legato` a run of notes with no rest between). Where a release
    and the next attack overlap the louder wins, so nothing jumps. `loudness_db`: for a trained
    model take a level it has heard, e.g. training_ranges(batch)["loudness_median_db"].
    f0: each note's pitch (+ `pitch_shift` semitones), held through rests and the release; within
    a legato phrase it glides to the next note over `portamento` s (linear in log frequency);
    without legato every note is re-attacked and pitch steps.
    vibrato: `vibrato_depth_cents` peak deviation (+/-) at `vibrato_rate` Hz, starting
    `vibrato_delay` s after each note's onset and fading in over `vibrato_fade` s."""
    notes = _as_notes(notes)
    for name, value in dict(attack=attack, release=release, portamento=portamento,
                            vibrato_rate=vibrato_rate, vibrato_depth_cents=vibrato_depth_cents,
                            vibrato_delay=vibrato_delay, vibrato_fade=vibrato_fade).items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    if not (math.isfinite(loudness_db) and loudness_db > LOUDNESS_FLOOR_DB):
        raise ValueError(f"loudness_db must be above the floor ({LOUDNESS_FLOOR_DB:g} dB), "
                         f"got {loudness_db}")
    starts = np.concatenate([[0.0], np.cumsum([n.duration for n in notes])])
    pitched = [(starts[i], starts[i + 1], n.pitch_midi + pitch_shift)
               for i, n in enumerate(notes) if not n.is_rest]
    if not pitched:
        raise ValueError("the melody has no pitched note (only rests)")
    tied = [legato and i > 0 and pitched[i - 1][1] == pitched[i][0] for i in range(len(pitched))]
    end_time = max(starts[-1], pitched[-1][1] + release)
    n_frames = math.ceil(end_time * frame_rate - 1e-6) + 1  # the last frame ends the release
    times = np.arange(n_frames) / frame_rate

    # f0 in MIDI: the latest note's pitch, glides into tied notes, vibrato per note
    note_starts = np.array([p[0] for p in pitched])
    current = np.clip(np.searchsorted(note_starts, times + 1e-9, side="right") - 1, 0, None)
    midi = np.array([p[2] for p in pitched])[current]
    for i, (start, end, pitch) in enumerate(pitched):
        if tied[i] and portamento > 0:
            glide = min(portamento, end - start)
            frames = _frame_range(times, start, start + glide)
            progress = (times[frames] - start) / glide
            midi[frames] = pitched[i - 1][2] + (pitch - pitched[i - 1][2]) * progress
    if vibrato_rate > 0 and vibrato_depth_cents > 0:
        since = times - note_starts[current] - vibrato_delay
        ramp = np.clip(since / max(vibrato_fade, 1e-9), 0.0, 1.0)
        midi = midi + (vibrato_depth_cents / 100.0) * ramp * np.sin(
            2 * np.pi * vibrato_rate * np.maximum(since, 0.0))

    # loudness in dB: per phrase, attack -> hold -> release; the louder phrase wins
    floor, span = LOUDNESS_FLOOR_DB, loudness_db - LOUDNESS_FLOOR_DB
    loudness = np.full(n_frames, floor)
    phrases = []
    for i, (start, end, _) in enumerate(pitched):
        if tied[i]:
            phrases[-1][1] = end
        else:
            phrases.append([start, end])
    for start, end in phrases:
        frames = _frame_range(times, start, end + release + 1.0 / frame_rate)
        t = times[frames] - start
        rising = floor + span * np.clip(t / max(attack, 1e-9), 0.0, 1.0)
        reached = floor + span * min((end - start) / max(attack, 1e-9), 1.0)
        falling = reached - span * (t - (end - start)) / max(release, 1e-9)
        envelope = np.where(t <= end - start, rising, np.maximum(falling, floor))
        loudness[frames] = np.maximum(loudness[frames], envelope)
    return midi_to_hz(midi).astype(np.float32), loudness.astype(np.float32)


# ----------------------------------------------------------------------------- recordings
def _voiced_frames(source) -> tuple[np.ndarray, np.ndarray]:
    """(f0 [K] Hz, loudness [K] dB) of the valid, voiced frames of a collate/load_multiple_files
    batch, one extract_features dict, or a list of them."""
    def numpy(x):
        return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)

    if isinstance(source, dict) and "lengths" in source:
        parts = []
        for i, n in enumerate(numpy(source["lengths"])):
            n = int(n)
            f0 = numpy(source["f0"])[i, :n].reshape(n)
            loudness = numpy(source["loudness"])[i, :n].reshape(n)
            voiced = numpy(source["voiced"])[i, :n].astype(bool) if "voiced" in source else (
                np.ones(n, bool))
            parts.append((f0[voiced], loudness[voiced]))
    else:
        items = [source] if isinstance(source, dict) else list(source)
        parts = []
        for features in items:
            f0 = numpy(features["f0"]).reshape(-1)
            loudness = numpy(features["loudness"]).reshape(-1)
            voiced = (numpy(features["voiced"]).reshape(-1).astype(bool) if "voiced" in features
                      else np.ones(len(f0), bool))
            parts.append((f0[voiced], loudness[voiced]))
    f0 = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
    loudness = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
    keep = np.isfinite(f0) & (f0 > 0) & np.isfinite(loudness)
    if not keep.any():
        raise ValueError("no voiced frames to take pitch and loudness ranges from")
    return f0[keep].astype(np.float64), loudness[keep].astype(np.float64)


def training_ranges(batch, percentiles: tuple = (5.0, 95.0)) -> dict:
    """Pitch and loudness ranges over the valid, voiced frames of a training batch (collate /
    load_multiple_files; also one extract_features dict or a list of them):
    {f0_median_hz, f0_low_hz, f0_high_hz, loudness_low_db, loudness_median_db,
    loudness_high_db, percentiles, n_frames}; low/high are the given percentiles."""
    f0, loudness = _voiced_frames(batch)
    low, high = percentiles
    return {"f0_median_hz": float(np.median(f0)),
            "f0_low_hz": float(np.percentile(f0, low)),
            "f0_high_hz": float(np.percentile(f0, high)),
            "loudness_low_db": float(np.percentile(loudness, low)),
            "loudness_median_db": float(np.median(loudness)),
            "loudness_high_db": float(np.percentile(loudness, high)),
            "percentiles": (float(low), float(high)), "n_frames": int(len(f0))}


def recording_to_controls(recording, training=None, pitch_shift: float = 0.0,
                          loudness_shift: float = 0.0, octave_shift="auto",
                          match_loudness: bool = True, cache_dir=None) -> dict:
    """Another recording's f0 and loudness, moved into the model's training range.

    recording: an audio path (features via extract_features, `cache_dir` as there) or an
    extract_features dict. training: a training batch, a training_ranges dict (at least
    f0_median_hz, loudness_low_db, loudness_high_db), or None (no automatic moves). Steps,
    measured on the recording's voiced frames:
    1. octave_shift="auto": whole octaves k (round(log2(training median / recording median)))
       so the median f0 lands closest to the training median; an int forces k, 0 disables.
    2. match_loudness: loudness mapped linearly so the recording's loudness percentiles
       (training's `percentiles`, 5th..95th) land on the training ones; a recording with under
       1 dB of range is only shifted (midpoints matched); the scale is kept within 0.25..4.
    3. pitch_shift semitones and loudness_shift dB on top. Frames at the floor stay there;
       loudness is clipped below at LOUDNESS_FLOOR_DB.
    Returns {f0 [T] Hz, loudness [T] dB (float32, for render_melody), original_f0,
    original_loudness, voiced [T], octave_shift, pitch_shift, loudness_shift, loudness_scale,
    loudness_offset (loudness = original * scale + offset + shift), path}. Only pitch and
    loudness transfer: the timbre (MFCCs) comes from the model's side."""
    features = recording if isinstance(recording, dict) else extract_features(recording, cache_dir)
    original_f0 = np.asarray(features["f0"], dtype=np.float64).reshape(-1)
    original_loudness = np.asarray(features["loudness"], dtype=np.float64).reshape(-1)
    voiced = (np.asarray(features["voiced"], bool).reshape(-1) if "voiced" in features
              else np.ones(len(original_f0), bool))
    stats = None
    if training is not None:
        stats = training if isinstance(training, dict) and "f0_median_hz" in training else (
            training_ranges(training))
    own = training_ranges({"f0": original_f0, "loudness": original_loudness, "voiced": voiced},
                          (stats or {}).get("percentiles", (5.0, 95.0)))
    if isinstance(octave_shift, str):
        if octave_shift != "auto":
            raise ValueError(f"octave_shift must be 'auto' or a whole number, got {octave_shift!r}")
        octave_shift = 0 if stats is None else int(
            math.floor(math.log2(stats["f0_median_hz"] / own["f0_median_hz"]) + 0.5))
    elif int(octave_shift) != octave_shift:
        raise ValueError(f"octave_shift must be 'auto' or a whole number, got {octave_shift!r}")
    octave_shift = int(octave_shift)
    f0 = original_f0 * 2.0 ** (octave_shift + pitch_shift / 12.0)

    scale, offset = 1.0, 0.0
    if stats is not None and match_loudness:
        own_range = own["loudness_high_db"] - own["loudness_low_db"]
        train_range = stats["loudness_high_db"] - stats["loudness_low_db"]
        if own_range >= 1.0:
            scale = float(np.clip(train_range / own_range, 0.25, 4.0))
        own_mid = 0.5 * (own["loudness_high_db"] + own["loudness_low_db"])
        train_mid = 0.5 * (stats["loudness_high_db"] + stats["loudness_low_db"])
        offset = train_mid - own_mid * scale
    loudness = original_loudness * scale + offset + loudness_shift
    loudness = np.where(original_loudness <= LOUDNESS_FLOOR_DB, LOUDNESS_FLOOR_DB,
                        np.maximum(loudness, LOUDNESS_FLOOR_DB))
    return {"f0": f0.astype(np.float32), "loudness": loudness.astype(np.float32),
            "original_f0": original_f0.astype(np.float32),
            "original_loudness": original_loudness.astype(np.float32), "voiced": voiced,
            "octave_shift": octave_shift, "pitch_shift": float(pitch_shift),
            "loudness_shift": float(loudness_shift), "loudness_scale": scale,
            "loudness_offset": offset, "training_ranges": stats,
            "path": str(features.get("path", "") if isinstance(recording, dict) else recording)}


# ----------------------------------------------------------------------------- rendering
def timbre_mfcc(batch: dict, index: int | None = None) -> np.ndarray:
    """The timbre to render with: [N_MFCC] mean MFCCs of file `index` (as mean_note), or with
    index None the mean over all files' means ("the whole model", each file weighted equally)."""
    if index is not None:
        return mean_note(batch, index)[2]
    return np.mean([mean_note(batch, i)[2] for i in range(len(batch["lengths"]))], axis=0)


def render_melody(model, f0, loudness, mfcc, seed: int = 0,
                  max_seconds: float = MELODY_MAX_SECONDS) -> np.ndarray:
    """Audio of a melody: f0 [T] Hz, loudness [T] dB, mfcc [N_MFCC] (held) or [T, N_MFCC] ->
    float32 [T * hop_length], peak <= 1 (scaled to 0.99 if it would clip), 10 ms fades at both
    ends.

    Runs model.get_controls + model.synthesize in eval mode (training mode restored), with the
    noise seeded by `seed` without touching the global RNG. Melodies longer than `max_seconds`
    are refused (ValueError): the synthesizer's memory grows with length x harmonics, about
    20 MB per second; render long pieces in parts. The model has no reverb: it is
    harmonics + filtered noise only (magenta's learned reverb module is not part of it), so a
    melody sounds as dry as the model's resynthesis of its training files."""
    core = unwrap_model(model)
    device = next(core.parameters()).device
    f0 = np.asarray(f0.cpu() if isinstance(f0, torch.Tensor) else f0, np.float32).reshape(-1)
    loudness = np.asarray(loudness.cpu() if isinstance(loudness, torch.Tensor) else loudness,
                          np.float32).reshape(-1)
    mfcc = np.asarray(mfcc.cpu() if isinstance(mfcc, torch.Tensor) else mfcc, np.float32)
    n_frames = len(f0)
    if n_frames == 0 or len(loudness) != n_frames:
        raise ValueError(f"f0 [{n_frames}] and loudness [{len(loudness)}] need the same, "
                         "non-zero number of frames")
    if not (np.all(np.isfinite(f0)) and np.all(f0 > 0) and np.all(np.isfinite(loudness))):
        raise ValueError("f0 must be finite and > 0 Hz, loudness finite")
    seconds = n_frames * core.hop_length / core.sample_rate
    if seconds > max_seconds:
        raise ValueError(f"the melody lasts {seconds:.1f} s, more than max_seconds="
                         f"{max_seconds:g}: render it in shorter parts")
    n_mfcc = core.config.get("n_mfcc", N_MFCC)
    if mfcc.shape == (n_mfcc,):
        mfcc = np.broadcast_to(mfcc, (n_frames, n_mfcc))
    elif mfcc.shape != (n_frames, n_mfcc):
        raise ValueError(f"mfcc must be [{n_mfcc}] or [{n_frames}, {n_mfcc}], got {mfcc.shape}")
    f0_t = torch.from_numpy(f0).to(device).reshape(1, n_frames, 1)
    loudness_t = torch.from_numpy(loudness).to(device).reshape(1, n_frames, 1)
    mfcc_t = torch.from_numpy(np.ascontiguousarray(mfcc)).to(device)[None]
    with evaluating(core):
        generator = torch.Generator(device=device).manual_seed(seed)
        audio = core.synthesize(f0_t, core.get_controls(f0_t, loudness_t, mfcc_t),
                                generator=generator)
    return finish_render(audio[0].float().cpu().numpy(), core.sample_rate)


def render_notes(model, notes, mfcc, seed: int = 0, **shape) -> np.ndarray:
    """parse/notes -> notes_to_controls(**shape) -> render_melody: float32 audio [T * hop]."""
    f0, loudness = notes_to_controls(notes, **shape)
    return render_melody(model, f0, loudness, mfcc, seed)


def plot_transfer(before: dict, after: dict | None = None, title: str = ""):
    """f0 (log scale) and loudness over time, before and after adjustment: dicts with f0 [T] and
    loudness [T]. Pass a recording_to_controls result alone to compare it with its original;
    its training ranges (if any) are drawn as dotted lines."""
    import matplotlib.pyplot as plt

    if after is None:
        after = before
        before = {"f0": before["original_f0"], "loudness": before["original_loudness"]}
    fig, (f0_ax, loud_ax) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    for label, controls, style in (("before", before, "--"), ("after", after, "-")):
        times = np.arange(len(controls["f0"])) / FRAME_RATE
        f0_ax.plot(times, controls["f0"], style, label=label)
        loud_ax.plot(times, controls["loudness"], style, label=label)
    stats = after.get("training_ranges")
    if stats:
        f0_ax.axhline(stats["f0_median_hz"], color="gray", ls=":", label="training median")
        for key in ("loudness_low_db", "loudness_high_db"):
            loud_ax.axhline(stats[key], color="gray", ls=":")
    f0_ax.set_yscale("log")
    f0_ax.set_ylabel("f0 (Hz)")
    f0_ax.legend(loc="upper right")
    loud_ax.set_ylabel("loudness (dB A)")
    loud_ax.set_xlabel("time (s)")
    if not title and "octave_shift" in after:
        mapped = (f"mapped onto the training range (x{after['loudness_scale']:.2f})"
                  if stats else "as recorded")
        title = (f"octave shift {after['octave_shift']:+d}, pitch {after['pitch_shift']:+g} "
                 f"semitones; loudness {mapped}, {after['loudness_shift']:+g} dB")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- stages as data
_TRUE_WORDS = {"1", "true", "yes", "y", "on", "x"}
_FALSE_WORDS = {"0", "false", "no", "n", "off", ""}
_ALL_WORDS = {"", "all", "none", "*"}


def stages_from_table(rows, max_duration: float = MAX_AUDIO_SECONDS) -> list:
    """Edited form values -> a validated stage list like GROWTH_STAGES.

    rows: dicts {name, n_harmonics, noise, duration} or sequences in that order (strings are
    fine, as a form gives them): n_harmonics a count >= 0, or ''/'all'/None for all; noise a
    bool or on/off, yes/no, true/false, 1/0 (empty or None = off); duration seconds in
    (0, max_duration].
    A missing name becomes 'stage <n>'. Raises ValueError naming the stage and what is wrong.
    Render with grow_timbre(model, ..., stages=stages_from_table(rows)): no retraining."""
    if hasattr(rows, "to_dict"):  # a pandas DataFrame
        rows = rows.to_dict("records")
    stages = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            row = dict(zip(("name", "n_harmonics", "noise", "duration"), row))
        name = str(row.get("name") or "").strip() or f"stage {i}"
        where = f"stage {name!r} (row {i})"
        missing = {"n_harmonics", "noise", "duration"} - set(row)
        if missing:
            raise ValueError(f"{where} lacks {sorted(missing)}")
        count = row["n_harmonics"]
        if count is None or (isinstance(count, str) and count.strip().lower() in _ALL_WORDS) or (
                isinstance(count, float) and math.isnan(count)):  # a blank DataFrame cell
            count = None
        else:
            try:
                value = float(count)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: n_harmonics must be a count >= 0 or 'all', "
                                 f"got {count!r}") from None
            if isinstance(count, bool) or not (math.isfinite(value) and value >= 0
                                               and value == int(value)):
                raise ValueError(f"{where}: n_harmonics must be a count >= 0 or 'all', "
                                 f"got {count!r}")
            count = int(value)
        noise = False if row["noise"] is None else row["noise"]
        if isinstance(noise, str):
            word = noise.strip().lower()
            if word not in _TRUE_WORDS | _FALSE_WORDS:
                raise ValueError(f"{where}: noise must be on or off, got {noise!r}")
            noise = word in _TRUE_WORDS
        elif isinstance(noise, (bool, np.bool_)) or noise in (0, 1):
            noise = bool(noise)
        else:
            raise ValueError(f"{where}: noise must be on or off, got {noise!r}")
        try:
            duration = float(row["duration"])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: duration must be seconds, got {row['duration']!r}"
                             ) from None
        if not (math.isfinite(duration) and 0 < duration <= max_duration):
            raise ValueError(f"{where}: duration must be > 0 and <= {max_duration:g} s, "
                             f"got {row['duration']!r}")
        stages.append({"name": name, "n_harmonics": count, "noise": noise, "duration": duration})
    return validate_stages(stages)


def stages_to_table(stages=GROWTH_STAGES) -> list:
    """A stage list as form rows (n_harmonics None -> 'all'), the inverse of stages_from_table."""
    return [{"name": s.get("name", f"stage {i}"),
             "n_harmonics": "all" if s["n_harmonics"] is None else int(s["n_harmonics"]),
             "noise": bool(s["noise"]), "duration": float(s["duration"])}
            for i, s in enumerate(validate_stages(stages), start=1)]


@torch.no_grad()
def stage_controls(model, f0_mean: float, loudness_mean: float, mfcc_mean, stages) -> list:
    """What sounds in each stage of grow_timbre's steady note: one dict per stage with
    name, harmonic_frequencies [H] Hz, harmonic_amplitudes [H] (amplitude x distribution after
    the stage's harmonic mask, averaged over the stage's own frames), noise_frequencies [K] Hz
    and noise_response [K] (|FFT| of the noise FIR that sounds; zeros with noise off),
    K = N_NOISE_BANDS for the default model."""
    stages = validate_stages(stages)
    with evaluating(model) as core:
        sample_rate, hop = core.sample_rate, core.hop_length
        n_frames = -(-int(round(sum(s["duration"] for s in stages) * sample_rate)) // hop)
        controls = core.get_controls(*steady_note(core, f0_mean, loudness_mean, mfcc_mean,
                                                  n_frames))
    harmonics = (controls["amplitude"] * controls["harmonic_distribution"])[0].cpu().numpy()
    noise = controls["noise_magnitudes"][0].cpu().numpy()
    weights = stage_weights(stages, n_frames, hop / sample_rate)
    result = []
    for i, stage in enumerate(stages):
        own = weights[i] >= 0.5
        if not own.any():  # a stage shorter than the crossfade: its loudest frames
            own = weights[i] == weights[i].max()
        mask = harmonic_mask(stage, core.n_harmonics)
        magnitudes = noise[own].mean(0) * float(stage["noise"])
        impulse = noise_impulse_responses(torch.from_numpy(magnitudes)[None, None])[0, 0]
        response = torch.fft.rfft(impulse).abs().numpy()
        result.append({
            "name": stage.get("name", f"stage {i + 1}"),
            "harmonic_frequencies": float(f0_mean) * np.arange(1, core.n_harmonics + 1),
            "harmonic_amplitudes": harmonics[own].mean(0) * mask,
            "noise_frequencies": np.fft.rfftfreq(len(impulse), 1.0 / sample_rate),
            "noise_response": response,
        })
    return result


def plot_stage_controls(model, f0_mean: float, loudness_mean: float, mfcc_mean, stages):
    """One column per stage: top, bars of the harmonic amplitudes that sound in it (after its
    harmonic mask); bottom, the magnitude response of the noise filter that sounds in it (flat
    zero with noise off). Axes are shared along each row, so the growth reads left to right.
    Returns the figure (2 x len(stages) axes). The model has no reverb stage to show: it is
    harmonics + filtered noise only."""
    import matplotlib.pyplot as plt

    per_stage = stage_controls(model, f0_mean, loudness_mean, mfcc_mean, stages)
    n = len(per_stage)
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n + 0.6, 4.8), sharey="row", squeeze=False)
    for column, (stage, info) in enumerate(zip(validate_stages(stages), per_stage)):
        harmonic_ax, noise_ax = axes[0, column], axes[1, column]
        amplitudes = info["harmonic_amplitudes"]
        harmonic_ax.bar(np.arange(1, len(amplitudes) + 1), amplitudes, width=0.8)
        count = stage["n_harmonics"]
        count = "all harmonics" if count is None else f"{count} harmonic{'s' * (count != 1)}"
        harmonic_ax.set_title(f"{info['name']}\n{count}, noise "
                              f"{'on' if stage['noise'] else 'off'}", fontsize=8)
        harmonic_ax.set_xlabel("harmonic", fontsize=8)
        noise_ax.plot(info["noise_frequencies"] / 1000, info["noise_response"])
        noise_ax.set_xlabel("frequency (kHz)", fontsize=8)
        if not stage["noise"]:
            noise_ax.text(0.5, 0.5, "noise off", transform=noise_ax.transAxes, ha="center",
                          va="center", fontsize=8, color="gray")
        for ax in (harmonic_ax, noise_ax):
            ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("harmonic amplitude", fontsize=8)
    axes[1, 0].set_ylabel("noise filter |H|", fontsize=8)
    fig.suptitle(f"what sounds in each stage ({float(f0_mean):.0f} Hz, "
                 f"{float(loudness_mean):.0f} dB)", fontsize=9)
    fig.tight_layout()
    return fig
