"""grown_timbres/model_config.py: ModelConfig checks every field in one place, reads what
checkpoints stored before (`reverb`, the room's old name, or no switch at all), and the model
is built from it, from its fields, or from both."""
import dataclasses

import numpy as np
import pytest
import torch

from grown_timbres.config import HOP_LENGTH, N_MFCC, SAMPLE_RATE
from grown_timbres.model import DDSPModel
from grown_timbres.model_config import HIDDEN_SIZE, N_HARMONICS, N_NOISE_BANDS, Z_DIM, ModelConfig

TINY = {"hidden_size": 8, "n_harmonics": 4, "n_noise_bands": 5, "z_dim": 2}


@pytest.mark.parametrize("fields, message", [
    ({"n_harmonics": 0}, r"n_harmonics=0 is outside 1..128 \(MODEL_LIMITS\['n_harmonics'\] in "
                         r"grown_timbres.model_config\)"),
    ({"hidden_size": "16"}, "hidden_size='16' is not a whole number"),
    ({"z_dim": 2.0}, "z_dim=2.0 is not a whole number"),
    ({"hop_length": True}, "hop_length=True is not a whole number"),
    ({"sample_rate": 10**9}, r"sample_rate=1000000000 is outside 8000..384000"),
    ({"room": 1}, "room=1 is not True or False"),
    ({"room": "yes"}, "room='yes' is not True or False"),
])
def test_a_configuration_refuses_a_bad_field_naming_it_its_value_and_the_limit(fields, message):
    with pytest.raises(ValueError, match=f"^model configuration {message}"):
        ModelConfig(**fields)


def test_a_configuration_holds_plain_ints_and_bools_and_is_frozen():
    config = ModelConfig(n_harmonics=np.int64(8), room=np.bool_(True))
    assert type(config.n_harmonics) is int and config.room is True
    assert (config.hidden_size, config.z_dim, config.n_noise_bands) == (HIDDEN_SIZE, Z_DIM,
                                                                        N_NOISE_BANDS)
    assert (config.n_mfcc, config.sample_rate, config.hop_length) == (N_MFCC, SAMPLE_RATE,
                                                                       HOP_LENGTH)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.room = False


def test_from_dict_reads_todays_and_earlier_checkpoints_configurations():
    today = ModelConfig(room=True, **TINY)
    assert ModelConfig.from_dict(today.as_dict()) == today
    before_issue_23 = {**TINY, "n_mfcc": N_MFCC, "sample_rate": SAMPLE_RATE,
                       "hop_length": HOP_LENGTH, "reverb": True}
    assert ModelConfig.from_dict(before_issue_23) == today
    before_the_room = {k: v for k, v in before_issue_23.items() if k != "reverb"}
    assert ModelConfig.from_dict(before_the_room) == ModelConfig(**TINY)
    assert ModelConfig.from_dict({}) == ModelConfig()  # the seed's format: no configuration
    assert ModelConfig.from_dict({"reverb": True, "room": True}).room is True
    with pytest.raises(ValueError, match=r"reverb=True and room=False name one field twice"):
        ModelConfig.from_dict({"reverb": True, "room": False})
    with pytest.raises(ValueError, match=r"unknown model configuration field\(s\) \['bogus'\]; "
                                         r"DDSPModel takes hidden_size, hop_length, "):
        ModelConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="a model configuration is a dict of DDSPModel's "
                                         "arguments, got list"):
        ModelConfig.from_dict([64])


def test_a_field_reads_by_its_old_key_and_a_wrong_key_names_the_fields():
    config = ModelConfig(room=True)
    assert config["hidden_size"] == HIDDEN_SIZE and config["reverb"] is True
    assert dict(config) == config.as_dict() and "reverb" not in config.as_dict()
    with pytest.raises(KeyError, match="'bogus': a model configuration has n_harmonics, "):
        config["bogus"]


def test_the_model_is_built_from_a_config_its_fields_or_both_with_the_same_weights():
    config = ModelConfig(room=True, **TINY)
    built = {}
    for name, make in {"config": lambda: DDSPModel(config),
                       "fields": lambda: DDSPModel(room=True, **TINY),
                       "old name": lambda: DDSPModel(reverb=True, **TINY),
                       "replaced": lambda: DDSPModel(ModelConfig(**TINY), room=True)}.items():
        torch.manual_seed(0)
        built[name] = make()
        assert built[name].config == config, name
    for name, model in built.items():
        state = model.state_dict()
        assert list(state) == list(built["config"].state_dict()), name
        assert all(torch.equal(value, built["config"].state_dict()[key])
                   for key, value in state.items()), name
    assert DDSPModel(hidden_size=8).config.n_harmonics == N_HARMONICS
    assert built["config"].reverb is True  # the old name of config.room
