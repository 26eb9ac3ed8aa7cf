"""Training: the optimizer, how many examples a step can hold, one step (autocast,
GradScaler, clipping) and the loop around it over the batches of the training examples
(progress bar, NaN guard, interrupt, resumable checkpoints), replaying the step from a CUDA
graph where asked (capture.py).

    batch (batching.collate) -> history {loss, terms {name: curve} per step, status, ...}
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
import torch.nn as nn

from .batching import StepBatches
from .capture import (CapturedStep, TrainingState, default_capture_off, diverge,
                      optimizer_steps, parameters_finite)
from .checkpoints import save_checkpoint
from .config import HOP_LENGTH, SAMPLE_RATE, checked_number, injected_fault
from .device import free_memory_bytes, synchronize
from .loss import MultiScaleSpectralLoss, OptimizedMultiScaleSpectralLoss, training_loss
from .model import unwrap_model
from .resume import continue_on, epochs_at, files_trained, new_history
from .synth import harmonic_waves

LEARNING_RATE = 1e-3
CLIP_GRAD_NORM = 1.0
SNAPSHOT_EVERY = 25  # steps between in-memory copies of good weights (restored on a NaN loss)
# At most this many examples a step, whatever fits: more would mean too few steps an epoch to
# learn; a CPU computes a large step no faster per example (BENCHMARKS.md, examples per second),
# so it keeps magenta's batch of 16.
MAX_EXAMPLES_PER_STEP = {"cuda": 64, "cpu": 16}
# Peak memory a training step adds per float of its harmonic waves (samples x harmonics): the
# synthesizer's [b, N, H] tensors and what autograd keeps of them dominate. Measured on CPU in
# float32 by scripts/measure_step_memory.py (the slope over examples per step; with the waves
# precomputed, the step's share plus the waves the batch holds), plus 10%, rounded up.
STEP_BYTES_PER_WAVE_VALUE = 22


def make_optimizer(model: nn.Module, lr: float = LEARNING_RATE,
                   capturable: bool = False) -> torch.optim.Optimizer:
    """Adam over model.parameter_groups(lr); the fused kernel on CUDA (one launch for all
    parameters). `capturable`: its step count stays on the GPU, so that train(capture=True) can
    record the step as a CUDA graph."""
    lr = checked_number("lr", lr, above=0)
    device = next(model.parameters()).device
    if capturable and device.type != "cuda":
        raise ValueError(f"a capturable optimizer needs a CUDA model, not {device.type}")
    return torch.optim.Adam(unwrap_model(model).parameter_groups(lr), lr=lr,
                            fused=device.type == "cuda", capturable=capturable)


def examples_per_step(model, n_frames: int, device) -> int:
    """How many training examples of n_frames one step of `model` holds on `device`: as many as
    fit device.free_memory_bytes at STEP_BYTES_PER_WAVE_VALUE per harmonic-wave value, at
    least 1, at most MAX_EXAMPLES_PER_STEP of the device's type."""
    n_frames = checked_number("n_frames", n_frames, whole=True, at_least=1)
    per_example = (STEP_BYTES_PER_WAVE_VALUE * n_frames * HOP_LENGTH *
                   unwrap_model(model).n_harmonics)
    most = MAX_EXAMPLES_PER_STEP.get(torch.device(device).type, MAX_EXAMPLES_PER_STEP["cpu"])
    return int(min(max(free_memory_bytes(device) // per_example, 1), most))


def with_harmonic_waves(batch: dict, model) -> dict:
    """The batch plus its harmonic_waves [B, T, hop, H] for `model`: training_step then skips
    computing them every step (f0 never changes during training). Memory: B * N * H floats."""
    waves = harmonic_waves(batch["f0"], unwrap_model(model).n_harmonics, SAMPLE_RATE, HOP_LENGTH)
    return {**batch, "harmonic_waves": waves}


def training_step(model, optimizer, batch: dict, spectral_loss: MultiScaleSpectralLoss,
                  scaler=None, amp_dtype=None, clip_grad_norm: float = CLIP_GRAD_NORM):
    """One full-batch step -> (total loss, {term name: value}), detached tensors (no sync).

    Only the model runs under autocast (`amp_dtype`); the loss is float32 (loss.training_loss).
    With a GradScaler the gradients are unscaled before clipping, so the clip sees true norms.
    Autocast keeps no cache of cast weights: each weight is cast once per step anyway, and a
    cache would hold tensors from outside a captured graph."""
    clip_grad_norm = checked_number("clip_grad_norm", clip_grad_norm, above=0)
    optimizer.zero_grad(set_to_none=True)
    device_type = batch["f0"].device.type
    with torch.autocast(device_type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None, cache_enabled=False):
        pred_audio, _, _ = model(batch["f0"], batch["loudness"], batch["mfcc"],
                                 batch.get("harmonic_waves"))
    loss, terms = training_loss(spectral_loss, pred_audio, batch["audio"], batch["lengths"])
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
    return loss.detach(), {name: value.detach() for name, value in terms.items()}


def step_runner(model, optimizer, batch: dict, spectral_loss, scaler=None, amp_dtype=None):
    """training_step as a capture.CapturedStep -> (runner, names). Calling the runner runs one
    step and returns [total, *terms] as one tensor; `names` holds the terms' names once a step
    has run. runner.capture() records it as a CUDA graph."""
    names = []

    def step() -> torch.Tensor:
        loss, terms = training_step(model, optimizer, batch, spectral_loss, scaler, amp_dtype)
        names[:] = list(terms)
        return torch.stack([loss, *terms.values()])

    return CapturedStep(step, TrainingState(unwrap_model(model), optimizer, scaler)), names


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


def train(model, optimizer, batch: dict, spectral_loss, n_epochs: float, scaler=None,
          amp_dtype=None, sync_every: int | None = None, progress: bool = True,
          desc: str = "training", history: dict | None = None, checkpoint_path=None,
          checkpoint_every: int = 100, capture: bool | str = False, batch_size: int | None = None,
          precompute_waves: bool = False) -> dict:
    """Train for `n_epochs` passes over the batch's training examples (batching.StepBatches:
    `batch_size` examples a step, by default as many as fit the device, examples_per_step;
    a fraction of an epoch is allowed, as whole steps never past it; 0 or less trains nothing,
    as when a resumed run has done them all) with a tqdm bar, and return the history: the total
    loss and each term of it (loss.training_loss) per step, elapsed_seconds at each
    synchronised step (timed_epochs: its step count), steps_per_epoch, examples_per_step,
    skipped_steps (GradScaler overflow skips), status, what the last checkpoint save did
    (checkpoint), and with `capture` how the step ran ("captured", or why it fell back) and
    capture_seconds. While all examples fit one step, a step is an epoch.

    The batch never changes when all examples fit one step: then `precompute_waves` computes
    the harmonic waves once (with_harmonic_waves) and an OptimizedMultiScaleSpectralLoss keeps
    the target's spectra. When steps see different examples, both are computed every step
    (the history's harmonic_waves and cached_targets say which happened).

    `capture` (CUDA only, optimizer from make_optimizer(model, capturable=True)): the step is
    recorded once as a CUDA graph and replayed every step (capture.CapturedStep); a capture
    that fails or disagrees with the eager step falls back to it with one warning. Step
    batches (several steps an epoch) stay eager unless "always" (capture.default_capture_off).
    The host waits for the device only every `sync_every` steps (default: 25 on CUDA, 1 on CPU)
    to read the losses, take honest wall times and check for trouble. It stops without an
    exception (the notebook can still save and listen), `status` saying why:
    - a NaN or inf loss: weights, optimizer, scaler and random state are put back in place to
      the last snapshot (the start, then every SNAPSHOT_EVERY steps of finite losses) and the
      history is cut back to its step, so a continued run trains on from there;
    - an interrupt (Ctrl-C, Colab's stop button) stops after the step under way; one that cuts
      a step short (a second interrupt) puts the last snapshot back too;
    - with `checkpoint_path`, a resumable checkpoint (weights, optimizer, scaler, random state,
      history) is written atomically every `checkpoint_every` steps and when training stops;
      one that cannot be written (a full disk) is a warning, and training goes on.
    Pass an earlier history (resume.resume_training) to continue its curves and step count; the
    examples' order continues too (each epoch's is seeded by its number). A history of other
    files counts its epochs by resume.py's rule, with a warning (resume.continue_on). A number
    that is not one (text, NaN, inf, a batch_size of 2.5) is refused before anything runs."""
    from tqdm.auto import tqdm

    n_epochs = checked_number("n_epochs", n_epochs)
    batch_size, sync_every = (None if value is None else checked_number(
        name, value, whole=True, at_least=1) for name, value in (("batch_size", batch_size),
                                                                 ("sync_every", sync_every)))
    checkpoint_every = checked_number("checkpoint_every", checkpoint_every, whole=True, at_least=1)
    examples = batch["examples"]
    if len(examples["starts"]) == 0:
        raise ValueError("the batch has no training examples: nothing to train on")
    device = examples["f0"].device
    if capture and device.type != "cuda":
        raise ValueError(f"capture records a CUDA graph: it needs a CUDA batch, not {device.type}")
    core = unwrap_model(model)
    sync_every = sync_every or (25 if device.type == "cuda" else 1)
    history = history or new_history()
    feed = StepBatches(examples, batch_size or examples_per_step(
        model, int(examples["lengths"].max()), device))
    continue_on(history, feed.n_examples, files_trained(batch))  # before steps_per_epoch moves
    steps_per_epoch = feed.steps_per_epoch
    # whole steps, never past n_epochs (a resumed run's remainder may end inside a step)
    n_steps = max(math.floor(n_epochs * steps_per_epoch + 1e-9), 0)
    files_changed_at = history.get("steps_before", 0)  # the step where the files last changed
    history.update(steps_per_epoch=steps_per_epoch, examples_per_step=feed.batch_size,
                   examples=feed.n_examples)
    step_batch = feed.batch
    if precompute_waves:
        history["harmonic_waves"] = ("computed every step: the examples change every step"
                                     if feed.changes else "precomputed once")
        step_batch = step_batch if feed.changes else with_harmonic_waves(step_batch, model)
    if isinstance(spectral_loss, OptimizedMultiScaleSpectralLoss):
        history["cached_targets"] = ("off: the examples change every step, so each step "
                                     "computes its targets' spectra" if feed.changes else "on")
        if feed.changes:  # its cache is keyed by the target tensor, which feed.load rewrites
            spectral_loss = MultiScaleSpectralLoss(spectral_loss.fft_sizes)

    def position(step: int) -> str:
        return (f"epoch {step}" if steps_per_epoch == 1 and not files_changed_at else
                f"step {step} (epoch {epochs_at(history, step):.2f})")

    first_step = len(history["loss"])
    feed.load(first_step - files_changed_at)  # each epoch's order, counted from the last change
    time_offset = history["elapsed_seconds"][-1] if history["elapsed_seconds"] else 0.0
    runner, names = step_runner(model, optimizer, step_batch, spectral_loss, scaler, amp_dtype)
    if capture:
        synchronize(device)
        started = time.perf_counter()
        history["capture"] = (default_capture_off(capture, steps_per_epoch) or
                              runner.capture() or "captured")
        history["capture_seconds"] = time.perf_counter() - started
    good = TrainingState(core, optimizer, scaler).save()
    good_step, good_skipped = first_step, history["skipped_steps"]
    steps_before, skipped_before = optimizer_steps(optimizer), history["skipped_steps"]
    nan_step = int(injected_fault("NAN_EPOCH") or 0)
    written = None  # the step of the checkpoint this call last wrote
    history["status"] = "running"
    pending = []
    synchronize(device)
    start = time.perf_counter()

    def back_to_snapshot(why: str) -> None:
        good.restore()  # in place: a captured graph's tensors stay valid
        for curve in [history["loss"], *history["terms"].values()]:
            del curve[good_step:]
        kept = sum(timed <= good_step for timed in history["timed_epochs"])
        del history["timed_epochs"][kept:], history["elapsed_seconds"][kept:]
        history["skipped_steps"] = good_skipped
        history["status"] = (f"{why}; weights, optimizer, scaler and random state restored to "
                             f"{position(good_step)}, the last snapshot, and the history cut back")
        warnings.warn(history["status"], stacklevel=3)

    def drain() -> bool:
        """Record the pending losses; False if one is not finite (the snapshot is then back)."""
        nonlocal good_step, good_skipped
        if not pending:
            return True
        values = torch.stack(pending).float().cpu()  # the one sync
        pending.clear()
        recorded = len(history["loss"])
        bad = (~torch.isfinite(values).all(dim=1)).nonzero().flatten().tolist()
        if bad:
            back_to_snapshot(f"stopped at {position(recorded + bad[0] + 1)}: the loss became "
                             f"{values[bad[0], 0].item()}")
            return False
        history["loss"] += values[:, 0].tolist()
        for column, name in enumerate(names, start=1):  # a term new since a resume: NaN before
            history["terms"].setdefault(name, [math.nan] * recorded).extend(
                values[:, column].tolist())
        step = len(history["loss"])
        history["timed_epochs"].append(step)
        history["elapsed_seconds"].append(time_offset + time.perf_counter() - start)
        history["skipped_steps"] = skipped_before + (step - first_step) - (
            optimizer_steps(optimizer) - steps_before)
        if step - good_step >= SNAPSHOT_EVERY and parameters_finite(core):
            good.save()
            good_step, good_skipped = step, history["skipped_steps"]
        return True

    def save(final: bool) -> None:
        nonlocal written
        if checkpoint_path is None:
            return
        step = len(history["loss"])
        history["checkpoint"] = f"{checkpoint_path}: written at {position(step)}"  # as saved
        try:
            save_checkpoint(checkpoint_path, model, history=history,
                            optimizer_state_dict=optimizer.state_dict(),
                            scaler_state_dict=scaler.state_dict() if scaler else None,
                            rng_state=torch.get_rng_state(),  # the noise continues exactly
                            cuda_rng_state=torch.cuda.get_rng_state(device)
                            if device.type == "cuda" else None)
            written = step
        except OSError as err:  # a full disk must not cost the run: say what the file holds
            held = (f"the file still holds {position(written)}" if written is not None else
                    "the file is unchanged" if Path(checkpoint_path).exists() else
                    "no checkpoint was written")
            history["checkpoint"] = f"checkpoint of {position(step)}: {err}; {held}"
            warnings.warn(history["checkpoint"] + ("" if final else "; training goes on"),
                          stacklevel=3)

    with interrupt_between_steps() as asked, \
            tqdm(range(n_steps), desc=desc, disable=not progress) as bar:
        try:
            for step in bar:
                if asked:
                    if drain():
                        history["status"] = f"interrupted at {position(len(history['loss']))}"
                        warnings.warn(history["status"], stacklevel=2)
                    break
                if device.type == "cuda" and not runner.captured:
                    torch.compiler.cudagraph_mark_step_begin()  # for compile's own CUDA graphs
                # in place: a captured graph reads the new rows
                feed.load(first_step + step - files_changed_at)
                terms = runner()
                if first_step + step + 1 == nan_step:  # test hook (config.injected_fault)
                    terms = diverge(terms, core, optimizer)
                pending.append(terms)
                if (step + 1) % sync_every == 0 or step + 1 == n_steps:
                    if not drain():
                        break
                    bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", **(
                        {"epoch": f"{epochs_at(history, len(history['loss'])):.1f}"}
                        if steps_per_epoch > 1 or files_changed_at else {}))
                    if ((first_step + step + 1) % checkpoint_every < sync_every
                            and step + 1 < n_steps):  # the last one is the final save
                        save(final=False)
            else:
                history["status"] = "finished"
        except KeyboardInterrupt:  # inside a step or a sync: it may be half done
            pending.clear()
            back_to_snapshot("interrupted in the middle of a step")
        save(final=True)  # still inside: a first interrupt here waits for the file
    return history
