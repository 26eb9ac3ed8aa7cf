"""Signal analysis per frame: pYIN f0, A-weighted loudness and MFCCs of audio at SAMPLE_RATE,
computed FEATURE_CHUNK_SECONDS at a time so a long file's frame matrices stay small. The hop
(samples per frame) is the caller's: features.extract_features sets it for the data it makes.

    audio [N] -> f0 [T] Hz, voiced [T], loudness [T] dB, mfcc [T, N_MFCC]   (T = N // hop_length)
"""
from __future__ import annotations

import math

import numpy as np

from .audio import AudioInputError
from .config import HOP_LENGTH, LOUDNESS_FLOOR_DB, N_MFCC, SAMPLE_RATE

F0_MIN_HZ = 65.41  # C2
F0_MAX_HZ = 2093.0  # C7
PYIN_FRAME_LENGTH = 2048
VOICED_PROB_MIN = 0.1  # pYIN's voicing: bundled tones >= 0.85 when voiced, white noise <= 0.01
LOUDNESS_N_FFT = 2048
MFCC_N_FFT = 1024
MFCC_N_MELS = 64

# Features are computed FEATURE_CHUNK_SECONDS of frames at a time, each chunk from its audio
# with FEATURE_CONTEXT_SECONDS more on either side, so a long file's frame matrices stay small.
# The context covers half of every analysis window (PYIN_FRAME_LENGTH, LOUDNESS_N_FFT, a few
# frames), which makes the STFT frames exact; the rest is for pYIN's Viterbi decoding, which
# sees one segment: with context, its path through the chunk's own frames is the whole file's.
FEATURE_CHUNK_SECONDS = 30.0
FEATURE_CONTEXT_SECONDS = 2.0


def in_chunks(frame_features, audio: np.ndarray, hop_length: int,
              chunk_seconds: float | None = None) -> list:
    """Per-frame features of a signal, a chunk of frames at a time: frame_features(segment) ->
    arrays [..., 1 + len(segment) // hop_length] (librosa's centred frames, the last one at the
    segment's end), run on each chunk's audio with its context -> the same arrays
    [..., 1 + len(audio) // hop_length], each chunk's own frames end to end. Chunks are equal,
    at most `chunk_seconds` (default FEATURE_CHUNK_SECONDS); a signal no longer than one chunk
    is a single call on all of it."""
    chunk_seconds = FEATURE_CHUNK_SECONDS if chunk_seconds is None else chunk_seconds
    n_frames = 1 + len(audio) // hop_length
    frame_rate = SAMPLE_RATE / hop_length
    n_chunks = max(1, math.ceil(n_frames / (chunk_seconds * frame_rate)))
    context = math.ceil(FEATURE_CONTEXT_SECONDS * frame_rate)
    bounds = np.linspace(0, n_frames, n_chunks + 1).round().astype(int)
    parts = []
    for first, end in zip(bounds[:-1], bounds[1:]):
        start = max(first - context, 0)  # frame `start` is centred on the segment's sample 0
        segment = audio[start * hop_length: (end + context) * hop_length]
        parts.append([x[..., first - start: end - start] for x in frame_features(segment)])
    return [np.concatenate(arrays, axis=-1) for arrays in zip(*parts)]


def pyin_frames(audio: np.ndarray, hop_length: int) -> tuple[np.ndarray, np.ndarray]:
    """pYIN on a whole signal: audio [N] -> (f0 [1 + N // hop_length] Hz, NaN where unvoiced;
    voiced [same] bool: pYIN's voicing with probability >= VOICED_PROB_MIN)."""
    import librosa

    f0, voiced, voiced_prob = librosa.pyin(audio, fmin=F0_MIN_HZ, fmax=F0_MAX_HZ,
                                           sr=SAMPLE_RATE, frame_length=PYIN_FRAME_LENGTH,
                                           hop_length=hop_length)
    return f0, voiced & np.isfinite(f0) & (voiced_prob >= VOICED_PROB_MIN)


def estimate_f0(audio: np.ndarray, path="<audio>", chunk_seconds: float | None = None,
                hop_length: int = HOP_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """pYIN f0 per frame: audio [N] -> (f0 [N // hop_length] Hz, voiced [same] bool), computed
    in chunks (in_chunks).

    Unvoiced frames are filled by linear interpolation between voiced ones of the whole signal
    (held at the edges), so f0 is never NaN. Raises AudioInputError when no frame is voiced.
    """
    n_frames = len(audio) // hop_length
    def pyin(segment):
        return pyin_frames(segment, hop_length)

    f0, voiced = (x[:n_frames] for x in in_chunks(pyin, audio, hop_length, chunk_seconds))
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


def compute_loudness(audio: np.ndarray, n_frames: int | None = None,
                     chunk_seconds: float | None = None,
                     hop_length: int = HOP_LENGTH) -> np.ndarray:
    """A-weighted loudness per frame: audio [N] -> [N // hop_length] dB, floored at -80,
    computed in chunks (in_chunks).

    Power is averaged across frequency before taking dB, so a gain of g dB shifts loudness by
    exactly g dB (above the floor). A full-scale 1 kHz sine reads -3 dB.
    """
    import librosa

    weights = a_weighted_power()

    def power(segment):
        spectrum = librosa.stft(segment, n_fft=LOUDNESS_N_FFT, hop_length=hop_length,
                                window="hann", center=True, pad_mode="constant")
        return [weights @ (np.abs(spectrum) ** 2)]

    n_frames = len(audio) // hop_length if n_frames is None else n_frames
    power_per_frame = in_chunks(power, audio, hop_length, chunk_seconds)[0]
    loudness = 10.0 * np.log10(np.maximum(power_per_frame, 1e-20))
    return np.maximum(loudness, LOUDNESS_FLOOR_DB)[:n_frames].astype(np.float32)


def compute_mfcc(audio: np.ndarray, n_frames: int | None = None,
                 chunk_seconds: float | None = None,
                 hop_length: int = HOP_LENGTH) -> np.ndarray:
    """MFCC per frame: audio [N] -> [N // hop_length, N_MFCC]: librosa.feature.mfcc's, with
    the mel power spectrogram computed in chunks (in_chunks). Its dB are floored 80 dB below
    the loudest frame of the whole signal, so the conversion to dB waits for every chunk."""
    import librosa

    def mel_power(segment):
        return [librosa.feature.melspectrogram(y=segment, sr=SAMPLE_RATE, n_fft=MFCC_N_FFT,
                                               hop_length=hop_length, n_mels=MFCC_N_MELS)]

    n_frames = len(audio) // hop_length if n_frames is None else n_frames
    mel_db = librosa.power_to_db(in_chunks(mel_power, audio, hop_length, chunk_seconds)[0])
    mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=N_MFCC)
    return mfcc.T[:n_frames].astype(np.float32)
