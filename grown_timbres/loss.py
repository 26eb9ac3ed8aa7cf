"""The loss: magenta's multi-scale spectral loss (plain, or with the target's spectra cached)
plus a weighted time-domain L1, padding masked out of both, always in float32. The frames'
hop_length is the loss object's (set where it is made) and reaches the masks as an argument.

    pred [B, N], target [B, N], lengths [B] valid frames -> total, {term name: scalar}
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import FFT_SIZES, HOP_LENGTH, checked_number

LOG_MAG_FLOOR = 1e-5  # magenta's safe_log
TIME_LOSS_WEIGHT = 0.1  # the seed: spectral loss + 0.1 x L1 in time


def sample_mask(lengths, n_samples: int, hop_length: int, device):
    """[B, N] float: 1 on each file's valid samples (lengths: valid frames of hop_length)."""
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


def frame_mask(lengths, n_stft_frames: int, n_fft: int, hop_length: int, device):
    """[B, 1, frames] float: STFT frames centred inside each file (frame j <= samples //
    (n_fft // 4)); lengths: valid frames of hop_length samples."""
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
    the valid frames (hop_length samples each: the training data's hop) per file, as
    `load_multiple_files` returns them: samples beyond are zeroed in both signals and STFT
    frames centred beyond are left out."""

    def __init__(self, fft_sizes=FFT_SIZES, hop_length: int = HOP_LENGTH):
        super().__init__()
        self.fft_sizes = tuple(fft_sizes)
        self.hop_length = checked_number("hop_length", hop_length, whole=True, at_least=1)

    def forward(self, pred_audio, target_audio, lengths=None):
        with torch.autocast(pred_audio.device.type, enabled=False):
            target_spectra = self.target_spectra_of(target_audio, lengths)
            pred_audio = self._masked(pred_audio, lengths)
            total = 0.0
            for n_fft, (target_mag, target_log_mag, mask) in target_spectra.items():
                pred_mag = magnitude_spectrogram(pred_audio, n_fft)
                total = total + spectral_distance(pred_mag, target_mag, target_log_mag, mask)
            return total / len(target_spectra)

    def target_spectra_of(self, target_audio, lengths) -> dict:
        """{n_fft: (magnitude, log magnitude, frame mask)} of the masked target."""
        target_audio = self._masked(target_audio, lengths)
        spectra = {}
        for n_fft in self.fft_sizes:
            magnitude = magnitude_spectrogram(target_audio, n_fft)
            spectra[n_fft] = (magnitude, torch.log(magnitude.clamp_min(LOG_MAG_FLOOR)),
                              frame_mask(lengths, magnitude.shape[-1], n_fft, self.hop_length,
                                         magnitude.device))
        return spectra

    def _masked(self, audio, lengths):
        audio = audio.float()
        if lengths is None:
            return audio
        return audio * sample_mask(lengths, audio.shape[-1], self.hop_length, audio.device)


class OptimizedMultiScaleSpectralLoss(MultiScaleSpectralLoss):
    """The same loss and the same call, with the target's spectra computed once: training
    passes the same target every step, so only the prediction's STFTs are computed per step.
    precompute_target fills the cache before training; a call with another target tensor (or
    other lengths) computes that one's spectra and keeps them instead."""

    def __init__(self, fft_sizes=FFT_SIZES, hop_length: int = HOP_LENGTH):
        super().__init__(fft_sizes, hop_length)
        self.cached_for, self.cached_spectra = None, None

    @torch.no_grad()
    def precompute_target(self, target_audio, device=None, lengths=None):
        """Compute and keep the spectra of target_audio [B, N] (with `lengths`, masked) on
        `device`; later calls with this same target tensor and lengths reuse them."""
        self.cached_for = (target_audio, lengths)
        target_audio = torch.as_tensor(target_audio).to(device)
        lengths = None if lengths is None else torch.as_tensor(lengths).to(device)
        with torch.autocast(target_audio.device.type, enabled=False):
            self.cached_spectra = super().target_spectra_of(target_audio, lengths)
        return self

    def target_spectra_of(self, target_audio, lengths) -> dict:
        cached_target, cached_lengths = self.cached_for or (None, None)
        if target_audio is not cached_target or lengths is not cached_lengths:
            self.precompute_target(target_audio, target_audio.device, lengths)
        return self.cached_spectra


def time_domain_l1(pred_audio, target_audio, lengths=None,
                   hop_length: int | None = None) -> torch.Tensor:
    """Mean |pred - target| over valid samples: [B, N], [B, N] -> scalar (float32); with
    `lengths` (valid frames per file), hop_length says how many samples a frame holds."""
    difference = (pred_audio.float() - target_audio.float()).abs()
    if lengths is None:
        return difference.mean()
    if hop_length is None:
        raise ValueError("time_domain_l1: lengths in frames need the frames' hop_length")
    mask = sample_mask(lengths, difference.shape[-1], hop_length, difference.device)
    return (difference * mask).sum() / mask.sum()


def training_loss(spectral_loss: MultiScaleSpectralLoss, pred_audio, target_audio,
                  lengths=None) -> tuple[torch.Tensor, dict]:
    """The objective trained on: (total, terms), total = the sum of the named terms, each a
    float32 scalar as it enters the total: spectral (`spectral_loss`, plain or cached) and
    time_l1 (TIME_LOSS_WEIGHT x time_domain_l1, masked at `spectral_loss`'s hop_length).
    History, run records, plots and the benchmark record whatever terms this returns."""
    terms = {"spectral": spectral_loss(pred_audio, target_audio, lengths),
             "time_l1": TIME_LOSS_WEIGHT * time_domain_l1(pred_audio, target_audio, lengths,
                                                          spectral_loss.hop_length)}
    return sum(terms.values()), terms
