"""grown_timbres/step.py: the training step against a written-out loop (loss terms, clipping,
GradScaler order, fused Adam, cached targets, precomputed waves, bfloat16 autocast), the
optimizer's parameter groups and the examples a step holds."""
import math

import numpy as np
import pytest
import torch

from grown_timbres import step as step_module
from grown_timbres.config import HOP_LENGTH, N_MFCC, SAMPLE_RATE
from grown_timbres.loss import (TIME_LOSS_WEIGHT, MultiScaleSpectralLoss,
                                OptimizedMultiScaleSpectralLoss)
from grown_timbres.model import DDSPModel
from grown_timbres.synth import harmonic_synth, harmonic_waves
from grown_timbres.capture import parameters_finite
from grown_timbres.step import (CLIP_GRAD_NORM, LEARNING_RATE, examples_per_step, make_optimizer,
                                training_step, with_harmonic_waves)
from conftest import batch_of_rows, small_inputs


FRAMES = 24


HOP = HOP_LENGTH


SEED = 7  # the noise generator's seed before every step: runs compared here draw the same noise


def tone_batch():
    """Two files, the second 4 frames shorter (padding is masked): a 220 Hz tone with its
    octave, and the same at half level."""
    g = torch.Generator().manual_seed(1)
    t = torch.arange(FRAMES * HOP) / SAMPLE_RATE
    tone = 0.3 * torch.sin(2 * math.pi * 220 * t) + 0.1 * torch.sin(2 * math.pi * 440 * t)
    return batch_of_rows({"f0": torch.full((2, FRAMES, 1), 220.0),
                          "loudness": torch.full((2, FRAMES, 1), -20.0),
                          "mfcc": torch.randn(2, FRAMES, N_MFCC, generator=g),
                          "audio": torch.stack([tone, 0.5 * tone]),
                          "lengths": torch.tensor([FRAMES, FRAMES - 4])})


def fresh_model(seed=0, hidden_size=32):
    torch.manual_seed(seed)
    return DDSPModel(hidden_size=hidden_size)


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def masked_l1(pred, target, lengths):
    """Mean |pred - target| over each file's valid samples, written out file by file."""
    parts = [(pred[i, : n * HOP] - target[i, : n * HOP]).abs()
             for i, n in enumerate(lengths.tolist())]
    return torch.cat(parts).mean()


def run_steps(model, optimizer, batch, loss, n_steps, scaler=None):
    """n training_steps, each after torch.manual_seed(SEED + step): -> (losses, spectral)."""
    totals, spectral = [], []
    for step in range(n_steps):
        torch.manual_seed(SEED + step)
        total, terms = training_step(model, optimizer, batch, loss, scaler)
        totals.append(total.item())
        spectral.append(terms["spectral"].item())
    return totals, spectral


# ----------------------------------------------------------------------------- the loss
def test_returned_loss_is_spectral_plus_a_tenth_of_the_time_domain_l1():
    """The seed's loss: multi-scale spectral + 0.1 x mean |pred - target| in time (valid
    samples only). The terms are computed here from the same prediction."""
    assert TIME_LOSS_WEIGHT == 0.1
    batch = tone_batch()
    model = fresh_model()
    torch.manual_seed(SEED)
    with torch.no_grad():
        pred, _, _ = model(batch["f0"], batch["loudness"], batch["mfcc"])
    spectral = MultiScaleSpectralLoss()(pred, batch["audio"], batch["lengths"]).item()
    l1 = masked_l1(pred, batch["audio"], batch["lengths"]).item()
    torch.manual_seed(SEED)
    total, terms = training_step(model, torch.optim.SGD(model.parameters(), lr=0.0), batch,
                                 MultiScaleSpectralLoss())
    returned_spectral = terms["spectral"]
    assert list(terms) == ["spectral", "time_l1"]
    assert terms["time_l1"].item() == pytest.approx(0.1 * l1, rel=1e-5)
    print(f"spectral {spectral:.6f}, L1 {l1:.6f}, total {total.item():.6f}")
    assert 0.1 * l1 > 1e-3 * spectral  # the L1 term is large enough to be seen
    assert returned_spectral.item() == pytest.approx(spectral, rel=1e-6)
    assert total.item() == pytest.approx(spectral + 0.1 * l1, rel=1e-6)
    # the difference isolates the L1 term: dropped, it is 0; weighted 0.2 or 0.01, 2x or 0.1x
    assert (total - returned_spectral).item() == pytest.approx(0.1 * l1, rel=1e-3)


def test_step_follows_the_clipped_gradient_of_the_total_loss():
    """Plain SGD makes the step visible: weights move by -lr x the gradient of spectral +
    0.1 x L1 (computed here), rescaled to norm CLIP_GRAD_NORM when it is longer."""
    batch, lr = tone_batch(), 0.01
    reference = fresh_model()
    torch.manual_seed(SEED)
    pred, _, _ = reference(batch["f0"], batch["loudness"], batch["mfcc"])
    loss = (MultiScaleSpectralLoss()(pred, batch["audio"], batch["lengths"])
            + 0.1 * masked_l1(pred, batch["audio"], batch["lengths"]))
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
    assert norm > 3 * CLIP_GRAD_NORM  # the clip is active: its order and size matter
    expected = [-lr * g * (CLIP_GRAD_NORM / norm) for g in grads]

    model = fresh_model()
    before = weights(model)
    torch.manual_seed(SEED)
    training_step(model, torch.optim.SGD(model.parameters(), lr=lr), batch,
                     MultiScaleSpectralLoss())
    moved = [after.detach() - b for after, b in zip(model.parameters(), before)]
    moved_norm = torch.sqrt(sum((m.double() ** 2).sum() for m in moved)).item()
    print(f"gradient norm {norm:.3f}; step norm {moved_norm:.6f} (lr x clip = {lr:.6f})")
    assert moved_norm == pytest.approx(lr * CLIP_GRAD_NORM, rel=1e-4)
    flat_moved, flat_expected = torch.cat([m.flatten() for m in moved]), torch.cat(
        [e.flatten() for e in expected])
    assert torch.allclose(flat_moved, flat_expected, rtol=1e-3, atol=1e-3 * lr / 100)
    cosine = torch.nn.functional.cosine_similarity(flat_moved.double(), flat_expected.double(), 0)
    assert cosine > 1 - 1e-6


def reference_steps(batch, n_steps, make_optimizer):
    """The training loop written out: zero the gradients, forward, spectral + 0.1 x L1,
    backward, clip, step."""
    model = fresh_model()
    optimizer = make_optimizer(model)
    spectral_loss = MultiScaleSpectralLoss()
    losses = []
    for step in range(n_steps):
        torch.manual_seed(SEED + step)
        optimizer.zero_grad()
        pred, _, _ = model(batch["f0"], batch["loudness"], batch["mfcc"])
        loss = (spectral_loss(pred, batch["audio"], batch["lengths"])
                + 0.1 * masked_l1(pred, batch["audio"], batch["lengths"]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_GRAD_NORM)
        optimizer.step()
        losses.append(loss.item())
    return model, losses


@pytest.mark.parametrize("optimizer_name", ["sgd", "adam"])
def test_three_steps_match_the_written_out_loop(optimizer_name):
    """Catches stale gradients (a missing zero_grad adds step 1's gradient to step 2's) and any
    change to what the loop does."""
    make = {"sgd": lambda m: torch.optim.SGD(m.parameters(), lr=0.01),
            "adam": make_optimizer}[optimizer_name]
    batch = tone_batch()
    reference, expected_losses = reference_steps(batch, 3, make)
    model = fresh_model()
    losses, _ = run_steps(model, make(model), batch, MultiScaleSpectralLoss(), 3)
    print(f"{optimizer_name}: losses {losses}, written-out loop {expected_losses}")
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-6)
    for got, want in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- scaler, fused Adam
@pytest.mark.parametrize("init_scale", [2.0 ** 10, 2.0 ** 16])
def test_gradscaler_at_a_power_of_two_scale_gives_identical_weights(init_scale):
    """Scaling the loss by 2^k and unscaling the gradients before the clip is exact in float32:
    three steps with and without the scaler give the same bits. Clipping the still-scaled
    gradients (norm x 2^k) would shrink every step 2^k-fold."""
    batch = tone_batch()
    plain = fresh_model()
    plain_losses, _ = run_steps(plain, make_optimizer(plain), batch,
                                MultiScaleSpectralLoss(), 3)
    scaled = fresh_model()
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    scaled_losses, _ = run_steps(scaled, make_optimizer(scaled), batch,
                                 MultiScaleSpectralLoss(), 3, scaler)
    assert scaler.get_scale() == init_scale  # no step was skipped
    assert scaled_losses == plain_losses
    assert all(torch.equal(a, b) for a, b in zip(scaled.parameters(), plain.parameters()))


def test_gradscaler_with_sgd_takes_a_step_of_norm_lr_times_clip():
    """With plain SGD the clip's size shows directly: the step's norm is lr x CLIP_GRAD_NORM
    with or without a scaler at 2^16 (clipping before unscaling gives lr x clip / 2^16)."""
    batch, lr = tone_batch(), 0.01
    norms = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)):
        model = fresh_model()
        before = weights(model)
        run_steps(model, torch.optim.SGD(model.parameters(), lr=lr), batch,
                  MultiScaleSpectralLoss(), 1, scaler)
        moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])
        norms.append(moved.double().norm().item())
    assert norms[0] == pytest.approx(lr * CLIP_GRAD_NORM, rel=1e-4)
    assert norms[1] == norms[0]


def test_fused_adam_with_the_scaler_matches_fused_adam_without():
    """The optimized notebook's CUDA path (fused Adam + GradScaler), here on the CPU kernel:
    the scaler hands the fused step its found-inf flag; three steps give weights equal to
    those without a scaler bit for bit. Against the unfused Adam: the same first step to float32
    rounding and the same losses to 1e-5 (later weights are not compared element by element:
    the biases feeding a LayerNorm have zero true gradient, so Adam's m / sqrt(v) turns the
    two kernels' different rounding into steps of +-lr)."""
    batch = tone_batch()
    results = {}
    scaler_at_2_12 = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    for name, fused, scaler in [("fused", True, None), ("fused+scaler", True, scaler_at_2_12),
                                ("unfused", False, None)]:
        model = fresh_model()
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, fused=fused)
        first, _ = run_steps(model, optimizer, batch, MultiScaleSpectralLoss(), 1, scaler)
        after_one = weights(model)
        losses, _ = run_steps(model, optimizer, batch, MultiScaleSpectralLoss(), 2, scaler)
        results[name] = (first + losses, after_one, weights(model))
    assert results["fused+scaler"][0] == results["fused"][0]
    for a, b in zip(results["fused+scaler"][2], results["fused"][2]):
        assert torch.equal(a, b)
    np.testing.assert_allclose(results["fused"][0], results["unfused"][0], rtol=1e-5)
    for a, b in zip(results["fused"][1], results["unfused"][1]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


# ----------------------------------------------------------------------------- cached target
def test_cached_target_loss_trains_exactly_like_the_plain_loss():
    """The optimized notebook's OptimizedMultiScaleSpectralLoss only caches the target's STFTs:
    same seed, same data -> the same loss curve (to 1e-5) and the same weights. A cached loss
    cut from the graph would leave only the L1 term's gradient."""
    batch = tone_batch()
    runs = {}
    for name in ("plain", "cached"):
        model = fresh_model()
        loss = MultiScaleSpectralLoss() if name == "plain" else \
            OptimizedMultiScaleSpectralLoss().precompute_target(batch["audio"], "cpu",
                                                                   batch["lengths"])
        totals, spectral = run_steps(model, make_optimizer(model), batch, loss, 4)
        runs[name] = (totals, spectral, weights(model))
    print("plain ", runs["plain"][0], "\ncached", runs["cached"][0])
    assert runs["plain"][0][-1] < 0.97 * runs["plain"][0][0]  # it is learning
    np.testing.assert_allclose(runs["cached"][0], runs["plain"][0], rtol=1e-5)
    np.testing.assert_allclose(runs["cached"][1], runs["plain"][1], rtol=1e-5)
    for a, b in zip(runs["cached"][2], runs["plain"][2]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)

def test_precomputed_harmonic_waves_give_the_same_audio_and_step():
    torch.manual_seed(0)
    model = DDSPModel(hidden_size=32)
    frames = 20
    f0 = torch.linspace(200, 900, frames).reshape(1, frames, 1).repeat(2, 1, 1)
    amplitudes = torch.rand(2, frames, model.n_harmonics)
    waves = harmonic_waves(f0, model.n_harmonics)
    assert waves.shape == (2, frames, HOP_LENGTH, model.n_harmonics)
    torch.testing.assert_close(harmonic_synth(f0, amplitudes, waves=waves),
                               harmonic_synth(f0, amplitudes), rtol=0, atol=0)
    batch = {"f0": f0, "loudness": torch.full((2, frames, 1), -20.0),
             "mfcc": torch.randn(2, frames, N_MFCC),
             "audio": torch.randn(2, frames * HOP_LENGTH) * 0.1,
             "lengths": torch.tensor([frames, frames - 3])}
    losses = []
    for with_waves in (False, True):
        torch.manual_seed(0)
        model = DDSPModel(hidden_size=32)
        step_batch = with_harmonic_waves(batch, model) if with_waves else batch
        optimizer, loss = make_optimizer(model), MultiScaleSpectralLoss()
        losses.append(torch.stack([training_step(model, optimizer, step_batch, loss)[0]
                                   for _ in range(2)]))
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)


def test_bfloat16_autocast_training_step_on_cpu():
    """A bfloat16 autocast step is the float32 step to bfloat16 accuracy: the model runs in
    bfloat16 (its output differs), but the losses are float32, within 2% of the float32
    step's, the weights stay float32, and the Adam update points the same way."""
    f0, loudness, mfcc = small_inputs(n_frames=30)
    t = torch.arange(30 * HOP) / SAMPLE_RATE
    batch = {"f0": f0, "loudness": loudness, "mfcc": mfcc,
             "audio": 0.3 * torch.sin(2 * torch.pi * f0[:, :1, 0] * t),
             "lengths": torch.tensor([30, 20])}
    results = {}
    for amp_dtype in (None, torch.bfloat16):
        torch.manual_seed(0)
        model = DDSPModel(hidden_size=64)
        optimizer = make_optimizer(model)
        before = torch.cat([p.detach().flatten() for p in model.parameters()])
        torch.manual_seed(1)
        loss, terms = training_step(model, optimizer, batch, MultiScaleSpectralLoss(),
                                    amp_dtype=amp_dtype)
        spectral = terms["spectral"]
        assert loss.dtype == spectral.dtype == torch.float32
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert parameters_finite(model)
        moved = torch.cat([p.detach().flatten() for p in model.parameters()]) - before
        results[amp_dtype] = (loss.item(), spectral.item(), moved)
    (loss32, spectral32, moved32), (loss16, spectral16, moved16) = results.values()
    print(f"float32 step: loss {loss32:.4f}; bfloat16 autocast: {loss16:.4f}")
    assert loss16 != loss32  # autocast did run the model in bfloat16
    assert loss16 == pytest.approx(loss32, rel=0.02)
    assert spectral16 == pytest.approx(spectral32, rel=0.02)
    assert loss16 - spectral16 == pytest.approx(loss32 - spectral32, rel=0.05)  # 0.1 x L1
    cosine = torch.nn.functional.cosine_similarity(moved16, moved32, dim=0).item()
    print(f"update direction: cosine {cosine:.3f}")
    assert cosine > 0.9


def test_make_optimizer_is_adam_unfused_on_cpu():
    model = DDSPModel(hidden_size=32)
    optimizer = make_optimizer(model, lr=3e-4)
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.defaults["lr"] == 3e-4 and not optimizer.defaults.get("fused")


def test_a_rooms_noise_taps_learn_at_their_own_rate_and_everything_else_at_lr():
    from grown_timbres.room_part import ROOM_NOISE_LR_SCALE
    model = DDSPModel(hidden_size=32, reverb=True)
    optimizer = make_optimizer(model, lr=3e-4)
    rest, noise = optimizer.param_groups
    assert rest["lr"] == 3e-4 and noise["lr"] == pytest.approx(3e-4 * ROOM_NOISE_LR_SCALE)
    assert len(noise["params"]) == 1 and noise["params"][0] is model.room_noise
    grouped = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each exactly once
    assert ROOM_NOISE_LR_SCALE > 1
    assert len(make_optimizer(DDSPModel(hidden_size=32)).param_groups) == 1

def test_examples_per_step_fill_the_memory_budget_up_to_the_cap(monkeypatch):
    """As many 4 s examples a step as the free memory holds at STEP_BYTES_PER_WAVE_VALUE per
    harmonic-wave value, at least one, at most the device's MAX_EXAMPLES_PER_STEP."""
    from grown_timbres.batching import EXAMPLE_FRAMES

    model = DDSPModel(hidden_size=16)
    per_example = (step_module.STEP_BYTES_PER_WAVE_VALUE * EXAMPLE_FRAMES * HOP_LENGTH *
                   model.n_harmonics)
    for budget, expected in [(0, 1), (3.5 * per_example, 3), (1000 * per_example, 16)]:
        monkeypatch.setattr(step_module, "free_memory_bytes", lambda device: int(budget))
        assert step_module.examples_per_step(model, EXAMPLE_FRAMES, "cpu") == expected


@pytest.mark.parametrize("lr, message", [(math.nan, "lr must be a finite number, not nan"),
                                         (0, "lr must be more than 0, not 0"),
                                         ("1e-3", r"lr must be a number, not '1e-3' \(str\)")])
def test_make_optimizer_refuses_a_bad_learning_rate(lr, message):
    with pytest.raises(ValueError, match=message):
        make_optimizer(DDSPModel(hidden_size=8), lr=lr)


@pytest.mark.parametrize("n_frames, message", [(0, "n_frames must be at least 1, not 0"),
                                               (2.5, "n_frames must be a whole number")])
def test_examples_per_step_refuses_a_bad_example_length(n_frames, message):
    with pytest.raises(ValueError, match=message):
        examples_per_step(DDSPModel(hidden_size=8), n_frames, "cpu")


def test_training_step_refuses_a_clip_norm_that_is_not_a_positive_number():
    model = fresh_model()
    optimizer = make_optimizer(model)
    with pytest.raises(ValueError, match="clip_grad_norm must be a finite number, not nan"):
        training_step(model, optimizer, tone_batch(), MultiScaleSpectralLoss(),
                      clip_grad_norm=math.nan)
