"""The settings every stage shares: one sample rate and one hop, so features, synthesizer,
model and loss always agree on what a frame is."""

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
