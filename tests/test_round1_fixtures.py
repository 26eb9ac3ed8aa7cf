"""Files written before the restructuring of issue 23 (tests/fixtures/README.md says how) load
and behave as they did: a model without and with the room render the audio they rendered then,
a training checkpoint resumes with its history, and a run record loads."""
import numpy as np
import pytest
import torch

import ddsp_helpers as ddsp
from grown_timbres.runs import load_run_record
from conftest import FIXTURES
from grown_timbres.model import render

RENDERS = FIXTURES / "round1_renders.npz"
TINY = {"hidden_size": 16, "n_harmonics": 8, "n_noise_bands": 9}
# a float32 render of the same weights on another CPU (other SIMD widths, thread counts) differs
# by rounding only; 1e-5 is 100 dB under these renders' peaks
RENDER_ATOL = 1e-5


@pytest.fixture(scope="module")
def renders():
    return dict(np.load(RENDERS))


@pytest.mark.parametrize("name, room", [("model_round1", False), ("model_round1_room", True)])
def test_a_round_one_model_loads_and_renders_what_it_rendered_then(renders, name, room):
    model, saved = ddsp.load_checkpoint(FIXTURES / f"{name}.pt")
    assert model.reverb is room
    assert saved["files"] == ["scale_tones/01_C4.wav"]
    inputs = [torch.from_numpy(renders[k]) for k in ("f0", "loudness", "mfcc")]
    audio = render(model, *inputs, seed=0)
    assert np.abs(renders[name]).max() > 1e-3  # the premise: it renders sound
    np.testing.assert_allclose(audio, renders[name], rtol=0, atol=RENDER_ATOL)


def test_a_round_one_training_checkpoint_resumes_with_its_history(renders):
    model = ddsp.DDSPModel(**TINY)
    optimizer = ddsp.make_optimizer(model)
    history = ddsp.resume_training(FIXTURES / "training_checkpoint_round1.pt", model, optimizer)
    np.testing.assert_allclose(history["loss"], renders["history_loss"], rtol=1e-6)
    assert ddsp.epochs_done(history) == 3
    saved, _ = ddsp.load_checkpoint(FIXTURES / "model_round1.pt")
    for key, value in saved.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_a_round_one_run_record_loads():
    record = load_run_record(FIXTURES / "run_record_round1.json")
    assert record["notebook"] == "ddsp_original"
    assert record["n_epochs"] == 3 and record["n_steps"] == 3
    assert record["config"]["model"]["hidden_size"] == 16
    assert set(record["metrics"]) == {"01_C4"}
    assert set(record["final_loss_terms"]) == {"spectral", "time_l1"}
