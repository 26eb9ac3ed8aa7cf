"""Training checkpoints: written (save_training_checkpoint, as train does) and resumed: checked
part by part (weights, optimizer, GradScaler, random state, history) before anything is
restored, so that a refused file leaves model, optimizer, scaler and random state as they were.

    model, optimizer, scaler, History -> checkpoint -> resume_training -> History, for train
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch

from .checkpoints import checked_weights, read_checkpoint, save_checkpoint
from .config import is_real_number
from .history import History, continue_on, files_trained
from .model import unwrap_model


def save_training_checkpoint(path, model, optimizer, scaler, history: History, device) -> Path:
    """Write all that resume_training puts back (checkpoints.save_checkpoint: atomic, with
    checksums): weights, optimizer and scaler state, the random generators' state (the noise
    continues exactly) and the history."""
    cuda = torch.device(device).type == "cuda"
    return save_checkpoint(path, model, history=history,
                           optimizer_state_dict=optimizer.state_dict(),
                           scaler_state_dict=scaler.state_dict() if scaler else None,
                           rng_state=torch.get_rng_state(),
                           cuda_rng_state=torch.cuda.get_rng_state(device) if cuda else None)


def checked_history(path, saved) -> History:
    """The checkpoint's history (History.from_dict: older layouts too) once every curve is a
    list of numbers of one length (losses finite), the timings rise, and the counts are whole
    numbers in range; else ValueError naming the file and the field."""
    if saved is None:
        return History()
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: history is a {type(saved).__name__}, not a dict")
    history = History.from_dict(saved)

    def refuse(field, problem):
        raise ValueError(f"{path}: history: {field} {problem}")

    loss = history.loss
    if not isinstance(loss, list) or not all(is_real_number(v) and math.isfinite(v) for v in loss):
        refuse("loss", "is not a list of finite numbers (train records only finite losses)")
    if not isinstance(history.terms, dict):
        refuse("terms", "is not a dict of curves")
    for name, curve in history.terms.items():
        if (not isinstance(curve, list) or len(curve) != len(loss)
                or not all(map(is_real_number, curve))):
            refuse(f"terms[{name!r}]", f"is not a list of {len(loss)} numbers, one per step")
    timed, seconds = history.timed_steps, history.elapsed_seconds
    if (not isinstance(timed, list) or not isinstance(seconds, list) or len(timed) != len(seconds)
            or not all(isinstance(s, int) and 0 < s <= len(loss) for s in timed)
            or timed != sorted(timed)):
        refuse("timed_steps", f"are not rising step counts up to {len(loss)}, one per "
                              "elapsed_seconds")
    if not all(is_real_number(s) and math.isfinite(s) and s >= 0 for s in seconds):
        refuse("elapsed_seconds", "are not finite numbers of seconds")
    for field, low in (("steps_per_epoch", 1), ("examples", 1), ("examples_per_step", 1),
                       ("skipped_steps", 0), ("steps_before", 0)):
        value = history.get(field, low)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            refuse(field, f"is {value!r}, not a whole number of at least {low}")
    if history.get("steps_before", 0) > len(loss):
        refuse("steps_before", f"is past the {len(loss)} steps recorded")
    before = history.epochs_before
    if not (is_real_number(before) and math.isfinite(before) and before >= 0):
        refuse("epochs_before", f"is {before!r}, not a finite number of epochs")
    files = history.get("files", [])
    if not isinstance(files, list) or not all(
            isinstance(f, list) and len(f) == 2 and isinstance(f[0], str) and is_real_number(f[1])
            for f in files):
        refuse("files", "is not a list of [file name, seconds]")
    return history


def checked_optimizer_state(path, saved, optimizer):
    """The optimizer state to load -> (state, why not) where state is None when the optimizer
    must start afresh (another grouping of the parameters, or moments that are NaN or inf, as
    a NaN stop of an earlier version left them): `why not` then says so. A state that does not
    fit the optimizer's parameters is a ValueError naming the file and the part."""
    part = f"{path}: optimizer_state_dict"
    if not saved:
        return None, None
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if (not isinstance(groups, list) or not isinstance(saved.get("state"), dict)
            or not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)):
        raise ValueError(f"{part} is not an optimizer's state (state, param_groups)")
    if len(groups) != len(optimizer.param_groups):
        return None, (f"{path}: its optimizer state has {len(groups)} parameter groups, this "
                      f"optimizer {len(optimizer.param_groups)}: Adam starts afresh")
    params = {}
    for index, (group, own) in enumerate(zip(groups, optimizer.param_groups)):
        if len(group["params"]) != len(own["params"]):
            raise ValueError(f"{part}: parameter group {index} holds {len(group['params'])} "
                             f"parameters, the optimizer's {len(own['params'])}")
        absent = [name for name, value in own.items() if name not in group
                  and (is_real_number(value) or isinstance(value, tuple))]  # lr, betas, eps, ...
        if absent:
            raise ValueError(f"{part}: parameter group {index} has no {', '.join(absent)} "
                             "(another optimizer's state?)")
        for name, value in group.items():
            values = value if isinstance(value, (list, tuple)) and name != "params" else [value]
            if name != "params" and any(is_real_number(v) and not math.isfinite(v) for v in values):
                raise ValueError(f"{part}: parameter group {index}: {name} is {value!r}")
        params.update(zip(group["params"], own["params"]))
    names = ({"step", "exp_avg", "exp_avg_sq"} | (
        {"max_exp_avg_sq"} if optimizer.defaults.get("amsgrad") else set())
        if isinstance(optimizer, torch.optim.Adam) else None)  # what Adam's step reads
    non_finite = []
    for key, entry in saved["state"].items():
        if key not in params or not isinstance(entry, dict):
            raise ValueError(f"{part}: state {key!r} belongs to no parameter of its groups")
        if names is not None and set(entry) != names:
            raise ValueError(f"{part}: state {key} holds {sorted(entry)}, Adam keeps "
                             f"{sorted(names)} (another optimizer's state?)")
        for name, value in entry.items():
            if value is None:  # SGD without momentum keeps no buffer
                continue
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(
                float(value) if is_real_number(value) else math.nan)
            if name == "step":
                if tensor.numel() != 1 or not (tensor.float() >= 0).all():
                    raise ValueError(f"{part}: state {key}: step is {value!r}")
            elif tuple(tensor.shape) != tuple(params[key].shape):
                raise ValueError(f"{part}: state {key}: {name} has shape "
                                 f"{tuple(tensor.shape)}, its parameter {tuple(params[key].shape)}")
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                non_finite.append(f"{key}.{name}")
    if non_finite:
        return None, (f"{path}: Adam's moments hold NaN or inf values ({non_finite[0]}"
                      f"{' and more' if len(non_finite) > 1 else ''}; an earlier version wrote "
                      "them at a NaN stop): the weights and history resume, Adam starts afresh")
    return saved, None


SCALER_FIELDS = {"scale": (0, math.inf), "growth_factor": (1, math.inf),
                 "backoff_factor": (0, 1), "growth_interval": (0, math.inf),
                 "_growth_tracker": (-1, math.inf)}  # each value above low, below high


def checked_scaler_state(path, saved):
    """A GradScaler's state once its fields are finite numbers in range (None: nothing to load,
    as from a disabled scaler)."""
    if not saved:
        return None
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: scaler_state_dict is not a dict")
    for field, (low, high) in SCALER_FIELDS.items():
        value = saved.get(field)
        if not (is_real_number(value) and math.isfinite(value) and low < value < high):
            raise ValueError(f"{path}: scaler_state_dict: {field} is {value!r}, not a finite "
                             f"number above {low}" + (f" and below {high}" if high < 1e9 else ""))
    return saved


def checked_random_state(path, part: str, saved, device: str):
    """A random generator's state once a scratch generator of `device` accepts it (torch's own
    check; the global generator is not touched), or None when there is none to restore."""
    if saved is None or (device == "cuda" and not torch.cuda.is_available()):
        return None
    if not isinstance(saved, torch.Tensor) or saved.dtype != torch.uint8:
        raise ValueError(f"{path}: {part} is not a generator's state (a uint8 tensor)")
    try:
        torch.Generator(device=device).set_state(saved)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{path}: {part} is not a {device} generator's state ({err})") from None
    return saved


def resume_training(path, model, optimizer=None, scaler=None, batch=None) -> History:
    """Load a checkpoint written by train.train into model (and optimizer, scaler, the random
    generators) -> its History, to pass to train so that epochs and curves continue where they
    stopped. Every part is checked first (read_checkpoint: size, checksums;
    checked_weights, finite weights, checked_optimizer_state, checked_scaler_state,
    checked_random_state, checked_history): a refused checkpoint is a ValueError naming the
    file and the part, and nothing has changed. With `batch` (batching.collate's), a history of
    other files counts its epochs by history.py's rule, with a warning."""
    path = Path(path)
    checkpoint = read_checkpoint(path)
    _, weights = checked_weights(path, checkpoint, model)
    bad = [name for name, value in weights.items()
           if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise ValueError(f"{path}: model_state_dict: {bad[0]} holds NaN or inf values; "
                         "training cannot continue from it")
    optimizer_state, afresh = (checked_optimizer_state(path, checkpoint.get(
        "optimizer_state_dict"), optimizer) if optimizer is not None else (None, None))
    scaler_state = (checked_scaler_state(path, checkpoint.get("scaler_state_dict"))
                    if scaler is not None else None)
    cpu_rng = checked_random_state(path, "rng_state", checkpoint.get("rng_state"), "cpu")
    cuda_rng = checked_random_state(path, "cuda_rng_state", checkpoint.get("cuda_rng_state"),
                                    "cuda")
    history = checked_history(path, checkpoint.get("history"))
    if batch is not None:
        continue_on(history, len(batch["examples"]["starts"]), files_trained(batch), str(path))
    # Everything is checked: from here on nothing is refused.
    unwrap_model(model).load_state_dict(weights)
    if afresh:
        optimizer.state.clear()
        warnings.warn(afresh, stacklevel=2)
    elif optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)  # moves state to params
    if scaler_state is not None:
        scaler.load_state_dict(scaler_state)
    if cpu_rng is not None:
        torch.set_rng_state(cpu_rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state(cuda_rng)
    return history
