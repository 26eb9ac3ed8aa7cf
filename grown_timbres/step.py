"""One training step: the optimizer, how many examples a step holds, the step itself
(autocast, GradScaler, clipping), its harmonic waves computed once, and the step as a
capture.CapturedStep.

    step batch {f0 [B, T, 1], loudness [B, T, 1], mfcc [B, T, M], audio [B, T * hop],
                lengths [B], harmonic_waves [B, T, hop, H] optional} -> (total, {term: scalar})
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .capture import CapturedStep, TrainingState
from .config import checked_number
from .device import free_memory_bytes
from .loss import MultiScaleSpectralLoss, training_loss
from .model import unwrap_model
from .synth import harmonic_waves

LEARNING_RATE = 1e-3  # make_optimizer's default; the notebooks' settings cell passes its own
CLIP_GRAD_NORM = 1.0
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
    """How many training examples of n_frames (of the model's hop_length) one step of `model`
    holds on `device`: as many as fit device.free_memory_bytes at STEP_BYTES_PER_WAVE_VALUE per
    harmonic-wave value, at least 1, at most MAX_EXAMPLES_PER_STEP of the device's type."""
    n_frames = checked_number("n_frames", n_frames, whole=True, at_least=1)
    core = unwrap_model(model)
    per_example = (STEP_BYTES_PER_WAVE_VALUE * n_frames * core.config["hop_length"] *
                   core.n_harmonics)
    most = MAX_EXAMPLES_PER_STEP.get(torch.device(device).type, MAX_EXAMPLES_PER_STEP["cpu"])
    return int(min(max(free_memory_bytes(device) // per_example, 1), most))


def with_harmonic_waves(batch: dict, model) -> dict:
    """The batch plus its harmonic_waves [B, T, hop, H] for `model` (at its sample rate and
    hop): training_step then skips computing them every step (f0 never changes during
    training). Memory: B * N * H floats."""
    core = unwrap_model(model)
    waves = harmonic_waves(batch["f0"], core.n_harmonics, core.config["sample_rate"],
                           core.config["hop_length"])
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
