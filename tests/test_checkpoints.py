"""grown_timbres/checkpoints.py: exact round trip, compiled models, `_orig_mod.` keys,
configuration mismatches, extras, atomic writes, unloadable files."""
import numpy as np
import pytest
import torch

from grown_timbres.checkpoints import COMPILED_PREFIX, load_checkpoint, save_checkpoint
from grown_timbres.config import N_MFCC
from grown_timbres.model import DDSPModel, unwrap_model


def make_model(seed, hidden_size=64):
    torch.manual_seed(seed)
    return DDSPModel(hidden_size=hidden_size)


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
    assert checkpoint["config"] == source.config
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
