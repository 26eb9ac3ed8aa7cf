"""The settings every stage shares: one sample rate and one hop, so features, synthesizer,
model and loss always agree on what a frame is."""

SAMPLE_RATE = 22050
HOP_LENGTH = 256  # samples per control frame
FRAME_RATE = SAMPLE_RATE / HOP_LENGTH  # control frames per second (86.13)
FFT_SIZES = (2048, 1024, 512, 256)  # multi-scale loss; hop = size / 4
LOUDNESS_FLOOR_DB = -80.0  # loudness is clipped here; the model scales it as db / 80 + 1
N_MFCC = 20
