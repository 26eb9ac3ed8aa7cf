"""The settings every stage shares: one sample rate and one hop, so features, synthesizer,
model and loss always agree on what a frame is; the limits; the check of a number a caller
gives (checked_number); and the test hook that injects faults."""
import math
import os

SAMPLE_RATE = 22050
HOP_LENGTH = 256  # samples per control frame
FRAME_RATE = SAMPLE_RATE / HOP_LENGTH  # control frames per second (86.13)
FFT_SIZES = (2048, 1024, 512, 256)  # multi-scale loss; hop = size / 4
LOUDNESS_FLOOR_DB = -80.0  # loudness is clipped here; the model scales it as db / 80 + 1
# Features of audio within [-1, 1] read at most +1.3 dB; renders may be pushed louder (they
# are scaled to full scale after), but beyond this the model's input (db / 80 + 1 = 1.5) is far
# from anything it learned, and a value like 1e30 is a bug, not a level.
LOUDNESS_MAX_DB = 40.0
N_MFCC = 20
MFCC_MAX_ABS = 1e4  # MFCCs of audio within [-1, 1] stay within about +/-1200 (silence: -800)
# The f0 a render takes: every MIDI note (0 to 127, what note lists and MIDI files name) with a
# semitone to spare either side, for vibrato and glides. Outside, a value is a bug, not a pitch
# (at 1e-30 Hz every harmonic sits at 0 Hz and the render is near-silence). Notes above
# Nyquist (11025 Hz) render with a warning: none of their harmonics sounds, only the noise.
RENDER_F0_MIN_HZ = 440.0 * 2 ** ((-1 - 69) / 12)  # 7.72 Hz, a semitone below MIDI 0 (C-1)
RENDER_F0_MAX_HZ = 440.0 * 2 ** ((128 - 69) / 12)  # 13290 Hz, a semitone above MIDI 127 (G9)

# Limits. Every size that a user or a file controls is checked against one of these before
# anything is allocated for it, and the refusal names the constant, the value and its source.
# The longest file accepted: magenta's training Colab asks for 10 to 20 minutes of one
# instrument, in one take or many. A longer file is cut here, with a warning naming the limit.
# Features are computed in chunks (features.py) and training takes 4 s examples in batches
# (batching.py): memory grows with a file's samples (159 MB at the limit), not pYIN's frames.
MAX_AUDIO_SECONDS = 30 * 60.0
MAX_AUDIO_CHANNELS = 8  # 7.1 surround; with the rate below, a read block is 0.12 GB at most
MAX_AUDIO_SAMPLE_RATE = 384_000
# The lowest rate of any recording: telephony's 8 kHz (its 4 kHz band still holds a note's first
# harmonics). Below it a file is no recording of an instrument, and a few bytes claim hours: 70
# KiB at 10 Hz reads as 30 minutes, which resampling makes 40 M samples for pYIN (20 minutes).
MIN_AUDIO_SAMPLE_RATE = 8_000
# one uploaded file: MAX_AUDIO_SECONDS of 48 kHz stereo 16-bit wav (345.6 MB) and a header fit
MAX_UPLOAD_BYTES = 350 * 2**20
# A microphone recording in Colab: a few notes at least; at most a minute, since the browser
# holds all of it and hands it to Python as one base64 message
MIN_RECORD_SECONDS = 1.0
MAX_RECORD_SECONDS = 60.0
MAX_FILE_NAME_BYTES = 255  # one name on ext4, APFS, NTFS; temporary names must fit it too
MAX_NOTES = 10_000  # notes and rests in one melody, from a note list or a MIDI file
MAX_NOTE_LIST_CHARS = 200_000  # a note list's text: MAX_NOTES tokens of up to 20 characters
MAX_MIDI_BYTES = 2 * 2**20  # mido keeps every event as an object, about 80 bytes per file byte
MAX_RENDER_SECONDS = 120.0  # one melody, one growth: the synthesizer holds [N, H] waves
MIN_STAGE_SECONDS = 0.05  # a growth stage spans a few (4.3) frames, so the model sees it
MAX_STAGE_SECONDS = 30.0
MAX_STAGES = 100
# A run record (JSON): 1000 epochs of 38 steps (600 examples) keep ~4 MB of loss curves
MAX_RUN_RECORD_BYTES = 64 * 2**20
MAX_CHECKPOINT_BYTES = 2**30  # the largest model allowed below, with Adam's state, is 0.4 GB

def injected_fault(name: str) -> str:
    """Test hook, never set in normal use: the value of the environment variable
    DDSP_FAULT_<name> ("" when unset). tests/test_notebook_faults.py runs a notebook with them,
    since a notebook's kernel can be reached only through its environment:
      DDSP_FAULT_NAN_EPOCH=N  training step N (epoch N while a step is an epoch) diverges
                              (train.py): its loss,
                              the weights and the optimizer's moments turn NaN;
      DDSP_FAULT_DISK_FULL=1  every checkpoint write fails as on a full disk (checkpoints.py)."""
    return os.environ.get(f"DDSP_FAULT_{name}", "")


def is_real_number(value) -> bool:
    """A real number (int, float, numpy's too) that is not True or False: bool is an int to
    Python, but a switch given where a number belongs is a mistake."""
    import numbers

    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def checked_number(name: str, value, *, whole: bool = False, at_least: float | None = None,
                   above: float | None = None):
    """`value` once it is a real number (not text, not True/False), finite, whole where
    `whole` (2.0 is 2, 2.5 is refused), at least `at_least` and above `above`: an int when
    `whole`, else a float. Else ValueError naming `name` and the value, so that a bad argument
    is refused where it enters, not deep inside torch."""
    kind = "a whole number" if whole else "a number"
    if not is_real_number(value):
        raise ValueError(f"{name} must be {kind}, not {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value}")
    if whole and value != int(value):
        raise ValueError(f"{name} must be a whole number, not {value}")
    if at_least is not None and value < at_least:
        raise ValueError(f"{name} must be at least {at_least}, not {value}")
    if above is not None and value <= above:
        raise ValueError(f"{name} must be more than {above}, not {value}")
    return int(value) if whole else float(value)
