"""grown_timbres/checkpoints.py: exact round trip, compiled models, `_orig_mod.` keys,
configuration mismatches, extras, atomic writes, unloadable files, checksums; a refused load
leaves the target model untouched; a warm start shares all but the room."""
import numpy as np
import pytest
import torch

from grown_timbres.checkpoints import (CHECKSUMS, COMPILED_PREFIX, load_checkpoint,
                                       save_checkpoint, warm_start)
from grown_timbres.config import N_MFCC
from grown_timbres.model import DDSPModel, unwrap_model


def make_model(seed, hidden_size=64, **fields):
    torch.manual_seed(seed)
    return DDSPModel(hidden_size=hidden_size, **fields)


def inputs(n_frames=20):
    g = torch.Generator().manual_seed(5)
    return (torch.full((1, n_frames, 1), 330.0), torch.full((1, n_frames, 1), -20.0),
            torch.randn(1, n_frames, N_MFCC, generator=g))


def forward_with_seed(model, seed=123):
    torch.manual_seed(seed)  # filtered_noise draws from the global generator
    with torch.no_grad():
        return model(*inputs())[0]


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def only_file(folder):
    return sorted(p.name for p in folder.iterdir())


def test_round_trip_exact(tmp_path):
    source = make_model(0)
    path = save_checkpoint(tmp_path / "ddsp_model.pt", source)
    assert path == tmp_path / "ddsp_model.pt"
    target = make_model(1)
    assert not torch.equal(forward_with_seed(source), forward_with_seed(target))
    loaded, checkpoint = load_checkpoint(path, target)
    assert loaded is target
    assert_same_state(source, target)
    assert torch.equal(forward_with_seed(source), forward_with_seed(target))
    assert checkpoint["config"] == source.config.as_dict()
    assert only_file(tmp_path) == ["ddsp_model.pt"]  # atomic: no .tmp left behind


def test_load_without_model_builds_one(tmp_path):
    source = make_model(0, hidden_size=32)
    save_checkpoint(tmp_path / "m.pt", source)
    model, _ = load_checkpoint(tmp_path / "m.pt")
    assert isinstance(model, DDSPModel) and model.config["hidden_size"] == 32
    assert_same_state(source, model)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch._dynamo import
def test_compiled_model_saves_plain_keys_and_loads(tmp_path):
    model = make_model(0)
    compiled = torch.compile(model)  # lazy: nothing is compiled until it runs
    assert any(k.startswith(COMPILED_PREFIX) for k in compiled.state_dict())
    assert unwrap_model(compiled) is model
    save_checkpoint(tmp_path / "c.pt", compiled)
    saved = torch.load(tmp_path / "c.pt", weights_only=True)
    assert list(saved["model_state_dict"]) == list(model.state_dict())
    assert not any(COMPILED_PREFIX in k for k in saved["model_state_dict"])
    # and loads into a compiled wrapper of another model
    other = make_model(1)
    loaded, _ = load_checkpoint(tmp_path / "c.pt", torch.compile(other))
    assert_same_state(model, other)


def test_checkpoint_with_orig_mod_keys_loads(tmp_path):
    source = make_model(0)
    state = {COMPILED_PREFIX + k: v for k, v in source.state_dict().items()}
    torch.save({"model_state_dict": state, "config": dict(source.config)}, tmp_path / "raw.pt")
    target = make_model(1)
    load_checkpoint(tmp_path / "raw.pt", target)
    assert_same_state(source, target)
    built, _ = load_checkpoint(tmp_path / "raw.pt")
    assert_same_state(source, built)


def test_seed_format_checkpoint_without_config_loads_into_a_model(tmp_path):
    source = make_model(0)
    torch.save({"model_state_dict": source.state_dict()}, tmp_path / "seed.pt")
    target = make_model(1)
    load_checkpoint(tmp_path / "seed.pt", target)
    assert_same_state(source, target)


def test_other_hidden_size_raises_value_error(tmp_path):
    save_checkpoint(tmp_path / "m.pt", make_model(0, hidden_size=64))
    target = make_model(1, hidden_size=128)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match="hidden_size") as info:
        load_checkpoint(tmp_path / "m.pt", target)
    assert "64" in str(info.value) and "128" in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # untouched


def test_extras_survive(tmp_path):
    history = {"loss": [5.25, 3.5, 1.0625], "spectral_loss": [5.0, 3.25, 1.0],
               "timed_epochs": [1, 2, 3], "elapsed_seconds": [0.1, 0.2, 0.3],
               "status": "finished"}
    save_checkpoint(tmp_path / "m.pt", make_model(0), history=history, epoch=3,
                       note="clarinet", curve=torch.arange(4.0))
    _, checkpoint = load_checkpoint(tmp_path / "m.pt", make_model(1))
    assert checkpoint["history"] == history
    assert checkpoint["epoch"] == 3 and checkpoint["note"] == "clarinet"
    assert torch.equal(checkpoint["curve"], torch.arange(4.0))


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "m.pt"
    source = make_model(0)
    save_checkpoint(path, source)
    original = path.read_bytes()
    with pytest.raises(Exception):
        save_checkpoint(path, make_model(1), callback=lambda: None)  # lambdas don't pickle
    assert path.read_bytes() == original
    assert only_file(tmp_path) == ["m.pt"]
    target = make_model(2)
    load_checkpoint(path, target)
    assert_same_state(source, target)


def test_save_creates_folders(tmp_path):
    path = save_checkpoint(tmp_path / "a" / "b" / "m.pt", make_model(0, hidden_size=16))
    assert path.is_file() and only_file(path.parent) == ["m.pt"]


def test_unloadable_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a loadable checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="no model_state_dict"):
        load_checkpoint(tmp_path / "list.pt")
    # an extra that weights_only refuses (a numpy array) is reported, not executed
    save_checkpoint(tmp_path / "np.pt", make_model(0, hidden_size=16), extra=np.ones(3))
    with pytest.raises(ValueError, match="not a loadable checkpoint"):
        load_checkpoint(tmp_path / "np.pt")


def test_checkpoint_with_other_configuration_says_what_differs(tmp_path):
    save_checkpoint(tmp_path / "small.pt", DDSPModel(hidden_size=32))
    with pytest.raises(ValueError, match=r"hidden_size: checkpoint 32, model 64"):
        load_checkpoint(tmp_path / "small.pt", DDSPModel(hidden_size=64))


def test_garbage_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a loadable checkpoint"):
        load_checkpoint(path)


def test_original_and_optimized_checkpoints_load_both_ways(tmp_path):
    """The original notebook saves a plain model; the optimized one a model compiled in place
    (and a user may save a torch.compile wrapper): each loads into the other."""
    torch.manual_seed(0)
    original = DDSPModel(hidden_size=32)
    save_checkpoint(tmp_path / "ddsp_model.pt", original)
    optimized = DDSPModel(hidden_size=32)
    optimized.compile()
    load_checkpoint(tmp_path / "ddsp_model.pt", optimized)
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(),
                                                 optimized.state_dict().values()))
    wrapped = torch.compile(DDSPModel(hidden_size=32))
    save_checkpoint(tmp_path / "ddsp_model_optimized.pt", wrapped)
    plain, _ = load_checkpoint(tmp_path / "ddsp_model_optimized.pt")
    assert set(plain.state_dict()) == set(original.state_dict())


# Issue 13, class 6: a refused checkpoint is refused whole, before the model is built or
# touched, with the file and the reason named.
def corrupted(tmp_path, change):
    """A checkpoint of a hidden_size 16 model with `change(state, config)` applied."""
    source = make_model(0, hidden_size=16)
    state, config = dict(source.state_dict()), dict(source.config)
    change(state, config)
    path = tmp_path / "changed.pt"
    torch.save({"model_state_dict": state, "config": config}, path)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda s, c: s.update({"out_proj.weight": torch.zeros(3, 16)}),
     r"out_proj.weight: shape \(3, 16\), model \(130, 16\)"),
    (lambda s, c: s.pop("out_proj.bias"), r"missing out_proj.bias"),
    (lambda s, c: s.update({"extra.weight": torch.zeros(1)}), r"unexpected extra.weight"),
    (lambda s, c: s.update({"gru.weight_hh_l0": [0.0]}), r"not a dict of tensors"),
    (lambda s, c: [s.update({k: v[..., :1]}) for k, v in list(s.items()) if v.ndim == 2],
     r"and \d+ more"),
])
def test_a_failed_load_leaves_the_target_model_unchanged(tmp_path, change, message):
    """load_state_dict copied every matching weight before raising on the rest."""
    path = corrupted(tmp_path, change)
    target = make_model(1, hidden_size=16)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match=message) as info:
        load_checkpoint(path, target)
    assert str(info.value).startswith(f"{path}: ")
    assert_same_state_as(before, target)
    with pytest.raises(ValueError, match=message):
        load_checkpoint(path)  # the model built from its config is refused the same way


def assert_same_state_as(before, model):
    after = model.state_dict()
    assert list(before) == list(after)
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("change, message", [
    (lambda s, c: c.update(bogus=1), r"unknown model configuration field\(s\) \['bogus'\]"),
    (lambda s, c: c.update(hidden_size="16"), r"hidden_size='16' is not a whole number"),
    (lambda s, c: c.update(hidden_size=16.0), r"hidden_size=16.0 is not a whole number"),
    (lambda s, c: c.update(n_harmonics=True), r"n_harmonics=True is not a whole number"),
    (lambda s, c: c.update(z_dim=0), r"z_dim=0 is outside 1..256"),
    (lambda s, c: c.update(hop_length=8), r"hop_length=8 is outside 16..4096"),
    (lambda s, c: c.clear() or c.update({1: 2}), r"unknown model configuration field\(s\) \['1'\]"),
])
def test_a_bad_configuration_is_a_value_error_naming_file_and_field(tmp_path, change, message):
    """A bogus config key gave a raw TypeError from DDSPModel(**config)."""
    path = corrupted(tmp_path, change)
    with pytest.raises(ValueError, match=message) as info:
        load_checkpoint(path)
    assert str(info.value).startswith(f"{path}: ")
    target = make_model(1, hidden_size=16)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        load_checkpoint(path, target)
    assert_same_state_as(before, target)


def test_a_configuration_that_is_not_a_dict_is_named(tmp_path):
    torch.save({"model_state_dict": {}, "config": [64]}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match=r"odd.pt: a model configuration is a dict of "
                                         r"DDSPModel's arguments, got list"):
        load_checkpoint(tmp_path / "odd.pt")


def test_a_model_with_a_room_round_trips_and_one_saved_before_rooms_still_loads(tmp_path):
    """The room's switch is in the configuration and its taps in the weights; a checkpoint
    whose configuration has no `room` (nor `reverb`, its name before issue 23: saved before
    issue 14) is a model without a room."""
    torch.manual_seed(0)
    roomy = DDSPModel(hidden_size=16, room=True)
    with torch.no_grad():
        roomy.room_level.fill_(0.3)
    save_checkpoint(tmp_path / "room.pt", roomy)
    loaded, checkpoint = load_checkpoint(tmp_path / "room.pt")
    assert checkpoint["config"]["room"] is True and loaded.config.room
    assert_same_state(roomy, loaded)

    dry = make_model(1, hidden_size=16)
    old_config = {k: v for k, v in dry.config.as_dict().items() if k != "room"}
    torch.save({"model_state_dict": dry.state_dict(), "config": old_config}, tmp_path / "old.pt")
    old, _ = load_checkpoint(tmp_path / "old.pt")
    assert old.config.room is False and not hasattr(old, "room_noise")
    assert_same_state(dry, old)
    with pytest.raises(ValueError, match="room: checkpoint False, model True"):
        load_checkpoint(tmp_path / "old.pt", DDSPModel(hidden_size=16, room=True))


def test_a_checkpoint_at_other_rates_loads_as_such_and_not_into_a_model_at_others(tmp_path):
    """sample_rate and hop_length are the model's settings: a checkpoint keeps them, and a
    model at other rates is refused its weights, naming both values."""
    source = make_model(0, hidden_size=16, hop_length=128)
    save_checkpoint(tmp_path / "hop128.pt", source)
    loaded, _ = load_checkpoint(tmp_path / "hop128.pt")
    assert loaded.config.hop_length == 128
    assert_same_state(source, loaded)
    with pytest.raises(ValueError, match="hop_length: checkpoint 128, model 256"):
        load_checkpoint(tmp_path / "hop128.pt", make_model(1, hidden_size=16))


# ----------------------------------------------------------------------------- checksums
def test_a_checkpoint_carries_a_checksum_of_every_part_and_loads_without_a_word(tmp_path):
    import warnings

    save_checkpoint(tmp_path / "ck.pt", make_model(0, 16), history={"loss": [1.0]})
    assert set(torch.load(tmp_path / "ck.pt", weights_only=True)[CHECKSUMS]) == {
        "model_state_dict", "config", "history"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, checkpoint = load_checkpoint(tmp_path / "ck.pt", make_model(1, 16))
    assert CHECKSUMS not in checkpoint


@pytest.mark.parametrize("part, change", [
    ("model_state_dict", lambda c: c["model_state_dict"]["out_proj.bias"].mul_(-1)),
    ("config", lambda c: c["config"].update(z_dim=8)),
    ("history", lambda c: c.update(history={"loss": [2.0]})),
    ("extra", lambda c: c.update(extra=1)),  # a part added: it has no checksum
])
def test_a_part_changed_after_writing_is_refused_and_the_model_kept(tmp_path, part, change):
    save_checkpoint(tmp_path / "ck.pt", make_model(0, 16), history={"loss": [1.0]})
    payload = torch.load(tmp_path / "ck.pt", weights_only=True)
    change(payload)
    torch.save(payload, tmp_path / "ck.pt")
    target = make_model(1, 16)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match=rf"ck\.pt: {part} does not match its checksum: the "
                                         r"file was damaged or changed after it was written"):
        load_checkpoint(tmp_path / "ck.pt", target)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_a_part_missing_from_a_checksummed_file_is_named(tmp_path):
    save_checkpoint(tmp_path / "ck.pt", make_model(0, 16), history={"loss": [1.0]})
    payload = torch.load(tmp_path / "ck.pt", weights_only=True)
    del payload["history"]
    torch.save(payload, tmp_path / "ck.pt")
    with pytest.raises(ValueError, match=r"ck\.pt: history is missing \(the file lists its "
                                         r"checksum\)"):
        load_checkpoint(tmp_path / "ck.pt")


def test_a_checkpoint_from_before_checksums_loads_with_one_line():
    from conftest import FIXTURES

    path = FIXTURES / "training_checkpoint_before_checksums.pt"
    with pytest.warns(UserWarning) as caught:
        model, _ = load_checkpoint(path)
    assert [str(w.message) for w in caught] == [
        f"{path}: written before checkpoints had checksums, so its contents cannot be verified"]
    assert model.config["hidden_size"] == 8


# ----------------------------------------------------------------------------- warm start
def room_weights(model):
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith("room_")}


def test_a_warm_start_into_a_model_with_a_room_loads_the_rest_and_starts_the_room_fresh(
        tmp_path):
    """The original notebook's model has no room; uploads train with one (ROOM="auto")."""
    original = make_model(0, 16)
    save_checkpoint(tmp_path / "ddsp_model.pt", original)
    torch.manual_seed(1)
    roomy = DDSPModel(hidden_size=16, room=True)
    fresh_room = room_weights(roomy)
    message = warm_start(tmp_path / "ddsp_model.pt", roomy)
    assert message == (f"warm start from {tmp_path / 'ddsp_model.pt'}: its decoder and "
                       "synthesizer weights loaded; the room starts fresh (that model has none)")
    for key, value in original.state_dict().items():
        assert torch.equal(roomy.state_dict()[key], value), key
    assert all(torch.equal(roomy.state_dict()[k], v) for k, v in fresh_room.items())


def test_a_warm_start_from_a_model_with_a_room_leaves_its_room_out(tmp_path):
    torch.manual_seed(0)
    roomy = DDSPModel(hidden_size=16, room=True)
    save_checkpoint(tmp_path / "room.pt", roomy)
    dry = make_model(1, 16)
    assert warm_start(tmp_path / "room.pt", dry).endswith(
        "all weights loaded but its room (this model has none)")
    for key, value in dry.state_dict().items():
        assert torch.equal(roomy.state_dict()[key], value), key


def test_a_warm_start_between_equal_models_loads_everything(tmp_path):
    torch.manual_seed(0)
    saved = DDSPModel(hidden_size=16, room=True)
    with torch.no_grad():
        saved.room_level.fill_(0.3)
    save_checkpoint(tmp_path / "room.pt", saved)
    target = DDSPModel(hidden_size=16, room=True)
    assert warm_start(tmp_path / "room.pt", target).endswith(": all weights loaded")
    assert_same_state(saved, target)


def test_a_warm_start_from_another_model_size_is_refused_and_changes_nothing(tmp_path):
    save_checkpoint(tmp_path / "ddsp_model.pt", make_model(0, 16))
    torch.manual_seed(1)
    target = DDSPModel(hidden_size=32, room=True)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match=r"ddsp_model\.pt: checkpoint was saved with another "
                                         r"model configuration \(hidden_size: checkpoint 16"):
        warm_start(tmp_path / "ddsp_model.pt", target)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


@pytest.mark.parametrize("saved", [True, False])
def test_the_optimized_notebooks_model_cell_warm_starts_a_model_for_uploads(tmp_path, capsys,
                                                                            saved):
    """The notebook's own cell, run with uploads (ROOM "auto": a room) and
    WARM_START_FROM_ORIGINAL: the original's weights load, the room starts fresh, one line says
    so; without the original's file, a line says the weights are random."""
    from pathlib import Path

    import nbformat

    import ddsp_helpers
    from conftest import REPO_ROOT

    notebook = nbformat.read(REPO_ROOT / "notebooks" / "ddsp_optimized.ipynb", as_version=4)
    cell = next(c.source for c in notebook.cells
                if c.cell_type == "code" and "WARM_START_FROM_ORIGINAL and" in c.source)
    original = make_model(0, 16)
    if saved:
        save_checkpoint(tmp_path / "ddsp_original" / "ddsp_model.pt", original)
    names = {"ddsp": ddsp_helpers, "Path": Path, "ROOT": REPO_ROOT, "OUTPUTS": tmp_path,
             "audio_paths": [tmp_path / "uploads" / "take.wav"], "ROOM": "auto",
             "HIDDEN_SIZE": 16, "device": "cpu", "WARM_START_FROM_ORIGINAL": True}
    exec(cell, names)
    printed = capsys.readouterr().out.splitlines()
    assert names["model"].config.room
    if saved:
        assert printed[0] == (f"warm start from {tmp_path / 'ddsp_original' / 'ddsp_model.pt'}"
                              ": its decoder and synthesizer weights loaded; the room starts "
                              "fresh (that model has none)")
        for key, value in original.state_dict().items():
            assert torch.equal(names["model"].state_dict()[key], value), key
    else:
        assert printed[0].startswith("no ") and printed[0].endswith("random weights")
