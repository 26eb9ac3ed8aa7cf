"""Checkpoints: the model's plain weights and configuration, written atomically and loaded
safely (weights_only), whether or not the model was compiled."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import torch

from .audio import atomic_write
from .config import MAX_CHECKPOINT_BYTES, injected_fault
from .model import DDSPModel, check_model_config, unwrap_model

COMPILED_PREFIX = "_orig_mod."


def clean_state_dict(state_dict: dict) -> dict:
    """Drop torch.compile's `_orig_mod.` prefix from every key."""
    return {key.replace(COMPILED_PREFIX, ""): value for key, value in state_dict.items()}


def save_checkpoint(path, model, **extras) -> Path:
    """Write {"model_state_dict", "config", **extras} atomically. Keys are those of the plain
    module, whether or not `model` was compiled. Extras must be weights_only-loadable
    (tensors, numbers, strings, lists, dicts). A failed write raises OSError "<path>: not
    written (<reason>)" and leaves no partial file (audio.atomic_write)."""
    core = unwrap_model(model)
    state = {k: v.detach().cpu() for k, v in clean_state_dict(core.state_dict()).items()}
    payload = {"model_state_dict": state, "config": dict(core.config), **extras}

    def write(tmp):
        # Through a Python file: torch's own writer would report a full disk only as
        # "enforce fail ... unexpected pos"; this way the system's OSError stays in the chain.
        with open(tmp, "wb") as file:
            if injected_fault("DISK_FULL"):  # test hook (config.injected_fault)
                file.write(b"PK")  # a partial file, as a full disk leaves one
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            torch.save(payload, file)

    return atomic_write(path, write)


def load_checkpoint(path, model=None, map_location="cpu"):
    """Load a checkpoint safely (weights_only=True) -> (model, checkpoint dict).

    Without `model` one is built from the saved config; with one (compiled or not) its config
    must match, else ValueError lists what differs (a config without `reverb` is a model
    without a room). `_orig_mod.` keys are accepted. Everything
    is checked before the model is built or touched (file size against MAX_CHECKPOINT_BYTES,
    config fields against MODEL_LIMITS, every weight's name and shape): a refused checkpoint
    leaves `model` as it was. Raises ValueError naming the file and what is wrong."""
    path = Path(path)
    size = path.stat().st_size  # FileNotFoundError as such: the caller may look elsewhere
    if size > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"{path}: {size} bytes, more than MAX_CHECKPOINT_BYTES="
                         f"{MAX_CHECKPOINT_BYTES} (grown_timbres.config)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a loadable checkpoint ({err})") from None
    if not isinstance(checkpoint, dict) or "model_state_dict" not in checkpoint:
        raise ValueError(f"{path}: not a DDSP checkpoint (no model_state_dict)")
    try:
        saved_config = check_model_config(checkpoint.get("config", {}))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    saved_config.setdefault("reverb", False)  # saved before the room (issue 14): it had none
    if model is None:
        model = DDSPModel(**saved_config)
    core = unwrap_model(model)
    differences = [f"{key}: checkpoint {saved_config.get(key)!r}, model {value!r}"
                   for key, value in core.config.items()
                   if key in saved_config and saved_config[key] != value]
    if differences:
        raise ValueError(f"{path}: checkpoint was saved with another model configuration ("
                         + "; ".join(differences) + ")")
    core.load_state_dict(_checked_state(path, checkpoint["model_state_dict"], core))
    return model, checkpoint


def _checked_state(path, state, core) -> dict:
    """The saved weights, `_orig_mod.` prefixes dropped, once every name and shape matches
    `core`: load_state_dict would copy the good ones before raising on the rest."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: model_state_dict is not a dict of tensors")
    state = clean_state_dict(state)
    expected = core.state_dict()
    problems = [f"missing {key}" for key in expected if key not in state]
    problems += [f"unexpected {key}" for key in state if key not in expected]
    problems += [f"{key}: shape {tuple(state[key].shape)}, model {tuple(value.shape)}"
                 for key, value in expected.items()
                 if key in state and state[key].shape != value.shape]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more"
                                           if len(problems) > 5 else "")
        raise ValueError(f"{path}: the weights do not fit the model ({shown})")
    return state
