"""Checkpoints: the model's plain weights and configuration, written atomically with a checksum
of every part and loaded safely (weights_only, checksums verified), whether or not the model
was compiled; a warm start from another model's checkpoint that shares all but its optional
parts (the room). The configuration is the model's ModelConfig (as_dict; from_dict reads older
ones, `reverb` for the room included)."""
from __future__ import annotations

import errno
import hashlib
import os
import warnings
from pathlib import Path

import torch

from .files import atomic_write
from .config import MAX_CHECKPOINT_BYTES, injected_fault
from .model import DDSPModel, unwrap_model
from .model_config import OLD_NAMES, ModelConfig

COMPILED_PREFIX = "_orig_mod."
CHECKSUMS = "checksums"  # {part: sha256 hex} of every other top-level entry of the file


def clean_state_dict(state_dict: dict) -> dict:
    """Drop torch.compile's `_orig_mod.` prefix from every key."""
    return {key.replace(COMPILED_PREFIX, ""): value for key, value in state_dict.items()}


def _digest(value, hasher) -> None:
    """Feed `value` (tensors, numbers, strings, lists, dicts as a checkpoint holds them) to
    `hasher` in an order that survives torch.save and torch.load: dict keys sorted, each
    tensor as its dtype, shape and bytes."""
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        hasher.update(f"tensor {flat.dtype} {tuple(value.shape)};".encode())
        hasher.update(flat.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        hasher.update(f"dict {len(value)};".encode())
        for key in sorted(value, key=repr):
            hasher.update(repr(key).encode())
            _digest(value[key], hasher)
    elif isinstance(value, (list, tuple)):
        hasher.update(f"list {len(value)};".encode())
        for item in value:
            _digest(item, hasher)
    else:
        hasher.update(f"{type(value).__name__} {value!r};".encode())


def part_checksums(payload: dict) -> dict:
    """{part: sha256 hex digest} of every top-level entry but the checksums themselves."""
    sums = {}
    for part, value in payload.items():
        if part != CHECKSUMS:
            hasher = hashlib.sha256()
            _digest(value, hasher)
            sums[part] = hasher.hexdigest()
    return sums


def save_checkpoint(path, model, **extras) -> Path:
    """Write {"model_state_dict", "config", **extras, "checksums"} atomically. Keys are those of
    the plain module, whether or not `model` was compiled; `checksums` holds a sha256 of every
    other part (part_checksums), verified on load. Extras must be weights_only-loadable
    (tensors, numbers, strings, lists, dicts). A failed write raises OSError "<path>: not
    written (<reason>)" and leaves no partial file (files.atomic_write)."""
    extras = {part: value.to_dict() if hasattr(value, "to_dict") else value  # a History
              for part, value in extras.items()}
    core = unwrap_model(model)
    state = {k: v.detach().cpu() for k, v in clean_state_dict(core.state_dict()).items()}
    payload = {"model_state_dict": state, "config": core.config.as_dict(), **extras}
    payload[CHECKSUMS] = part_checksums(payload)

    def write(tmp):
        # Through a Python file: torch's own writer would report a full disk only as
        # "enforce fail ... unexpected pos"; this way the system's OSError stays in the chain.
        with open(tmp, "wb") as file:
            if injected_fault("DISK_FULL"):  # test hook (config.injected_fault)
                file.write(b"PK")  # a partial file, as a full disk leaves one
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            torch.save(payload, file)

    return atomic_write(path, write)


def read_checkpoint(path, map_location="cpu") -> dict:
    """A checkpoint's contents, checked before anything is built from them: its size against
    MAX_CHECKPOINT_BYTES, weights_only loading, a model_state_dict, and every part against its
    checksum (ValueError naming the file and the part that differs). A file written before
    checkpoints had checksums loads with one warning saying it cannot be verified."""
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
    saved = checkpoint.pop(CHECKSUMS, None)
    if saved is None:
        warnings.warn(f"{path}: written before checkpoints had checksums, so its contents "
                      "cannot be verified", stacklevel=3)
        return checkpoint
    if not isinstance(saved, dict) or not all(isinstance(v, str) for v in saved.values()):
        raise ValueError(f"{path}: its checksums are not a dict of hex digests")
    actual = part_checksums(checkpoint)
    for part in sorted(set(saved) | set(actual), key=str):
        if part not in actual:
            raise ValueError(f"{path}: {part} is missing (the file lists its checksum)")
        if saved.get(part) != actual[part]:
            raise ValueError(f"{path}: {part} does not match its checksum: the file was "
                             "damaged or changed after it was written")
    return checkpoint


def checked_weights(path, checkpoint: dict, model=None, parts_may_differ: bool = False):
    """(model, weights): `model` (built from the saved config when None) and the checkpoint's
    weights, `_orig_mod.` prefixes dropped, once the config and every weight's name and shape
    fit the model; nothing is loaded yet. `parts_may_differ`: a model and a checkpoint that
    differ in their optional parts (SynthPart.switch: the room) are accepted, and those parts'
    weights left out of the check and of the weights returned. Raises ValueError naming the
    file and what is wrong."""
    try:
        saved_config = ModelConfig.from_dict(checkpoint.get("config", {}))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    if model is None:
        model = DDSPModel(saved_config)
    core = unwrap_model(model)
    given = _given_fields(checkpoint.get("config", {}))
    optional = _optional_part_weights(core.config, saved_config) if parts_may_differ else {}
    differences = [f"{key}: checkpoint {saved_config[key]!r}, model {value!r}"
                   for key, value in core.config.as_dict().items()
                   if key in given and saved_config[key] != value and key not in optional]
    if differences:
        raise ValueError(f"{path}: checkpoint was saved with another model configuration ("
                         + "; ".join(differences) + ")")
    state = checkpoint["model_state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: model_state_dict is not a dict of tensors")
    state = clean_state_dict(state)
    expected = core.state_dict()
    skipped = {name for names in optional.values() for name in names}
    state = {k: v for k, v in state.items() if k not in skipped}
    expected = {k: v for k, v in expected.items() if k not in skipped}
    problems = [f"missing {key}" for key in expected if key not in state]
    problems += [f"unexpected {key}" for key in state if key not in expected]
    problems += [f"{key}: shape {tuple(state[key].shape)}, model {tuple(value.shape)}"
                 for key, value in expected.items()
                 if key in state and state[key].shape != value.shape]
    if problems:  # load_state_dict would copy the good ones before raising on the rest
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more"
                                           if len(problems) > 5 else "")
        raise ValueError(f"{path}: the weights do not fit the model ({shown})")
    return model, state


def _given_fields(saved: dict) -> set:
    """The fields a saved configuration sets (today's names), which a model's must equal: those
    it names, and every optional part's switch (one it lacks is off: a checkpoint from before
    the room has no `reverb` and no room). A size it lacks is not compared (a checkpoint of the
    seed's format has no configuration: its weights' shapes are checked instead)."""
    switches = {part.switch for part in DDSPModel.PARTS if part.switch is not None}
    return {OLD_NAMES.get(name, name) for name in saved} | switches


def _optional_part_weights(ours: ModelConfig, saved: ModelConfig) -> dict:
    """{switch field: weight names} of the optional parts (DDSPModel.PARTS with a switch) that
    one of the two configurations has and the other lacks."""
    differing = {}
    for part_type in DDSPModel.PARTS:
        switch = part_type.switch
        if switch is not None and getattr(ours, switch) != getattr(saved, switch):
            differing[switch] = list(part_type.weight_names)
    return differing


def load_checkpoint(path, model=None, map_location="cpu"):
    """Load a checkpoint safely (weights_only=True) -> (model, checkpoint dict).

    Without `model` one is built from the saved config; with one (compiled or not) its config
    must match, else ValueError lists what differs (a config without `room`, or its old name
    `reverb`, is a model without a room). `_orig_mod.` keys are accepted. Everything is checked
    before the model is built or touched (read_checkpoint: size, checksums; checked_weights:
    the config as ModelConfig checks it, every weight's name and shape): a refused checkpoint
    leaves `model` as it was. Raises ValueError naming the file and what is wrong."""
    path = Path(path)
    checkpoint = read_checkpoint(path, map_location)
    model, state = checked_weights(path, checkpoint, model)
    unwrap_model(model).load_state_dict(state)
    return model, checkpoint


def warm_start(path, model) -> str:
    """Start `model` from another run's checkpoint -> a one-line message saying what was
    loaded. The configurations must match but for the optional parts (the room): every weight
    the two share is loaded, and a part that only `model` has keeps its fresh start (the
    original notebook's model never has a room, while uploads train with one), one that only
    the checkpoint has is left out. Checked as load_checkpoint checks: a refused file leaves
    `model` as it was."""
    path = Path(path)
    checkpoint = read_checkpoint(path)
    _, state = checked_weights(path, checkpoint, model, parts_may_differ=True)
    core = unwrap_model(model)
    saved = ModelConfig.from_dict(checkpoint.get("config", {}))  # checked above
    optional = [part for part in DDSPModel.PARTS if part.switch is not None]
    fresh = [part.name for part in optional
             if getattr(core.config, part.switch) and not getattr(saved, part.switch)]
    left_out = [part.name for part in optional
                if getattr(saved, part.switch) and not getattr(core.config, part.switch)]
    core.load_state_dict(state, strict=not fresh and not left_out)
    loaded = (f"its decoder and synthesizer weights loaded; the {' and '.join(fresh)} starts "
              "fresh (that model has none)" if fresh else "all weights loaded")
    if left_out:
        loaded += f" but its {' and '.join(left_out)} (this model has none)"
    return f"warm start from {path}: {loaded}"
