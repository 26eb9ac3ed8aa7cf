"""grown_timbres/loss.py: the multi-scale spectral loss, plain and cached (one call for both),
masking of padding, float32 under autocast, gradients, and training_loss's named terms."""
import pytest
import torch

from grown_timbres.config import FFT_SIZES, HOP_LENGTH, SAMPLE_RATE
from grown_timbres.loss import (TIME_LOSS_WEIGHT, MultiScaleSpectralLoss,
                                OptimizedMultiScaleSpectralLoss, magnitude_spectrogram,
                                sample_mask, time_domain_l1, training_loss)

HOP = HOP_LENGTH


def signals(batch=2, n_frames=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n_frames * HOP) / SAMPLE_RATE
    f = torch.tensor([220.0, 330.0, 440.0, 550.0])[:batch, None]
    target = 0.5 * torch.sin(2 * torch.pi * f * t) + 0.05 * torch.randn(batch, len(t), generator=g)
    pred = 0.4 * torch.sin(2 * torch.pi * 1.01 * f * t) + 0.1 * torch.randn(batch, len(t),
                                                                             generator=g)
    return pred, target


def optimized(target, lengths=None):
    """The cached-target loss for `target`, called as the plain one is: optimized(target)(pred)
    is loss(pred, target, lengths) after precompute_target(target, "cpu", lengths)."""
    loss = OptimizedMultiScaleSpectralLoss().precompute_target(target, "cpu", lengths)
    return lambda pred: loss(pred, target, lengths)


def test_optimized_equals_plain_loss():
    pred, target = signals()
    plain = MultiScaleSpectralLoss()(pred, target)
    cached = optimized(target)(pred)
    assert plain.dtype == cached.dtype == torch.float32 and plain.ndim == 0
    assert plain.item() > 0
    torch.testing.assert_close(cached, plain, rtol=1e-5, atol=0)


def test_optimized_equals_plain_loss_with_lengths():
    pred, target = signals()
    lengths = torch.tensor([60, 37])
    plain = MultiScaleSpectralLoss()(pred, target, lengths)
    torch.testing.assert_close(optimized(target, lengths)(pred), plain, rtol=1e-5, atol=0)
    assert plain.item() != pytest.approx(MultiScaleSpectralLoss()(pred, target).item())


def test_loss_is_zero_for_identical_inputs():
    _, target = signals()
    assert MultiScaleSpectralLoss()(target, target.clone()).item() == 0.0
    assert optimized(target)(target.clone()).item() == 0.0
    assert MultiScaleSpectralLoss()(target, target, torch.tensor([60, 20])).item() == 0.0


@pytest.mark.parametrize("extra_frames", [1, 7, 40])
def test_padding_with_true_lengths_leaves_loss_unchanged(extra_frames):
    pred, target = signals(n_frames=50)
    reference = MultiScaleSpectralLoss()(pred, target)
    n = pred.shape[-1]
    padded_target = torch.cat([target, torch.zeros(2, extra_frames * HOP)], dim=-1)
    garbage = torch.randn(2, extra_frames * HOP, generator=torch.Generator().manual_seed(9)) * 3
    padded_pred = torch.cat([pred, garbage], dim=-1)  # padded region of pred: anything at all
    lengths = torch.full((2,), n // HOP)
    padded = MultiScaleSpectralLoss()(padded_pred, padded_target, lengths)
    torch.testing.assert_close(padded, reference, rtol=1e-5, atol=0)
    torch.testing.assert_close(optimized(padded_target, lengths)(padded_pred), reference,
                               rtol=1e-5, atol=0)
    torch.testing.assert_close(MultiScaleSpectralLoss()(pred, target, lengths), reference,
                               rtol=1e-5, atol=0)


def test_batch_of_different_lengths_weighs_files_by_frames():
    """A padded batch equals the frame-weighted mean of each file's own (unpadded) loss, per
    FFT size: padding neither adds frames nor changes the valid ones."""
    pred, target = signals(n_frames=64)
    lengths = [64, 23]
    total = 0.0
    for n_fft in FFT_SIZES:
        batch_loss = MultiScaleSpectralLoss((n_fft,))(pred, target, torch.tensor(lengths))
        sums, counts = 0.0, 0
        for i, n in enumerate(lengths):
            p, t = pred[i: i + 1, : n * HOP], target[i: i + 1, : n * HOP]
            frames = magnitude_spectrogram(t, n_fft).shape[-1]
            sums += MultiScaleSpectralLoss((n_fft,))(p, t).item() * frames
            counts += frames
        assert batch_loss.item() == pytest.approx(sums / counts, rel=1e-5), n_fft
        total += sums / counts
    full = MultiScaleSpectralLoss()(pred, target, torch.tensor(lengths))
    assert full.item() == pytest.approx(total / len(FFT_SIZES), rel=1e-5)


def test_loss_stays_float32_under_bfloat16_autocast():
    pred, target = signals()
    reference = MultiScaleSpectralLoss()(pred, target)
    cached = optimized(target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = MultiScaleSpectralLoss()(pred, target)
        from_bf16 = MultiScaleSpectralLoss()(pred.bfloat16(), target)
        fast = cached(pred.bfloat16())
        with_lengths = MultiScaleSpectralLoss()(pred, target, torch.tensor([60, 30]))
    for value in (plain, from_bf16, fast, with_lengths):
        assert value.dtype == torch.float32 and torch.isfinite(value)
    torch.testing.assert_close(plain, reference, rtol=1e-6, atol=0)
    torch.testing.assert_close(fast, from_bf16, rtol=1e-5, atol=0)
    assert from_bf16.item() == pytest.approx(reference.item(), rel=2e-2)


def test_gradient_finite_with_exact_zeros():
    _, target = signals()
    lengths = torch.tensor([60, 30])
    padded_target = target * sample_mask(lengths, target.shape[-1], HOP, "cpu")
    for pred in (torch.zeros_like(target), padded_target.clone()):  # all zero / zero padding
        pred.requires_grad_(True)
        loss = MultiScaleSpectralLoss()(pred, padded_target, lengths)
        loss = loss + time_domain_l1(pred, padded_target, lengths, HOP)
        loss.backward()
        assert torch.isfinite(loss) and torch.all(torch.isfinite(pred.grad))
    pred = torch.zeros_like(target, requires_grad=True)
    optimized(padded_target, lengths)(pred).backward()
    assert torch.all(torch.isfinite(pred.grad))


@pytest.mark.parametrize("cached", [False, True], ids=["plain", "cached"])
def test_padding_gets_no_gradient_from_a_prediction_that_sounds_there(cached):
    """Padding gets no gradient, checked where it could get one: a prediction that sounds
    everywhere, padding included (at a zero prediction every gradient is zero anyway). The
    valid samples do get one, up to the file's end, whose STFT frames reach into the padding."""
    pred, target = signals()
    lengths = torch.tensor([60, 30])
    pred.requires_grad_(True)
    spectral = optimized(target, lengths) if cached else (
        lambda p: MultiScaleSpectralLoss()(p, target, lengths))
    (spectral(pred) + time_domain_l1(pred, target, lengths, HOP)).backward()
    end = 30 * HOP
    assert torch.all(pred.grad[1, end:] == 0)
    assert pred.grad[1, end - HOP: end].abs().max() > 0
    assert torch.count_nonzero(pred.grad[0]) > 0.99 * pred.shape[1]


def test_cached_loss_takes_the_plain_call_and_caches_each_target_once():
    """Changed on purpose (issue 10): the cached-target loss took the prediction alone and
    raised before precompute_target. It now takes the plain loss's call (pred, target,
    lengths), computes a target's spectra at its first call, and reuses them while the same
    target comes back; another target is computed (not silently ignored)."""
    pred, target = signals()
    lengths = torch.tensor([60, 37])
    loss = OptimizedMultiScaleSpectralLoss()
    first = loss(pred, target, lengths)
    spectra = loss.cached_spectra
    torch.testing.assert_close(first, MultiScaleSpectralLoss()(pred, target, lengths), rtol=1e-5,
                               atol=0)
    loss(0.5 * pred, target, lengths)
    assert loss.cached_spectra is spectra
    other = target.flip(0)
    torch.testing.assert_close(loss(pred, other, lengths),
                               MultiScaleSpectralLoss()(pred, other, lengths), rtol=1e-5, atol=0)
    assert loss.cached_spectra is not spectra


def test_training_loss_is_the_sum_of_its_named_terms():
    pred, target = signals()
    lengths = torch.tensor([60, 37])
    total, terms = training_loss(MultiScaleSpectralLoss(), pred, target, lengths)
    assert list(terms) == ["spectral", "time_l1"]
    torch.testing.assert_close(terms["spectral"], MultiScaleSpectralLoss()(pred, target, lengths))
    torch.testing.assert_close(terms["time_l1"],
                               TIME_LOSS_WEIGHT * time_domain_l1(pred, target, lengths, HOP))
    torch.testing.assert_close(total, terms["spectral"] + terms["time_l1"])
    cached_total, _ = training_loss(OptimizedMultiScaleSpectralLoss(), pred, target, lengths)
    torch.testing.assert_close(cached_total, total, rtol=1e-5, atol=0)


def test_time_domain_l1_masks_padding():
    pred, target = signals()
    lengths = torch.tensor([60, 10])
    expected = torch.cat([(pred[0] - target[0]).abs(), (pred[1, : 10 * HOP]
                                                         - target[1, : 10 * HOP]).abs()]).mean()
    torch.testing.assert_close(time_domain_l1(pred, target, lengths, HOP), expected)
    torch.testing.assert_close(time_domain_l1(pred, target), (pred - target).abs().mean())


def test_the_losss_own_hop_length_reaches_both_masks():
    """Lengths count frames of the loss's hop_length: 40 frames of 128 samples are the same
    valid samples as 20 frames of 256, for the spectral term (plain and cached) and the L1."""
    pred, target = signals()
    half_hop, frames = HOP // 2, torch.tensor([60, 40])
    for kind in (MultiScaleSpectralLoss, OptimizedMultiScaleSpectralLoss):
        total, terms = training_loss(kind(hop_length=half_hop), pred, target, frames)
        reference_total, reference = training_loss(kind(), pred, target, frames // 2)
        torch.testing.assert_close(terms["spectral"], reference["spectral"], rtol=1e-6, atol=0)
        torch.testing.assert_close(terms["time_l1"], reference["time_l1"], rtol=1e-6, atol=0)
        torch.testing.assert_close(total, reference_total, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="lengths in frames need the frames' hop_length"):
        time_domain_l1(pred, target, frames)
    with pytest.raises(ValueError, match="hop_length must be at least 1, not 0"):
        MultiScaleSpectralLoss(hop_length=0)


def test_training_loss_passes_on_the_gradient_of_every_term():
    """The total's gradient is that of spectral + 0.1 x L1 written out, for the plain and the
    cached loss: a term cut from the graph would leave only the other's gradient."""
    pred, target = signals()
    lengths = torch.tensor([60, 37])
    written_out = pred.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(
        MultiScaleSpectralLoss()(written_out, target, lengths)
        + TIME_LOSS_WEIGHT * time_domain_l1(written_out, target, lengths, HOP), written_out)
    for loss in (MultiScaleSpectralLoss(), OptimizedMultiScaleSpectralLoss()):
        trained = pred.clone().requires_grad_(True)
        (got,) = torch.autograd.grad(training_loss(loss, trained, target, lengths)[0], trained)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * want.abs().max().item())
