#!/usr/bin/env python3
"""Render one chromatic octave (C4..B4) of a sampled GM instrument with fluidsynth.

Writes 12 mono, 22050 Hz, 16-bit PCM wav files (2.0 s each) to ``scale_tones/``:
01_C4.wav, 02_Cs4.wav, ..., 12_B4.wav (sorted file order = pitch order).

Requires the ``fluidsynth`` binary and the FluidR3_GM soundfont
(Debian: ``apt-get install fluidsynth fluid-soundfont-gm``), plus numpy and soundfile.

Run from the repository root:

    python scripts/render_scale_tones.py
    python scripts/render_scale_tones.py --program 56 --out-dir /tmp/trumpet

For each note a tiny type-0 MIDI file is written (stdlib only), rendered dry
(reverb and chorus off) by ``fluidsynth -F``, downmixed to mono, onset-aligned,
cut to 2.0 s with a 20 ms fade-out, and all files are scaled by ONE common
gain so the loudest peaks at 0.9 (relative loudness between notes is kept).
"""

import argparse
import os
import struct
import subprocess
import tempfile

import numpy as np
import soundfile as sf

# ---- constants --------------------------------------------------------------
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
PROGRAM = 71            # GM program, 0-based: 71 = Clarinet (56 = Trumpet, 40 = Violin)
OUT_DIR = "scale_tones"
SAMPLE_RATE = 22050
MIDI_NOTES = range(60, 72)  # C4..B4
NOTE_NAMES = ["C", "Cs", "D", "Ds", "E", "F", "Fs", "G", "Gs", "A", "As", "B"]
VELOCITY = 100
NOTE_SECONDS = 1.8      # note on -> note off
MIDI_SECONDS = 2.6      # end of track (leaves room for the release tail)
OUT_SECONDS = 2.0       # final length of every file
SYNTH_GAIN = 0.5        # fluidsynth master gain (float render, so no clipping)
ONSET_DB = -50.0        # onset = first sample above this level relative to the peak
PRE_ONSET_S = 0.002     # keep this much before the detected onset
FADE_S = 0.020          # fade-out at the end
TARGET_PEAK = 0.9       # peak of the loudest file after common normalisation

TICKS_PER_QUARTER = 480
TEMPO_US = 500_000      # 120 bpm -> 960 ticks per second


# ---- MIDI -------------------------------------------------------------------
def vlq(value):
    """MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def note_midi_bytes(note, program, velocity=VELOCITY, channel=0):
    """A type-0 standard MIDI file: program change, one note, end of track."""
    ticks_per_s = TICKS_PER_QUARTER * 1_000_000 / TEMPO_US
    off_tick = round(NOTE_SECONDS * ticks_per_s)
    end_tick = round(MIDI_SECONDS * ticks_per_s)
    track = b"".join([
        vlq(0) + b"\xff\x51\x03" + TEMPO_US.to_bytes(3, "big"),   # set tempo
        vlq(0) + bytes([0xC0 | channel, program]),                # program change
        vlq(0) + bytes([0x90 | channel, note, velocity]),         # note on
        vlq(off_tick) + bytes([0x80 | channel, note, 0]),         # note off
        vlq(end_tick - off_tick) + b"\xff\x2f\x00",               # end of track
    ])
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_QUARTER)
    return header + b"MTrk" + struct.pack(">I", len(track)) + track


# ---- rendering --------------------------------------------------------------
def render_note(note, program, soundfont, tmp):
    """Render one note with fluidsynth; return a mono float32 array."""
    mid = os.path.join(tmp, f"{note}.mid")
    wav = os.path.join(tmp, f"{note}.wav")
    with open(mid, "wb") as f:
        f.write(note_midi_bytes(note, program))
    subprocess.run(
        ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0",
         "-g", str(SYNTH_GAIN), "-r", str(SAMPLE_RATE),
         "-T", "wav", "-O", "float", "-F", wav, soundfont, mid],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    y, sr = sf.read(wav, dtype="float32", always_2d=True)
    assert sr == SAMPLE_RATE, sr
    return y.mean(axis=1)


def shape(y):
    """Trim leading silence, cut/pad to OUT_SECONDS, fade out the end."""
    n_out = int(round(OUT_SECONDS * SAMPLE_RATE))
    thresh = np.abs(y).max() * 10 ** (ONSET_DB / 20)
    onset = int(np.argmax(np.abs(y) > thresh))
    start = max(0, onset - int(PRE_ONSET_S * SAMPLE_RATE))
    y = y[start:start + n_out]
    y = np.pad(y, (0, n_out - len(y)))
    n_fade = int(FADE_S * SAMPLE_RATE)
    y[-n_fade:] *= np.linspace(1.0, 0.0, n_fade, dtype=y.dtype)
    return y


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--soundfont", default=SOUNDFONT)
    ap.add_argument("--program", type=int, default=PROGRAM,
                    help="GM program number, 0-based (default: %(default)s = Clarinet)")
    ap.add_argument("--out-dir", default=OUT_DIR)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tones = [shape(render_note(n, args.program, args.soundfont, tmp))
                 for n in MIDI_NOTES]

    gain = TARGET_PEAK / max(np.abs(y).max() for y in tones)
    os.makedirs(args.out_dir, exist_ok=True)
    for i, (note, y) in enumerate(zip(MIDI_NOTES, tones), start=1):
        y = y * gain
        name = f"{i:02d}_{NOTE_NAMES[note % 12]}{note // 12 - 1}.wav"
        sf.write(os.path.join(args.out_dir, name), y, SAMPLE_RATE, subtype="PCM_16")
        hz = 440.0 * 2 ** ((note - 69) / 12)
        rms_db = 20 * np.log10(np.sqrt(np.mean(y ** 2)) + 1e-12)
        line = f"{name:12s} nominal {hz:7.2f} Hz  peak {np.abs(y).max():.3f}  RMS {rms_db:6.1f} dB"
        f0 = median_f0(y)
        if f0 is not None:
            cents = 1200 * np.log2(f0 / hz)
            line += f"  f0 {f0:7.2f} Hz  err {cents:+6.1f} cents"
        print(line)


def median_f0(y):
    """Median voiced f0 from librosa.pyin, or None if librosa is unavailable."""
    try:
        import librosa
    except ImportError:
        return None
    f0, voiced, _ = librosa.pyin(y.astype(np.float32), fmin=65, fmax=2093, sr=SAMPLE_RATE,
                                 frame_length=2048, hop_length=256)
    f0 = f0[voiced & np.isfinite(f0)]
    return float(np.median(f0)) if len(f0) else float("nan")


if __name__ == "__main__":
    main()
