"""The training loop: step.py's step over the batches of the training examples, with a
progress bar, a NaN guard, interrupts between steps, resumable checkpoints and, where asked,
the step replayed from a CUDA graph (capture.py); TrainOptions say how.

    batch (batching.collate), n_epochs -> History {loss, terms {name: curve} per step, ...}

Training stops without an exception (the notebook can still save and listen), the status
saying why: a NaN or inf loss puts weights, optimizer, scaler and random state back in place
to the last snapshot (the start, then every SNAPSHOT_EVERY steps of finite losses) and cuts
the history back to its step; an interrupt (Ctrl-C, Colab's stop button) stops after the step
under way, and one that cuts a step short (a second interrupt) puts the snapshot back too. A
checkpoint that cannot be written (a full disk) is a warning, and training goes on.
"""
from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from pathlib import Path

import torch

from .batching import StepBatches
from .capture import (TrainingState, default_capture_off, diverge, optimizer_steps,
                      parameters_finite)
from .config import checked_number, injected_fault
from .device import synchronize
from .history import History, as_history, continue_on, epochs_at, files_trained
from .loss import MultiScaleSpectralLoss, OptimizedMultiScaleSpectralLoss
from .model import unwrap_model
from .resume import save_training_checkpoint
from .step import examples_per_step, step_runner, with_harmonic_waves
from .train_options import TrainOptions, merged_options

SNAPSHOT_EVERY = 25  # steps between in-memory copies of good weights (restored on a NaN loss)


def train(model, optimizer, batch: dict, spectral_loss: MultiScaleSpectralLoss, n_epochs: float,
          history: History | None = None, options: TrainOptions | None = None,
          **option_fields) -> History:
    """Train for `n_epochs` passes over the batch's training examples (a fraction of an epoch
    as whole steps never past it; 0 or less trains nothing, as when a resumed run has done them
    all) -> the History (history.py) of the steps: losses, timings, status. While all examples
    fit one step, a step is an epoch.

    `options` (TrainOptions), or its fields as keywords (train(..., batch_size=4, scaler=s)),
    which replace those of `options`. A value that is not one (text, NaN, inf, a batch_size of
    2.5) is refused before anything runs.

    When all examples fit one step the batch never changes: then precompute_waves computes the
    harmonic waves once and an OptimizedMultiScaleSpectralLoss keeps the target's spectra;
    when steps see different examples, both are computed every step (the history's
    harmonic_waves and cached_targets say which happened).

    An earlier History (resume.resume_training) continues in place: its curves, step count
    and the examples' order (each epoch's is seeded by its number). One of other files counts
    its epochs by history.py's rule, with a warning. An older history dict is read as a copy."""
    options = merged_options(options, option_fields)
    n_epochs = checked_number("n_epochs", n_epochs)
    run = TrainingRun(model, optimizer, batch, spectral_loss, as_history(history), options)
    return run.run(max(math.floor(n_epochs * run.steps_per_epoch + 1e-9), 0))


@contextlib.contextmanager
def interrupt_between_steps():
    """The first interrupt (Ctrl-C; a notebook's stop button sends SIGINT) only asks training
    to stop after the step under way, so that weights, optimizer and random state belong to one
    completed step; a second one interrupts at once. Yields a list, non-empty once asked. Off
    the main thread (no signal handlers there) or where SIGINT is ignored, nothing changes."""
    asked = []
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield asked
        return
    previous = signal.getsignal(signal.SIGINT) or signal.default_int_handler  # None: set in C
    def ask(signum, frame):
        asked.append(signum)
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, ask)
    try:
        yield asked
    finally:
        signal.signal(signal.SIGINT, previous)


class TrainingRun:
    """One call of train: the step batches, the step (captured or not), the snapshot a NaN
    loss or a cut-short step goes back to, the losses waiting for the next sync, and the
    checkpoint written last. Made ready in __init__ (nothing trained yet); run(n_steps)."""

    def __init__(self, model, optimizer, batch: dict, spectral_loss, history: History,
                 options: TrainOptions):
        examples = batch["examples"]
        if len(examples["starts"]) == 0:
            raise ValueError("the batch has no training examples: nothing to train on")
        self.device = examples["f0"].device
        if options.capture and self.device.type != "cuda":
            raise ValueError("capture records a CUDA graph: it needs a CUDA batch, not "
                             f"{self.device.type}")
        self.model, self.core, self.optimizer = model, unwrap_model(model), optimizer
        hops = spectral_loss.hop_length, self.core.config["hop_length"]
        if hops[0] != hops[1]:
            raise ValueError(f"the loss counts frames of {hops[0]} samples, the model of "
                             f"{hops[1]}: make the loss with hop_length={hops[1]}")
        self.history, self.options, self.written = history, options, None
        self.sync_every = options.sync_every or (25 if self.device.type == "cuda" else 1)
        self.feed = StepBatches(examples, options.batch_size or examples_per_step(
            model, int(examples["lengths"].max()), self.device))
        continue_on(history, self.feed.n_examples, files_trained(batch))  # before the counts move
        self.steps_per_epoch = self.feed.steps_per_epoch
        self.files_changed_at = history.steps_before  # the step where the files last changed
        history.steps_per_epoch = self.steps_per_epoch
        history.examples_per_step, history.examples = self.feed.batch_size, self.feed.n_examples
        step_batch, spectral_loss = self.step_inputs(spectral_loss)
        self.first_step = len(history.loss)
        # each epoch's order, counted from the last change of files
        self.feed.load(self.first_step - self.files_changed_at)
        self.time_offset = history.elapsed_seconds[-1] if history.elapsed_seconds else 0.0
        self.runner, self.names = step_runner(model, optimizer, step_batch, spectral_loss,
                                              options.scaler, options.amp_dtype)
        if options.lr_schedule is not None:  # kept in the optimizer's state, so resumes see it
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])

    def step_inputs(self, spectral_loss):
        """The step's batch and loss: with precompute_waves its harmonic waves, and the cached
        loss only while the batch never changes -> (step batch, spectral loss)."""
        history, feed, step_batch = self.history, self.feed, self.feed.batch
        if self.options.precompute_waves:
            history.harmonic_waves = ("computed every step: the examples change every step"
                                      if feed.changes else "precomputed once")
            step_batch = step_batch if feed.changes else with_harmonic_waves(step_batch,
                                                                             self.model)
        if isinstance(spectral_loss, OptimizedMultiScaleSpectralLoss):
            history.cached_targets = ("off: the examples change every step, so each step "
                                      "computes its targets' spectra" if feed.changes else "on")
            if feed.changes:  # its cache is keyed by the target tensor, which feed.load rewrites
                spectral_loss = MultiScaleSpectralLoss(spectral_loss.fft_sizes,
                                                       spectral_loss.hop_length)
        return step_batch, spectral_loss

    def capture_step(self) -> None:
        """Record the step as a CUDA graph (or say why not): history.capture, capture_seconds."""
        synchronize(self.device)
        started = time.perf_counter()
        self.history.capture = (default_capture_off(self.options.capture, self.steps_per_epoch)
                                or self.runner.capture() or "captured")
        self.history.capture_seconds = time.perf_counter() - started

    def start(self) -> None:
        """The snapshot of the start, the counters drain measures from, and the clock."""
        self.good = TrainingState(self.core, self.optimizer, self.options.scaler).save()
        self.good_step, self.good_skipped = self.first_step, self.history.skipped_steps
        self.optimizer_steps_at_start = optimizer_steps(self.optimizer)
        self.skipped_at_start = self.history.skipped_steps
        self.nan_step = int(injected_fault("NAN_EPOCH") or 0)
        self.history.status = "running"
        self.pending = []
        synchronize(self.device)
        self.started = time.perf_counter()

    def take_step(self, step: int) -> None:
        """Run this call's step `step`: its examples loaded, its learning rate set; its loss
        terms wait in `pending` for the next sync."""
        if self.device.type == "cuda" and not self.runner.captured:
            torch.compiler.cudagraph_mark_step_begin()  # for compile's own CUDA graphs
        # in place: a captured graph reads the new rows
        self.feed.load(self.first_step + step - self.files_changed_at)
        if self.options.lr_schedule is not None:
            self.schedule_learning_rate(self.first_step + step)
        terms = self.runner()
        if self.first_step + step + 1 == self.nan_step:  # test hook (config.injected_fault)
            terms = diverge(terms, self.core, self.optimizer)
        self.pending.append(terms)

    def schedule_learning_rate(self, step: int) -> None:
        factor = checked_number(f"lr_schedule({step})", self.options.lr_schedule(step),
                                at_least=0)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor

    def back_to_snapshot(self, why: str) -> None:
        """Put the last snapshot back and cut the history back to its step; status says why."""
        history, good_step = self.history, self.good_step
        self.good.restore()  # in place: a captured graph's tensors stay valid
        history.cut_back(good_step)
        history.skipped_steps = self.good_skipped
        history.status = (f"{why}; weights, optimizer, scaler and random state restored to "
                          f"{history.position(good_step)}, the last snapshot, and the history "
                          "cut back")
        warnings.warn(history.status, stacklevel=4)

    def drain(self) -> bool:
        """Record the pending losses; False if one is not finite (the snapshot is then back)."""
        if not self.pending:
            return True
        history = self.history
        values = torch.stack(self.pending).float().cpu()  # the one sync
        self.pending.clear()
        recorded = len(history.loss)
        bad = (~torch.isfinite(values).all(dim=1)).nonzero().flatten().tolist()
        if bad:
            self.back_to_snapshot(f"stopped at {history.position(recorded + bad[0] + 1)}: the "
                                  f"loss became {values[bad[0], 0].item()}")
            return False
        history.record_steps(values, self.names,
                             self.time_offset + time.perf_counter() - self.started)
        step = len(history.loss)
        history.skipped_steps = self.skipped_at_start + (step - self.first_step) - (
            optimizer_steps(self.optimizer) - self.optimizer_steps_at_start)
        if step - self.good_step >= SNAPSHOT_EVERY and parameters_finite(self.core):
            self.good.save()
            self.good_step, self.good_skipped = step, history.skipped_steps
        return True

    def save(self, final: bool) -> None:
        """Write the resumable checkpoint, if asked for; a failure is a warning, and the
        history's checkpoint says what the file holds."""
        path, history, scaler = self.options.checkpoint_path, self.history, self.options.scaler
        if path is None:
            return
        step = len(history.loss)
        history.checkpoint = f"{path}: written at {history.position(step)}"  # as saved
        try:
            save_training_checkpoint(path, self.model, self.optimizer, scaler, history,
                                     self.device)
            self.written = step
        except OSError as err:  # a full disk must not cost the run: say what the file holds
            held = (f"the file still holds {history.position(self.written)}"
                    if self.written is not None else
                    "the file is unchanged" if Path(path).exists() else
                    "no checkpoint was written")
            history.checkpoint = f"checkpoint of {history.position(step)}: {err}; {held}"
            warnings.warn(history.checkpoint + ("" if final else "; training goes on"),
                          stacklevel=4)

    def synced(self, step: int, n_steps: int, bar) -> bool:
        """After this call's step `step`, at a sync: the losses recorded, the bar updated, a
        periodic checkpoint written when one is due -> False when training must stop."""
        if not self.drain():
            return False
        history = self.history
        bar.set_postfix(loss=f"{history.loss[-1]:.4f}", **(
            {} if history.steps_are_epochs else
            {"epoch": f"{epochs_at(history, len(history.loss)):.1f}"}))
        if ((self.first_step + step + 1) % self.options.checkpoint_every < self.sync_every
                and step + 1 < n_steps):  # the last one is the final save
            self.save(final=False)
        return True

    def run(self, n_steps: int) -> History:
        """Train n_steps steps (fewer if stopped) -> the history, its status saying how it
        ended; a final checkpoint is written when asked for."""
        from tqdm.auto import tqdm

        history, options = self.history, self.options
        if options.capture:
            self.capture_step()
        self.start()
        with interrupt_between_steps() as asked, \
                tqdm(range(n_steps), desc=options.desc, disable=not options.progress) as bar:
            try:
                for step in bar:
                    if asked:
                        if self.drain():
                            history.status = ("interrupted at "
                                              f"{history.position(len(history.loss))}")
                            warnings.warn(history.status, stacklevel=3)
                        break
                    self.take_step(step)
                    if ((step + 1) % self.sync_every == 0 or step + 1 == n_steps) and \
                            not self.synced(step, n_steps, bar):
                        break
                else:
                    history.status = "finished"
            except KeyboardInterrupt:  # inside a step or a sync: it may be half done
                self.pending.clear()
                self.back_to_snapshot("interrupted in the middle of a step")
            self.save(final=True)  # still inside: a first interrupt here waits for the file
        return history
