"""Issue 13, the faults of long runs: a NaN stop puts the last snapshot back and training goes on
from there (class 1); a full disk costs no run and leaves no partial file (class 4); an
interrupt, even in the middle of a step, resumes bit for bit (class 7)."""
import errno
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from grown_timbres.audio import write_wav
from grown_timbres.files import atomic_write
from grown_timbres.checkpoints import load_checkpoint, save_checkpoint
from grown_timbres.config import N_MFCC, SAMPLE_RATE
from grown_timbres.loss import MultiScaleSpectralLoss
from grown_timbres.model import DDSPModel
from grown_timbres.plots import plot_loss, plot_loss_comparison
from grown_timbres.report import comparison_markdown
from grown_timbres.runs import make_run_record, save_run_record, step_seconds
from grown_timbres.capture import parameters_finite
from grown_timbres.resume import resume_training
from grown_timbres.step import make_optimizer
from grown_timbres.train import train
from conftest import REPO_ROOT, batch_of_rows

FRAMES = 24
SNAPSHOT = 3  # SNAPSHOT_EVERY in these tests: snapshots after a few cheap epochs
RESTORED = ("weights, optimizer, scaler and random state restored to epoch {}, the last "
            "snapshot, and the history cut back")


@pytest.fixture
def batch():
    """Two files of a 220 Hz tone, the second 4 frames shorter (padding is masked)."""
    g = torch.Generator().manual_seed(1)
    tone = 0.3 * torch.sin(2 * np.pi * 220 * torch.arange(FRAMES * 256) / SAMPLE_RATE)
    return batch_of_rows({"f0": torch.full((2, FRAMES, 1), 220.0),
                          "loudness": torch.full((2, FRAMES, 1), -20.0),
                          "mfcc": torch.randn(2, FRAMES, N_MFCC, generator=g),
                          "audio": torch.stack([tone, 0.5 * tone]),
                          "lengths": torch.tensor([FRAMES, FRAMES - 4])}, ["a.wav", "b.wav"])


@pytest.fixture(autouse=True)
def frequent_snapshots(monkeypatch):
    monkeypatch.setattr("grown_timbres.train.SNAPSHOT_EVERY", SNAPSHOT)


def fresh(seed=0):
    torch.manual_seed(seed)
    model = DDSPModel(hidden_size=16)
    return model, make_optimizer(model)


def run(batch, n_epochs, loss=None, history=None, model=None, optimizer=None, **kwargs):
    """train() from fresh(0), or the given model and optimizer -> (history, model, optimizer)."""
    if model is None:
        model, optimizer = fresh()
    history = train(model, optimizer, batch, loss or MultiScaleSpectralLoss(), n_epochs,
                    progress=False, history=history, **kwargs)
    return history, model, optimizer


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def same_tensors(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


class Faulty(MultiScaleSpectralLoss):
    """The plain loss, with `fault(loss)` applied on the listed calls (1 = the first step)."""

    def __init__(self, fault, calls):
        super().__init__()
        self.fault, self.calls, self.count = fault, set(calls), 0

    def forward(self, pred, target, lengths=None):
        self.count += 1
        loss = super().forward(pred, target, lengths)
        return self.fault(loss) if self.count in self.calls else loss


def nan_at(*calls):
    """A NaN loss once at each of these steps: the bad step runs, so backward, clipping and
    Adam turn the weights and the optimizer's moments NaN, as in a real divergence."""
    return Faulty(lambda loss: loss * float("nan"), calls)


def assert_consistent(history, n_epochs):
    """Every curve of the history has n_epochs entries; the timed epochs rise and end there."""
    assert len(history["loss"]) == n_epochs
    assert all(len(curve) == n_epochs for curve in history["terms"].values())
    assert len(history.timed_steps) == len(history.elapsed_seconds)
    assert history.timed_steps == sorted(set(history.timed_steps))
    assert (history.timed_steps or [0])[-1] == n_epochs
    assert len(step_seconds(history.timed_steps, history.elapsed_seconds)) == n_epochs


# ----------------------------------------------------------------------------- class 1: NaN stop
def test_nan_stop_puts_the_last_snapshot_back_and_cuts_the_history(batch, tmp_path):
    """A NaN at epoch 8 (snapshots every 3 epochs): weights and optimizer state are those of a
    clean 6-epoch run, bit for bit; every curve is cut back to 6 epochs; the message names both
    epochs; the checkpoint written on the stop holds the same finite state."""
    clean, clean_model, clean_optimizer = run(batch, 6)
    with pytest.warns(UserWarning) as caught:
        history, model, optimizer = run(batch, 12, nan_at(8),
                                        checkpoint_path=tmp_path / "ck.pt")
    message = "stopped at epoch 8: the loss became nan; " + RESTORED.format(6)
    assert history["status"] == message and str(caught[0].message) == message
    assert_consistent(history, 6)
    assert history["loss"] == clean["loss"] and history["terms"] == clean["terms"]
    assert same_tensors(weights(model), weights(clean_model))
    state, clean_state = optimizer.state_dict()["state"], clean_optimizer.state_dict()["state"]
    assert all(same_tensors(list(state[k].values()), list(clean_state[k].values())) for k in state)
    restored, checkpoint = load_checkpoint(tmp_path / "ck.pt")
    assert same_tensors(weights(restored), weights(clean_model))
    assert checkpoint["history"]["loss"] == clean["loss"]
    assert history["checkpoint"] == f"{tmp_path / 'ck.pt'}: written at epoch 6"


def test_a_continued_run_after_a_nan_stop_trains_on_exactly(batch, tmp_path):
    """A one-off NaN at epoch 5: continuing in the same objects, or resuming the checkpoint in
    fresh ones, trains on to 12 epochs with the very losses and weights of a run that never
    met the NaN (everything, random state included, is back at epoch 3), falling all along."""
    straight, straight_model, _ = run(batch, 12)
    loss = nan_at(5)
    with pytest.warns(UserWarning, match="stopped at epoch 5"):
        history, model, optimizer = run(batch, 12, loss,
                                        checkpoint_path=tmp_path / "ck.pt")
    assert len(history["loss"]) == 3
    continued, model, _ = run(batch, 9, loss, history, model, optimizer)
    assert continued["status"] == "finished" and continued["loss"] == straight["loss"]
    assert same_tensors(weights(model), weights(straight_model))

    model, optimizer = fresh(seed=123)  # other weights: the checkpoint must replace them
    resumed = resume_training(tmp_path / "ck.pt", model, optimizer)
    resumed, model, _ = run(batch, 9, history=resumed, model=model, optimizer=optimizer)
    assert resumed["loss"] == straight["loss"] and np.isfinite(resumed["loss"]).all()
    assert same_tensors(weights(model), weights(straight_model))
    assert resumed["loss"][-1] < 0.9 * resumed["loss"][0]
    assert_consistent(resumed, 12)


def test_a_nan_in_a_window_of_unsynchronised_steps_cuts_the_whole_window(batch):
    """With sync_every 4 (as on a GPU, where the host reads losses every 25 steps) a NaN at
    epoch 11 is seen at the sync after epoch 12: the state and history of epoch 8 (the last
    snapshot) come back, not those of epoch 10, the last finite loss."""
    clean, clean_model, _ = run(batch, 8, sync_every=4)
    with pytest.warns(UserWarning, match="stopped at epoch 11: the loss became nan; "
                                         + RESTORED.format(8)):
        history, model, _ = run(batch, 16, nan_at(11), sync_every=4)
    assert history["loss"] == clean["loss"] and same_tensors(weights(model), weights(clean_model))
    assert history["timed_epochs"] == [4, 8]
    assert_consistent(history, 8)


def test_a_nan_at_epoch_1_leaves_the_initial_state_and_an_empty_history(batch, tmp_path):
    """Nothing finite to keep: the initial weights come back and the history is empty, and
    everything downstream of it still works: the run record, the loss plots, the comparison
    table, the checkpoint, a continued run."""
    initial = weights(fresh()[0])
    with pytest.warns(UserWarning):
        history, model, optimizer = run(batch, 5, nan_at(1),
                                        checkpoint_path=tmp_path / "ck.pt")
    assert history["status"] == "stopped at epoch 1: the loss became nan; " + RESTORED.format(0)
    assert_consistent(history, 0)
    assert same_tensors(weights(model), initial)
    assert len(load_checkpoint(tmp_path / "ck.pt")[1]["history"]["loss"]) == 0
    record = make_run_record("ddsp_original", model, batch, history, config={}, metrics={},
                             wavs=[], feature_seconds=0.0, root=tmp_path)
    assert (record["n_epochs"], record["step_seconds"], record["final_loss"]) == (0, [], None)
    assert record["total_training_seconds"] == 0.0 and record["final_loss_terms"] == {}
    plot_loss(history).canvas.draw()
    table = comparison_markdown({"original": record, "optimized": record})
    assert "| original | " in table and "| - | - |" in table  # no time per epoch, no speedup
    plot_loss_comparison({"original": record, "optimized": record}).canvas.draw()
    continued, _, _ = run(batch, 3, history=history, model=model, optimizer=optimizer)
    assert continued["status"] == "finished" and np.isfinite(continued["loss"]).all()


def test_step_seconds_of_a_history_that_timed_a_step_twice():
    """Histories saved before issue 13 timed a NaN stop's step twice: the repeated timestamp
    joins the next window instead of dividing by zero."""
    assert step_seconds([2, 2, 4], [2.0, 2.5, 6.0]) == [1.0, 1.0, 2.0, 2.0]


# ----------------------------------------------------------------------------- class 4: full disk
class DiskFills:
    """torch.save that fails from its `first` call on with ENOSPC (a disk that filled up),
    after writing some bytes of the temporary file."""

    def __init__(self, first):
        self.first, self.calls, self.real = first, 0, torch.save

    def __call__(self, obj, file, *args, **kwargs):
        self.calls += 1
        if self.calls < self.first:
            return self.real(obj, file, *args, **kwargs)
        file.write(b"PK\x03\x04")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_periodic_checkpoint_warns_and_training_goes_on(batch, tmp_path, monkeypatch):
    """Checkpoints every 3 epochs; the disk fills after the first: the saves at epochs 6 and 9
    warn, training finishes with its whole history, the final report names the file, the
    reason and what the file holds (epoch 3), and no temporary file is left."""
    path = tmp_path / "ck.pt"
    monkeypatch.setattr("torch.save", DiskFills(first=2))
    with pytest.warns(UserWarning) as caught:
        history, _, _ = run(batch, 9, checkpoint_path=path, checkpoint_every=3)
    reason = f"[Errno 28] {path}: not written (No space left on device)"
    assert [str(w.message) for w in caught] == [
        f"checkpoint of epoch 6: {reason}; the file still holds epoch 3; training goes on",
        f"checkpoint of epoch 9: {reason}; the file still holds epoch 3"]
    assert history["status"] == "finished" and len(history["loss"]) == 9
    assert history["checkpoint"] == f"checkpoint of epoch 9: {reason}; the file still holds epoch 3"
    assert len(load_checkpoint(path)[1]["history"]["loss"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


@pytest.mark.parametrize("earlier_file", [False, True])
def test_the_final_report_says_when_no_checkpoint_was_written(batch, tmp_path, monkeypatch,
                                                               earlier_file):
    path = tmp_path / "ck.pt"
    if earlier_file:
        path.write_bytes(b"an earlier checkpoint")
    monkeypatch.setattr("torch.save", DiskFills(first=1))
    with pytest.warns(UserWarning, match="not written"):
        history, _, _ = run(batch, 2, checkpoint_path=path)
    held = "the file is unchanged" if earlier_file else "no checkpoint was written"
    assert history["checkpoint"] == (f"checkpoint of epoch 2: [Errno 28] {path}: not written "
                                     f"(No space left on device); {held}")
    assert sorted(p.name for p in tmp_path.iterdir()) == (["ck.pt"] if earlier_file else [])
    assert not earlier_file or path.read_bytes() == b"an earlier checkpoint"


FULL_DISK_WRITES = """
import json, resource, signal, sys
import numpy as np, torch
from grown_timbres.audio import write_wav
from grown_timbres.checkpoints import save_checkpoint
from grown_timbres.model import DDSPModel
from grown_timbres.runs import save_run_record
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # the OS refuses bytes past 4 KiB
folder = sys.argv[1]
writes = {"ck.pt": lambda p: save_checkpoint(p, DDSPModel(hidden_size=16)),
          "out.wav": lambda p: write_wav(p, np.zeros(22050, np.float32)),
          "run.json": lambda p: save_run_record(p, {"loss_curve": list(range(5000))})}
errors = {}
for name, write in writes.items():
    try:
        write(f"{folder}/{name}")
    except OSError as err:
        errors[name] = str(err)
print(json.dumps(errors))
"""


def test_every_file_the_notebooks_write_fails_cleanly_when_the_os_refuses_bytes(tmp_path):
    """The OS itself refuses the writes (a file-size limit: EFBIG where a full disk gives
    ENOSPC; torch's writer reports either only as "enforce fail ... unexpected pos", libsndfile
    as "System error"): a checkpoint, a wav and a run record each raise an OSError naming the
    file and the system's reason, and nothing is left in the folder."""
    result = subprocess.run([sys.executable, "-c", FULL_DISK_WRITES, str(tmp_path)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    import json

    errors = json.loads(result.stdout)
    assert errors == {name: f"[Errno 27] {tmp_path / name}: not written (File too large)"
                      for name in ("ck.pt", "out.wav", "run.json")}
    assert list(tmp_path.iterdir()) == []


KILLED_SAVE = """
import sys, time
from pathlib import Path
from grown_timbres.files import atomic_write

def write(tmp):
    Path(tmp).write_bytes(b"half a file")
    print("writing", flush=True)
    time.sleep(60)

atomic_write(sys.argv[1], write)
"""


def test_a_killed_save_leaves_a_temporary_file_that_the_next_save_removes(tmp_path):
    """kill -9 in the middle of a save: the target keeps its old contents and a temporary file
    stays; the next save of that target removes it. A temporary file of another target stays."""
    target, other = tmp_path / "record.json", tmp_path / ".record.json.old.abandoned.tmp"
    target.write_text("old")
    other.write_text("not ours")
    writer = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(target)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    writer.kill()
    writer.wait()
    abandoned = [p for p in tmp_path.iterdir() if p not in (target, other)]
    assert len(abandoned) == 1 and abandoned[0].read_bytes() == b"half a file"
    assert target.read_text() == "old"
    save_run_record(target, {"new": True})
    assert sorted(tmp_path.iterdir()) == sorted([target, other])
    assert target.read_text() == '{\n "new": true\n}'


def test_a_save_in_progress_keeps_its_temporary_file(tmp_path):
    """Two saves of one target at once: the second removes nothing the first still writes."""
    target = tmp_path / "out.wav"
    started, go_on = threading.Event(), threading.Event()

    def slow(tmp):
        open(tmp, "wb").write(b"first")
        started.set()
        go_on.wait(30)

    first = threading.Thread(target=atomic_write, args=(target, slow))
    first.start()
    assert started.wait(30)
    write_wav(target, np.zeros(1000, np.float32))
    go_on.set()
    first.join()
    assert target.read_bytes() == b"first"  # the first save finished: its file was intact
    assert sorted(tmp_path.iterdir()) == [target]


def test_a_failure_that_is_not_about_the_file_system_is_raised_as_it_is(tmp_path):
    def broken(tmp):
        open(tmp, "wb").write(b"x")
        raise ValueError("a bug in the writer")

    with pytest.raises(ValueError, match="a bug in the writer"):
        atomic_write(tmp_path / "x.bin", broken)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- the test hooks
def test_the_nan_hook_makes_that_epoch_diverge(batch, monkeypatch):
    """DDSP_FAULT_NAN_EPOCH (tests/test_notebook_faults.py) stops training as a real divergence
    does: weights and optimizer moments NaN, then the snapshot put back."""
    monkeypatch.setenv("DDSP_FAULT_NAN_EPOCH", "5")
    clean, clean_model, _ = run(batch, 3)
    with pytest.warns(UserWarning):
        history, model, _ = run(batch, 8)
    assert history["status"] == "stopped at epoch 5: the loss became nan; " + RESTORED.format(3)
    assert history["loss"] == clean["loss"] and same_tensors(weights(model), weights(clean_model))


def test_the_disk_full_hook_fails_every_checkpoint_write(tmp_path, monkeypatch):
    monkeypatch.setenv("DDSP_FAULT_DISK_FULL", "1")
    path = tmp_path / "model.pt"
    with pytest.raises(OSError) as raised:
        save_checkpoint(path, fresh()[0])
    assert raised.value.errno == errno.ENOSPC
    assert str(raised.value) == f"[Errno 28] {path}: not written (No space left on device)"
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- class 7: interrupt
class Interrupting(MultiScaleSpectralLoss):
    """The plain loss; during the listed steps it interrupts as the stop button does:
    `presses` SIGINTs to this process (or, with presses=0, a KeyboardInterrupt raised right
    there, as an interrupt reaches a thread with no signal handler)."""

    def __init__(self, calls, presses=1):
        super().__init__()
        self.calls, self.presses, self.count = set(calls), presses, 0

    def forward(self, pred, target, lengths=None):
        self.count += 1
        if self.count in self.calls:
            if not self.presses:
                raise KeyboardInterrupt
            for _ in range(self.presses):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.01)  # the handler runs in between
        return super().forward(pred, target, lengths)


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler during the test, as in a terminal or a notebook kernel. A
    test runner started in the background of a non-interactive shell inherits SIGINT ignored,
    and train then rightly leaves it alone: the stop button could not be pressed."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def resumed_to(n_epochs, checkpoint, batch):
    model, optimizer = fresh(seed=123)  # other weights: the checkpoint must replace them
    history = resume_training(checkpoint, model, optimizer)
    history, model, _ = run(batch, n_epochs - len(history["loss"]), history=history, model=model,
                            optimizer=optimizer)
    return history, model


def test_stop_button_in_the_middle_of_a_step_resumes_bit_for_bit(batch, tmp_path,
                                                                 python_sigint_handler):
    """SIGINT during step 5 of 10: step 5 completes, training stops there, and the checkpoint
    (random state included) resumes to the very losses and weights of an uninterrupted run;
    the process's own SIGINT handler is back afterwards."""
    straight, straight_model, _ = run(batch, 10)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.warns(UserWarning) as caught:
        history, _, _ = run(batch, 10, Interrupting([5]), checkpoint_path=tmp_path / "ck.pt")
    assert history["status"] == str(caught[0].message) == "interrupted at epoch 5"
    assert signal.getsignal(signal.SIGINT) is handler
    assert history["loss"] == straight["loss"][:5]
    resumed, model = resumed_to(10, tmp_path / "ck.pt", batch)
    assert resumed["loss"] == straight["loss"]
    assert same_tensors(weights(model), weights(straight_model))


@pytest.mark.parametrize("presses", [0, 2], ids=["no handler", "second press"])
def test_an_interrupt_that_cuts_a_step_short_puts_the_snapshot_back(batch, tmp_path, presses,
                                                                    python_sigint_handler):
    """A KeyboardInterrupt inside step 5 (a second press, or a thread without the handler)
    leaves that step half done: the snapshot of epoch 3 comes back, and resuming from the
    checkpoint gives the uninterrupted run exactly."""
    straight, straight_model, _ = run(batch, 10)
    with pytest.warns(UserWarning) as caught:
        history, _, _ = run(batch, 10, Interrupting([5], presses),
                            checkpoint_path=tmp_path / "ck.pt")
    message = "interrupted in the middle of a step; " + RESTORED.format(3)
    assert history["status"] == str(caught[0].message) == message
    assert_consistent(history, 3)
    resumed, model = resumed_to(10, tmp_path / "ck.pt", batch)
    assert resumed["loss"] == straight["loss"]
    assert same_tensors(weights(model), weights(straight_model))
    assert parameters_finite(model)
