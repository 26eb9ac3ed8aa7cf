"""training_step and train: what one step computes (the loss it returns, the gradient it
follows, the clip), GradScaler and fused Adam changing nothing at a power-of-two scale, the
cached-target loss training exactly like the plain one, and a resumed run (scaler included)
continuing bit for bit. Small models on a 24-frame synthetic batch: each test takes ~1 s."""
import math

import numpy as np
import pytest
import torch

import ddsp_helpers as dh

FRAMES = 24
HOP = dh.HOP_LENGTH
SEED = 7  # the noise generator's seed before every step: runs compared here draw the same noise


def tone_batch():
    """Two files, the second 4 frames shorter (padding is masked): a 220 Hz tone with its
    octave, and the same at half level."""
    g = torch.Generator().manual_seed(1)
    t = torch.arange(FRAMES * HOP) / dh.SAMPLE_RATE
    tone = 0.3 * torch.sin(2 * math.pi * 220 * t) + 0.1 * torch.sin(2 * math.pi * 440 * t)
    return {"f0": torch.full((2, FRAMES, 1), 220.0), "loudness": torch.full((2, FRAMES, 1), -20.0),
            "mfcc": torch.randn(2, FRAMES, dh.N_MFCC, generator=g),
            "audio": torch.stack([tone, 0.5 * tone]), "lengths": torch.tensor([FRAMES, FRAMES - 4])}


def fresh_model(seed=0, hidden_size=32):
    torch.manual_seed(seed)
    return dh.DDSPModel(hidden_size=hidden_size)


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
        total, spec = dh.training_step(model, optimizer, batch, loss, scaler)
        totals.append(total.item())
        spectral.append(spec.item())
    return totals, spectral


# ----------------------------------------------------------------------------- the loss
def test_returned_loss_is_spectral_plus_a_tenth_of_the_time_domain_l1():
    """The seed's loss: multi-scale spectral + 0.1 x mean |pred - target| in time (valid
    samples only). The terms are computed here from the same prediction."""
    assert dh.TIME_LOSS_WEIGHT == 0.1
    batch = tone_batch()
    model = fresh_model()
    torch.manual_seed(SEED)
    with torch.no_grad():
        pred, _, _ = model(batch["f0"], batch["loudness"], batch["mfcc"])
    spectral = dh.MultiScaleSpectralLoss()(pred, batch["audio"], batch["lengths"]).item()
    l1 = masked_l1(pred, batch["audio"], batch["lengths"]).item()
    torch.manual_seed(SEED)
    total, returned_spectral = dh.training_step(model, torch.optim.SGD(model.parameters(), lr=0.0),
                                                batch, dh.MultiScaleSpectralLoss())
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
    loss = (dh.MultiScaleSpectralLoss()(pred, batch["audio"], batch["lengths"])
            + 0.1 * masked_l1(pred, batch["audio"], batch["lengths"]))
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
    assert norm > 3 * dh.CLIP_GRAD_NORM  # the clip is active: its order and size matter
    expected = [-lr * g * (dh.CLIP_GRAD_NORM / norm) for g in grads]

    model = fresh_model()
    before = weights(model)
    torch.manual_seed(SEED)
    dh.training_step(model, torch.optim.SGD(model.parameters(), lr=lr), batch,
                     dh.MultiScaleSpectralLoss())
    moved = [after.detach() - b for after, b in zip(model.parameters(), before)]
    moved_norm = torch.sqrt(sum((m.double() ** 2).sum() for m in moved)).item()
    print(f"gradient norm {norm:.3f}; step norm {moved_norm:.6f} (lr x clip = {lr:.6f})")
    assert moved_norm == pytest.approx(lr * dh.CLIP_GRAD_NORM, rel=1e-4)
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
    spectral_loss = dh.MultiScaleSpectralLoss()
    losses = []
    for step in range(n_steps):
        torch.manual_seed(SEED + step)
        optimizer.zero_grad()
        pred, _, _ = model(batch["f0"], batch["loudness"], batch["mfcc"])
        loss = (spectral_loss(pred, batch["audio"], batch["lengths"])
                + 0.1 * masked_l1(pred, batch["audio"], batch["lengths"]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), dh.CLIP_GRAD_NORM)
        optimizer.step()
        losses.append(loss.item())
    return model, losses


@pytest.mark.parametrize("optimizer_name", ["sgd", "adam"])
def test_three_steps_match_the_written_out_loop(optimizer_name):
    """Catches stale gradients (a missing zero_grad adds step 1's gradient to step 2's) and any
    change to what the loop does."""
    make = {"sgd": lambda m: torch.optim.SGD(m.parameters(), lr=0.01),
            "adam": dh.make_optimizer}[optimizer_name]
    batch = tone_batch()
    reference, expected_losses = reference_steps(batch, 3, make)
    model = fresh_model()
    losses, _ = run_steps(model, make(model), batch, dh.MultiScaleSpectralLoss(), 3)
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
    plain_losses, _ = run_steps(plain, dh.make_optimizer(plain), batch,
                                dh.MultiScaleSpectralLoss(), 3)
    scaled = fresh_model()
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    scaled_losses, _ = run_steps(scaled, dh.make_optimizer(scaled), batch,
                                 dh.MultiScaleSpectralLoss(), 3, scaler)
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
                  dh.MultiScaleSpectralLoss(), 1, scaler)
        moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])
        norms.append(moved.double().norm().item())
    assert norms[0] == pytest.approx(lr * dh.CLIP_GRAD_NORM, rel=1e-4)
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
        optimizer = torch.optim.Adam(model.parameters(), lr=dh.LEARNING_RATE, fused=fused)
        first, _ = run_steps(model, optimizer, batch, dh.MultiScaleSpectralLoss(), 1, scaler)
        after_one = weights(model)
        losses, _ = run_steps(model, optimizer, batch, dh.MultiScaleSpectralLoss(), 2, scaler)
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
        loss = dh.MultiScaleSpectralLoss() if name == "plain" else \
            dh.OptimizedMultiScaleSpectralLoss().precompute_target(batch["audio"], "cpu",
                                                                   batch["lengths"])
        totals, spectral = run_steps(model, dh.make_optimizer(model), batch, loss, 4)
        runs[name] = (totals, spectral, weights(model))
    print("plain ", runs["plain"][0], "\ncached", runs["cached"][0])
    assert runs["plain"][0][-1] < 0.97 * runs["plain"][0][0]  # it is learning
    np.testing.assert_allclose(runs["cached"][0], runs["plain"][0], rtol=1e-5)
    np.testing.assert_allclose(runs["cached"][1], runs["plain"][1], rtol=1e-5)
    for a, b in zip(runs["cached"][2], runs["plain"][2]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- resume
def test_resume_restores_the_scaler_and_continues_bit_for_bit(tmp_path):
    """train with a GradScaler that grows (growth_interval 2: 2^10 -> 2^12 after 5 steps,
    growth tracker 1), checkpoint, resume into a fresh model, optimizer and a default scaler:
    the scaler's scale, growth tracker and settings come back, and 3 more epochs equal an
    uninterrupted 8-epoch run exactly (losses, weights, scaler)."""
    batch = tone_batch()

    def new_scaler():
        return torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=2)

    straight_model = fresh_model()
    straight_scaler = new_scaler()
    straight = dh.train(straight_model, dh.make_optimizer(straight_model), batch,
                        dh.MultiScaleSpectralLoss(), 8, scaler=straight_scaler, progress=False)

    model = fresh_model()
    scaler = new_scaler()
    dh.train(model, dh.make_optimizer(model), batch, dh.MultiScaleSpectralLoss(), 5,
             scaler=scaler, progress=False, checkpoint_path=tmp_path / "ck.pt")
    saved_state = scaler.state_dict()
    assert saved_state["scale"] == 2.0 ** 12 and saved_state["_growth_tracker"] == 1

    resumed_model = fresh_model(seed=123)  # other weights: the checkpoint must replace them
    resumed_optimizer = dh.make_optimizer(resumed_model)
    resumed_scaler = torch.amp.GradScaler("cpu")  # defaults: 2^16, growth every 2000 steps
    history = dh.resume_training(tmp_path / "ck.pt", resumed_model, resumed_optimizer,
                                 resumed_scaler)
    assert resumed_scaler.state_dict() == saved_state
    assert resumed_scaler.get_scale() == 2.0 ** 12
    history = dh.train(resumed_model, resumed_optimizer, batch, dh.MultiScaleSpectralLoss(), 3,
                       scaler=resumed_scaler, progress=False, history=history)
    assert history["loss"] == straight["loss"] and len(history["loss"]) == 8
    assert history["skipped_steps"] == straight["skipped_steps"] == 0
    assert resumed_scaler.state_dict() == straight_scaler.state_dict()
    assert resumed_scaler.get_scale() == 2.0 ** 14
    assert all(torch.equal(a, b) for a, b in zip(resumed_model.parameters(),
                                                  straight_model.parameters()))
