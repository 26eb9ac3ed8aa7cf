"""capture.py and the loop around it: in-place snapshots (what a captured graph needs), exact
skipped-step counts, refusals on CPU, and, on a CUDA machine, replayed steps equal to eager ones."""
import math
import warnings

import numpy as np
import pytest
import torch

from grown_timbres import capture, train
from grown_timbres.step import LEARNING_RATE, make_optimizer, step_runner, training_step
from grown_timbres.batching import batch_to_device, collate
from grown_timbres.config import HOP_LENGTH, N_MFCC, SAMPLE_RATE
from grown_timbres.loss import OptimizedMultiScaleSpectralLoss
from grown_timbres.model import DDSPModel

CUDA = torch.cuda.is_available()


def tone_batch(n_files=2, n_frames=24, device="cpu") -> dict:
    """Harmonic tones at 220 and 330 Hz with steady features, as batching.collate batches them
    (each file one training example)."""
    t = np.arange(n_frames * HOP_LENGTH) / SAMPLE_RATE
    generator = np.random.default_rng(0)
    features = []
    for i in range(n_files):
        f0 = 220.0 * 1.5 ** i
        features.append({
            "path": f"tone_{i}.wav", "f0": np.full(n_frames, f0, np.float32),
            "voiced": np.ones(n_frames, bool), "loudness": np.full(n_frames, -20.0, np.float32),
            "mfcc": np.repeat(generator.standard_normal((1, N_MFCC)).astype(np.float32),
                              n_frames, axis=0),
            "audio": (0.3 * np.sin(2 * np.pi * f0 * t) +
                      0.1 * np.sin(4 * np.pi * f0 * t)).astype(np.float32)})
    return batch_to_device(collate(features), device)


def setup(device="cpu", scaler=None, capturable=False, fused=True):
    torch.manual_seed(0)
    batch = tone_batch(device=device)
    model = DDSPModel(hidden_size=32).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, fused=fused,
                                 capturable=capturable)
    loss = OptimizedMultiScaleSpectralLoss().precompute_target(batch["audio"], device,
                                                               batch["lengths"])
    return model, optimizer, loss, batch


def capture_warnings(caught) -> list:
    """The capture's own warnings (torch's deprecation notices are none of this test's)."""
    return [str(w.message) for w in caught if "CUDA graph capture" in str(w.message)]


def optimizer_tensors(optimizer):
    return [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]


def test_restore_is_in_place_and_replays_the_same_curve():
    """A graph holds tensor addresses: restore writes into the same storage, and training from
    the restored state repeats the losses bit for bit (weights, Adam, scaler and noise)."""
    model, optimizer, loss, batch = setup()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=2)
    step = lambda: training_step(model, optimizer, batch, loss, scaler)[0]  # noqa: E731
    step()  # Adam's state exists from here on
    state = capture.TrainingState(model, optimizer, scaler).save()
    pointers = [t.data_ptr() for t in list(model.parameters()) + optimizer_tensors(optimizer)]
    first = torch.stack([step() for _ in range(4)])
    scale_after = scaler.get_scale()
    state.restore()
    assert [t.data_ptr() for t in list(model.parameters()) + optimizer_tensors(optimizer)] \
        == pointers
    assert scaler.get_scale() == 2.0 ** 10 != scale_after  # the scale grew, and was put back
    again = torch.stack([step() for _ in range(4)])
    assert torch.equal(first, again)


def test_restore_to_before_the_first_step_resets_adam():
    """A snapshot taken before Adam made its state restores to a fresh optimizer's: zeros."""
    model, optimizer, loss, batch = setup()
    state = capture.TrainingState(model, optimizer).save()
    first = [training_step(model, optimizer, batch, loss)[0] for _ in range(3)]
    state.restore()
    assert all(float(t.abs().max()) == 0 for t in optimizer_tensors(optimizer))
    again = [training_step(model, optimizer, batch, loss)[0] for _ in range(3)]
    assert torch.equal(torch.stack(first), torch.stack(again))


def test_skipped_steps_are_counted_exactly():
    """Steps the GradScaler skips are counted from Adam's own step count, exact even when the
    scale grows and shrinks inside one sync window (growth_interval 1 makes it do both)."""
    def make_scaler():
        return torch.amp.GradScaler("cpu", init_scale=2.0 ** 115, growth_interval=1)

    model, optimizer, loss, batch = setup()
    scaler = make_scaler()
    expected, scale = 0, scaler.get_scale()
    for _ in range(12):
        training_step(model, optimizer, batch, loss, scaler)
        expected += scaler.get_scale() < scale  # a skip halves the scale, a good step doubles it
        scale = scaler.get_scale()
    assert 4 <= expected < 12

    model, optimizer, loss, batch = setup()
    history = train.train(model, optimizer, batch, loss, 12, scaler=make_scaler(),
                          sync_every=12, progress=False)
    assert history["skipped_steps"] == expected


def test_capture_is_refused_on_cpu():
    model, optimizer, loss, batch = setup()
    with pytest.raises(ValueError, match="CUDA"):
        train.train(model, optimizer, batch, loss, 2, capture=True, progress=False)
    with pytest.raises(ValueError, match="CUDA"):
        make_optimizer(model, capturable=True)
    assert "CUDA" in capture.capture_problem(optimizer, "cpu")


@pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA device")
def test_capture_problem_names_what_to_change():
    model, optimizer, loss, batch = setup("cuda")
    assert "capturable" in capture.capture_problem(optimizer, "cuda")
    model, optimizer, loss, batch = setup("cuda", capturable=True, fused=False)
    scaler = torch.amp.GradScaler("cuda")
    assert "fused" in capture.capture_problem(optimizer, "cuda", scaler)


@pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("amp_dtype", [None, torch.float16, torch.bfloat16], ids=str)
def test_captured_training_follows_the_eager_curve(amp_dtype):
    """train(capture=True) replays a graph; its losses stay within 1e-3 of eager training's
    from the same seed, and the skipped-step count and the state agree."""
    curves, skipped = [], []
    for capture_step in (False, True):
        model, optimizer, loss, batch = setup("cuda", capturable=True)
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = train.train(model, optimizer, batch, loss, 30, scaler=scaler,
                                  amp_dtype=amp_dtype, capture=capture_step, progress=False,
                                  precompute_waves=True)
        assert not capture_warnings(caught)  # a fallback warns
        assert history["status"] == "finished"
        if capture_step:
            assert history["capture"] == "captured"
        curves.append(np.array(history["loss"]))
        skipped.append(history["skipped_steps"])
    assert np.allclose(curves[1], curves[0], rtol=1e-3 if amp_dtype is None else 2e-2)
    assert skipped[0] == skipped[1]
    assert curves[1][-1] < 0.9 * curves[1][0]


@pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA device")
def test_a_captured_step_reads_each_steps_examples(monkeypatch):
    """Examples that change every step (2 of 4 examples a step): the captured
    graph reads the rows StepBatches writes into its batch each step, so its losses follow
    eager training's step for step (a graph bound to the first step's rows would drift), with
    the targets' spectra computed every step."""
    monkeypatch.setattr("grown_timbres.batching.EXAMPLE_FRAMES", 16)
    monkeypatch.setattr("grown_timbres.batching.EXAMPLE_HOP_FRAMES", 8)
    curves = []
    for capture_step in (False, "always"):  # True leaves step batches eager (the default)
        model, optimizer, loss, batch = setup("cuda", capturable=True)
        assert len(batch["examples"]["starts"]) == 4  # two windows of each 24-frame tone
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = train.train(model, optimizer, batch, loss, 5, batch_size=2,
                                  capture=capture_step, progress=False)
        assert not capture_warnings(caught)
        assert history["steps_per_epoch"] == 2 and history["cached_targets"].startswith("off")
        if capture_step:
            assert history["capture"] == "captured"
        curves.append(np.array(history["loss"]))
    assert len(curves[0]) == 10
    assert np.allclose(curves[1], curves[0], rtol=1e-3)


def test_step_batches_are_not_captured_by_default_until_checked_on_a_gpu():
    """Until scripts/gpu_check.py passes on a GPU, capture=True captures a step that is
    the whole epoch (the bundled tones) but leaves step batches (a long take) eager, saying
    why; "always" captures both (the check itself needs that)."""
    assert not capture.STEP_BATCH_CAPTURE_CHECKED
    assert capture.default_capture_off(True, 1) is None
    reason = capture.default_capture_off(True, 4)
    assert reason.startswith("eager") and "4 steps an epoch" in reason and "gpu_check" in reason
    assert capture.default_capture_off("always", 4) is None
    with pytest.raises(ValueError, match="always"):
        capture.default_capture_off("sometimes", 1)


@pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA device")
def test_step_batches_train_eagerly_with_the_default_capture(monkeypatch):
    monkeypatch.setattr("grown_timbres.batching.EXAMPLE_FRAMES", 16)
    monkeypatch.setattr("grown_timbres.batching.EXAMPLE_HOP_FRAMES", 8)
    model, optimizer, loss, batch = setup("cuda", capturable=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = train.train(model, optimizer, batch, loss, 2, batch_size=2, capture=True,
                              progress=False)
    assert not capture_warnings(caught)  # the default, not a fallback: no warning
    assert history["status"] == "finished" and history["capture"].startswith("eager")


@pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA device")
def test_a_capture_that_cannot_run_falls_back_with_one_warning():
    model, optimizer, loss, batch = setup("cuda", capturable=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = train.train(model, optimizer, batch, loss, 5, capture=True, progress=False)
    assert len(capture_warnings(caught)) == 1 and "capturable" in capture_warnings(caught)[0]
    assert history["status"] == "finished" and "capturable" in history["capture"]
    assert math.isfinite(history["loss"][-1])


# ------------------------------------------- the replay-vs-eager check, and its fallback (CPU)
def checked_state():
    """(the eager step train() captures -> [total, *terms], its TrainingState saved before
    the first step)."""
    model, optimizer, loss, batch = setup()
    runner, _ = step_runner(model, optimizer, batch, loss)
    return runner.step, runner.state.save()


def parameters_of(state):
    return [t.detach().clone() for t in state.tensors]


@pytest.mark.parametrize("drift, agrees", [(0.0, True), (5e-4, True), (2e-3, False),
                                           (-0.5, False)])
def test_the_replay_check_compares_the_replay_with_the_eager_steps(drift, agrees):
    """A replay whose curve is the eager one off by `drift` (relative) from its second step on
    is accepted within CAPTURE_RTOL (1e-3) and refused beyond it, naming the difference; the
    state the check started from is put back either way."""
    step, state = checked_state()
    start = parameters_of(state)
    calls = []

    def replay():  # the eager step, its curve bent after the first step
        calls.append(1)
        return step() * (1.0 + drift * (len(calls) > 1))

    problem = capture.replay_problem(replay, step, state)
    assert (problem is None) == agrees, problem
    if not agrees:
        assert problem.startswith("replayed losses differ from eager ones by ")
        assert f"{abs(drift):.2e} relative" in problem
    assert len(calls) == capture.CAPTURE_CHECK_STEPS
    assert all(torch.equal(a, b) for a, b in zip(parameters_of(state), start))


def test_the_replay_check_refuses_a_non_finite_curve():
    step, state = checked_state()
    problem = capture.replay_problem(lambda: step() * math.nan, step, state)
    assert problem == "the check steps gave a non-finite loss"


class BentGraph:
    """Stands in for a CUDA graph whose replay runs the eager step but ends 1% off; like a
    real recording, making it runs one step (its terms are the static output)."""

    def __init__(self, step):
        self.step, self.terms = step, step().detach().clone()

    def replay(self):
        self.terms.copy_(self.step().detach() * 1.01)


def test_a_replay_that_disagrees_falls_back_to_eager_with_one_warning(monkeypatch):
    """What capture() does when the check fails, on a CPU: the recording is stood in for by a
    graph whose replay is 1% off. One warning says why; the runner steps eagerly from the
    state training started from (the check's steps are undone)."""
    step, state = checked_state()
    start = parameters_of(state)

    def record(self, warmup_steps):
        graph = BentGraph(self.step)
        return graph, graph.terms

    monkeypatch.setattr(capture, "capture_problem", lambda *args: None)
    monkeypatch.setattr(capture.CapturedStep, "_record", record)
    runner = capture.CapturedStep(step, state)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problem = runner.capture()
    assert problem.startswith("replayed losses differ from eager ones by 1.00e-02 relative")
    assert capture_warnings(caught) == [
        f"CUDA graph capture is off, training runs eagerly: {problem}"]
    assert not runner.captured
    assert all(torch.equal(a, b) for a, b in zip(parameters_of(state), start))
    first = runner()
    state.restore()
    assert torch.equal(first, step().detach())  # the runner's step is the eager step


@pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA device")
def test_a_perturbed_captured_step_falls_back_to_eager(monkeypatch):
    """A real capture whose graph no longer matches the eager step (the step scales its loss
    terms by a Python number, fixed in the graph when it was recorded and changed after)
    fails the check: training falls back to eager with one warning."""
    model, optimizer, loss, batch = setup("cuda", capturable=True)
    scale = [1.0]

    def step():
        return training_step(model, optimizer, batch, loss)[0] * scale[0]

    record = capture.CapturedStep._record

    def record_then_perturb(self, warmup_steps):
        recorded = record(self, warmup_steps)
        scale[0] = 1.05  # the eager step changes; the graph keeps 1.0
        return recorded

    monkeypatch.setattr(capture.CapturedStep, "_record", record_then_perturb)
    runner = capture.CapturedStep(step, capture.TrainingState(model, optimizer))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problem = runner.capture()
    assert problem is not None and problem.startswith("replayed losses differ from eager ones")
    assert len(capture_warnings(caught)) == 1 and not runner.captured
    assert torch.isfinite(runner()).all()
