"""Plots for the notebooks: features, training loss, growth, stage controls, melodies and the
runs' comparison. matplotlib and librosa are imported inside each function, so importing this
stays light."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import FRAME_RATE, HOP_LENGTH, SAMPLE_RATE
from .growth import stage_controls, stages_from_table
from .history import as_history, epochs_at

NOISE_AUDIBLE_DB = 1.0  # below this, the noise stage is said to be barely audible


def plot_features(features: dict, title: str = ""):
    """f0, loudness and spectrogram of one file's features (extract_features' dict)."""
    import librosa
    import matplotlib.pyplot as plt

    times = np.arange(len(features["f0"])) * HOP_LENGTH / SAMPLE_RATE
    fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True, layout="constrained")
    axes[0].plot(times, features["f0"], label="f0 (filled)")
    voiced_f0 = np.where(features["voiced"], features["f0"], np.nan)
    axes[0].plot(times, voiced_f0, lw=3, alpha=0.6, label="voiced")
    axes[0].set_ylabel("f0 (Hz)")
    axes[0].legend(loc="upper right")
    axes[1].plot(times, features["loudness"])
    axes[1].set_ylabel("loudness (dB A)")
    spectrum = librosa.amplitude_to_db(np.abs(librosa.stft(features["audio"], n_fft=1024,
                                                           hop_length=HOP_LENGTH)), ref=np.max)
    image = axes[2].imshow(spectrum, origin="lower", aspect="auto", cmap="magma", vmin=-80,
                           extent=[0, times[-1] if len(times) else 1, 0, SAMPLE_RATE / 2])
    fig.colorbar(image, ax=axes, label="dB re. peak", pad=0.01, shrink=0.33, anchor=(0, 0))
    axes[2].set_ylabel("frequency (Hz)")
    axes[2].set_xlabel("time (s)")
    fig.suptitle(title or Path(features.get("path", "")).name)
    return fig


def plot_loss(history, title: str = "training loss"):
    """The total loss and each of its terms, one point a step, against epoch (a train()
    History, or an older history dict: a step is 1 / steps_per_epoch of an epoch; across a
    change of files, as history.epochs_at counts them)."""
    import matplotlib.pyplot as plt

    history = as_history(history)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    curves = {"total": history.loss, **history.terms}
    epochs = [epochs_at(history, step) for step in range(1, len(history.loss) + 1)]
    for label, curve in curves.items():
        ax.plot(epochs, curve, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_growth(audio: np.ndarray, stages, title: str = "grown timbre"):
    """Waveform and spectrogram (with its dB colour bar) of a growth render; stage boundaries
    marked, stage names above the waveform, clear of it."""
    import librosa
    import matplotlib.pyplot as plt

    times = np.arange(len(audio)) / SAMPLE_RATE
    fig, axes = plt.subplots(2, 1, figsize=(11, 6.4), sharex=True, layout="constrained")
    axes[0].plot(times, audio, lw=0.4)
    axes[0].set_ylabel("amplitude")
    spectrum = librosa.amplitude_to_db(np.abs(librosa.stft(audio, n_fft=2048,
                                                           hop_length=HOP_LENGTH)), ref=np.max)
    image = axes[1].imshow(spectrum, origin="lower", aspect="auto", cmap="magma", vmin=-80,
                           extent=[0, times[-1], 0, SAMPLE_RATE / 2])
    fig.colorbar(image, ax=axes, label="dB re. peak", pad=0.01, shrink=0.5, anchor=(0, 0))
    axes[1].set_ylim(0, 8000)
    axes[1].set_ylabel("frequency (Hz)")
    axes[1].set_xlabel("time (s)")
    start = 0.0
    for i, stage in enumerate(stages_from_table(stages)):
        for ax in axes:
            ax.axvline(start, color="w" if ax is axes[1] else "k", lw=0.8, ls="--")
        # above the axes, alternating two rows so that short stages' names do not collide
        axes[0].text(start + stage.duration / 2, 1.02 + 0.1 * (i % 2), stage.name,
                     transform=axes[0].get_xaxis_transform(), ha="center", va="bottom",
                     fontsize=8, clip_on=False)
        start += stage.duration
    fig.suptitle(title)
    return fig


def plot_stage_controls(note, stages):
    """One column per stage of a held note (growth.held_note): top, bars of the harmonic
    amplitudes that sound in it (after its harmonic mask); bottom, the magnitude response of
    the noise filter that sounds in it (flat zero with noise off), and how much the noise adds
    to the note's level, said plainly when it is under 1 dB. Axes are shared along each row,
    so the growth reads left to right. Returns the figure (2 x len(stages) axes)."""
    import matplotlib.pyplot as plt

    stages = stages_from_table(stages)
    per_stage = stage_controls(note, stages)
    noise_db = note.noise_adds_db()
    n = len(per_stage)
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n + 0.6, 5.0), sharey="row", squeeze=False)
    for column, (stage, info) in enumerate(zip(stages, per_stage)):
        harmonic_ax, noise_ax = axes[0, column], axes[1, column]
        amplitudes = info["harmonic_amplitudes"]
        harmonic_ax.bar(np.arange(1, len(amplitudes) + 1), amplitudes, width=0.8)
        count = stage.n_harmonics
        count = "all harmonics" if count is None else f"{count} harmonic{'s' * (count != 1)}"
        harmonic_ax.set_title(f"{info['name']}\n{count}, noise "
                              f"{'on' if stage.noise else 'off'}", fontsize=8)
        harmonic_ax.set_xlabel("harmonic", fontsize=8)
        noise_ax.plot(info["noise_frequencies"] / 1000, info["noise_response"])
        noise_ax.set_xlabel("frequency (kHz)", fontsize=8)
        if stage.noise:
            said = f"noise adds {noise_db:.1f} dB"
            if noise_db < NOISE_AUDIBLE_DB:
                said += "\n(under 1 dB: barely\naudible on this note)"
        else:
            said = "noise off"
        noise_ax.text(0.5, 0.95, said, transform=noise_ax.transAxes, ha="center", va="top",
                      fontsize=8, color="black" if stage.noise else "gray",
                      bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0})
        for ax in (harmonic_ax, noise_ax):
            ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("harmonic amplitude", fontsize=8)
    axes[1, 0].set_ylabel("noise filter |H|", fontsize=8)
    fig.suptitle(f"what sounds in each stage ({note.f0:.0f} Hz, held over {note.frames} "
                 f"sustained frames of {Path(note.source).name or 'the note'})", fontsize=9)
    fig.tight_layout()
    return fig


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


def plot_loss_comparison(records: dict):
    """The loss curves of several runs (one point a step) against epoch and against
    wall-clock time."""
    import matplotlib.pyplot as plt

    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(12, 4))
    for label, record in records.items():
        curve = np.asarray(record["loss_curve"])
        epochs = np.arange(1, len(curve) + 1) / record.get("steps_per_epoch", 1)
        by_epoch.plot(epochs, curve, label=label)
        seconds = np.cumsum(record["step_seconds"]) if record["step_seconds"] else []
        timed = min(len(seconds), len(curve))  # an edited record may time more than it kept
        by_time.plot(seconds[:timed], curve[:timed], label=label)
    for ax, xlabel in ((by_epoch, "epoch"), (by_time, "training time (s)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.legend()
    if any(record["step_seconds"] for record in records.values()):  # a log axis needs data
        by_time.set_xscale("log")
    fig.tight_layout()
    return fig


def plot_spectrogram_comparison(clips: dict, title: str = ""):
    """Spectrograms side by side, one dB scale and its colour bar: clips {label: audio [N]}."""
    import librosa
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(clips), figsize=(4 * len(clips) + 1, 3.5), sharey=True,
                             layout="constrained")
    for ax, (label, audio) in zip(np.atleast_1d(axes), clips.items()):
        spectrum = librosa.amplitude_to_db(np.abs(librosa.stft(audio, n_fft=1024,
                                                               hop_length=HOP_LENGTH)), ref=1.0)
        image = ax.imshow(spectrum, origin="lower", aspect="auto", cmap="magma", vmin=-80,
                          vmax=20, extent=[0, len(audio) / SAMPLE_RATE, 0, SAMPLE_RATE / 2])
        ax.set_ylim(0, 8000)
        ax.set_title(label)
        ax.set_xlabel("time (s)")
    np.atleast_1d(axes)[0].set_ylabel("frequency (Hz)")
    fig.colorbar(image, ax=axes, label="dB (re. full scale)", pad=0.01)
    fig.suptitle(title)
    return fig
