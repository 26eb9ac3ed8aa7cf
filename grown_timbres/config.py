"""The settings every stage shares: one sample rate and one hop, so features, synthesizer,
model and loss always agree on what a frame is; and the test hook that injects faults."""
import os

SAMPLE_RATE = 22050
HOP_LENGTH = 256  # samples per control frame
FRAME_RATE = SAMPLE_RATE / HOP_LENGTH  # control frames per second (86.13)
FFT_SIZES = (2048, 1024, 512, 256)  # multi-scale loss; hop = size / 4
LOUDNESS_FLOOR_DB = -80.0  # loudness is clipped here; the model scales it as db / 80 + 1
N_MFCC = 20


def injected_fault(name: str) -> str:
    """Test hook, never set in normal use: the value of the environment variable
    DDSP_FAULT_<name> ("" when unset). tests/test_notebook_faults.py runs a notebook with them,
    since a notebook's kernel can be reached only through its environment:
      DDSP_FAULT_NAN_EPOCH=N  the training step of epoch N diverges (train.py): its loss,
                              the weights and the optimizer's moments turn NaN;
      DDSP_FAULT_DISK_FULL=1  every checkpoint write fails as on a full disk (checkpoints.py)."""
    return os.environ.get(f"DDSP_FAULT_{name}", "")
