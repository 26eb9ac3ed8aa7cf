"""The training state (saved and restored in place, checked, and poisoned by the NaN test
hook), and one training step recorded as a CUDA graph and replayed every step.

A DDSP step launches about 1,400 small kernels (the cuDNN GRU alone several per frame). Launched
one by one from Python, the GPU waits on the CPU for most of the step, so batching, mixed
precision and compilation barely move it. During training the batch and the cached target
spectra never change: the case CUDA graphs are made for. The whole step (forward, losses,
backward, unscale, clip, optimizer, scaler update) is recorded once and replayed with one launch.

What capture needs, and where it is arranged:
- a capturable optimizer: Adam(fused=True, capturable=True), its step count on the GPU
  (`make_optimizer(model, capturable=True)`); a GradScaler then skips non-finite steps and
  updates its scale on the GPU too, with no host sync (fused Adam reads `found_inf` itself);
- autocast without its weight-cast cache (`training_step` always passes cache_enabled=False);
- a few eager warm-up steps on a side stream (lazy optimizer state, cuDNN and cuBLAS workspaces,
  and compilation when the model was compiled);
- gradients set to None before capture, so backward allocates them in the graph's memory pool;
- outputs read from the graph's static tensors after each replay.
A captured step is checked against eager steps from the same state before it is used
(replay_problem); any failure leaves training on the eager step with one message saying why.
"""
from __future__ import annotations

import math
import warnings

import torch

CAPTURE_WARMUP_STEPS = 3
CAPTURE_CHECK_STEPS = 3
CAPTURE_RTOL = 1e-3  # replayed vs eager losses from the same state
# Step batches (a long take: several steps an epoch, each step's examples written into the
# captured graph's tensors) are captured by train(capture=True) only once scripts/gpu_check.py
# has passed on a GPU (its long_take and room parts). On an H200 (BENCHMARKS.md, 2026-12-04) the
# long take passed, but the room model's captured curve left the spread of two eager runs
# (7.4e-2 against 3.3e-2) in one of two calls, so they stay eager by default.
# train(capture="always") captures them anyway (gpu_check does).
STEP_BATCH_CAPTURE_CHECKED = False


class TrainingState:
    """An in-place snapshot of what a training step changes: parameters and buffers, optimizer
    state, GradScaler scale and growth tracker, and the random streams.

    restore() writes back into the same tensors (never replaces them), so a captured graph,
    which holds their addresses, stays valid. Optimizer state that did not exist yet when the
    snapshot was taken is reset to Adam's initial values (zeros), which is what a fresh state
    would be."""

    def __init__(self, model, optimizer, scaler=None):
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.tensors = list(model.parameters()) + list(model.buffers())
        self.saved = None

    def _optimizer_tensors(self):
        return [value for state in self.optimizer.state.values() for value in state.values()
                if torch.is_tensor(value)]

    @torch.no_grad()
    def save(self):
        self.saved = {
            "model": [t.detach().clone() for t in self.tensors],
            "optimizer": [t.clone() for t in self._optimizer_tensors()],
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "cpu_rng": torch.get_rng_state(),
            "cuda_rng": [torch.cuda.get_rng_state(d) for d in self._cuda_devices()],
        }
        return self

    def _cuda_devices(self):
        return sorted({t.device for t in self.tensors if t.device.type == "cuda"},
                      key=str)

    @torch.no_grad()
    def restore(self):
        saved = self.saved
        for target, value in zip(self.tensors, saved["model"]):
            target.copy_(value)
        current = self._optimizer_tensors()
        if len(current) == len(saved["optimizer"]):
            for target, value in zip(current, saved["optimizer"]):
                target.copy_(value)
        elif not saved["optimizer"]:
            for target in current:
                target.zero_()
        else:
            raise RuntimeError("the optimizer's state changed shape since the snapshot")
        if self.scaler is not None:
            self.scaler.load_state_dict(saved["scaler"])  # fills its tensors in place
        torch.set_rng_state(saved["cpu_rng"])
        for device, state in zip(self._cuda_devices(), saved["cuda_rng"]):
            torch.cuda.set_rng_state(state, device)


def parameters_finite(model) -> bool:
    norms = torch.stack([p.detach().float().norm() for p in model.parameters()])
    return bool(torch.isfinite(norms).all())


def optimizer_steps(optimizer) -> int:
    """Updates the optimizer has applied. Adam counts them in its state; a step a GradScaler
    skipped (non-finite gradients) is not counted, fused or not, captured or not."""
    for state in optimizer.state.values():
        if "step" in state:
            return int(state["step"])
    return 0


def diverge(terms: torch.Tensor, model, optimizer) -> torch.Tensor:
    """Test hook DDSP_FAULT_NAN_EPOCH (config.injected_fault): what a diverged step leaves
    behind, NaN loss terms, weights and optimizer moments."""
    moments = [value for state in optimizer.state.values()
               for key, value in state.items() if key != "step"]
    with torch.no_grad():
        for tensor in [*model.parameters(), *moments]:
            tensor.fill_(math.nan)
    return terms * math.nan


def capture_problem(optimizer, device, scaler=None) -> str | None:
    """Why a step on `device` with `optimizer` (and `scaler`) cannot be captured, or None."""
    if torch.device(device).type != "cuda":
        return "CUDA graphs need a CUDA device"
    for group in optimizer.param_groups:
        if not group.get("capturable", False):
            return ("the optimizer is not capturable: build it with "
                    "make_optimizer(model, capturable=True)")
        if scaler is not None and not group.get("fused", False):
            return ("a GradScaler step is captured only with a fused optimizer (others read "
                    "found_inf on the host): make_optimizer(model, capturable=True)")
    return None


def checked_capture(capture):
    """train's `capture` once it is False (eager), True or "always" (default_capture_off);
    else ValueError."""
    if not any(capture is choice or capture == choice for choice in (False, True, "always")):
        raise ValueError(f'capture must be False, True or "always", not {capture!r}')
    return capture


def default_capture_off(capture, steps_per_epoch: int) -> str | None:
    """train's `capture` (True or "always") for a step of `steps_per_epoch` steps an epoch ->
    why that step runs eagerly, or None to capture it: True leaves step batches eager until
    STEP_BATCH_CAPTURE_CHECKED; "always" captures every step."""
    if not checked_capture(capture):
        raise ValueError("default_capture_off is asked only when capture is on")
    if capture is True and steps_per_epoch > 1 and not STEP_BATCH_CAPTURE_CHECKED:
        return (f"eager: capture of step batches ({steps_per_epoch} steps an epoch) is off by "
                'default until scripts/gpu_check.py passes on a GPU; capture="always" '
                "captures them")
    return None


def replay_problem(replay, step, state: TrainingState, check_steps: int = CAPTURE_CHECK_STEPS,
                   rtol: float = CAPTURE_RTOL) -> str | None:
    """Why `replay` cannot stand in for `step`, or None: each (a callable -> loss terms [K])
    runs `check_steps` times from the state `state` saved, and their curves [check_steps, K]
    must be finite and agree within `rtol` (relative). The saved state is put back after, so
    checking costs no training. Warm-up and capture ran steps: both curves start where
    training starts."""
    state.restore()
    replayed = torch.stack([replay().detach().clone() for _ in range(check_steps)])
    replayed = replayed.float().cpu()
    state.restore()
    eager = torch.stack([step().detach().clone() for _ in range(check_steps)])
    eager = eager.float().cpu()
    state.restore()
    if not (torch.isfinite(replayed).all() and torch.isfinite(eager).all()):
        return "the check steps gave a non-finite loss"
    error = ((replayed - eager).abs() / eager.abs().clamp_min(1e-12)).max().item()
    if error > rtol:
        return (f"replayed losses differ from eager ones by {error:.2e} relative "
                f"(allowed {rtol:.0e})")
    return None


class CapturedStep:
    """step() -> loss terms, replayed from a CUDA graph.

    `step` is one eager training step on fixed tensors that returns its loss terms as one
    tensor (it may set gradients to None first: that runs no kernel). capture() warms up,
    records, and checks CAPTURE_CHECK_STEPS replays against as many eager steps from the same
    state; the state is then put back, so capturing costs no training. It returns None on
    success or the reason it fell back; calling the object runs a replay when captured and the
    eager step otherwise, and returns a fresh tensor of the step's loss terms."""

    def __init__(self, step, state: TrainingState):
        self.step, self.state = step, state
        self.graph = None
        self.static_terms = None

    def capture(self, warmup_steps: int = CAPTURE_WARMUP_STEPS,
                check_steps: int = CAPTURE_CHECK_STEPS, rtol: float = CAPTURE_RTOL):
        state = self.state
        problem = capture_problem(state.optimizer, state.tensors[0].device, state.scaler)
        if problem is None:
            state.save()  # the state training starts from: put back whatever happens
            try:
                problem = self._capture(warmup_steps, check_steps, rtol)
            except Exception as err:  # any capture error: train on, eagerly
                problem = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
                torch.cuda.synchronize()
                state.restore()
        if problem is not None:
            self.graph, self.static_terms = None, None
            warnings.warn(f"CUDA graph capture is off, training runs eagerly: {problem}",
                          stacklevel=2)
        return problem

    def _capture(self, warmup_steps, check_steps, rtol):
        graph, static_terms = self._record(warmup_steps)

        def replay():
            graph.replay()
            return static_terms

        problem = replay_problem(replay, self.step, self.state, check_steps, rtol)
        if problem is None:
            self.graph, self.static_terms = graph, static_terms
        return problem

    def _record(self, warmup_steps):
        """Warm up on a side stream, then record one step -> (graph, its static loss terms)."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup_steps):
                self.step()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        for param in self.state.model.parameters():
            param.grad = None
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_terms = self.step()
        torch.cuda.synchronize()
        return graph, static_terms

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self) -> torch.Tensor:
        if self.graph is None:
            return self.step().detach()
        self.graph.replay()
        return self.static_terms.clone()
