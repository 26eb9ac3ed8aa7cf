"""grown_timbres/history.py: the History a run records: older history dicts (from checkpoints
written before it) load, the old keys still read, a wrong key's message names the field that
holds it now, what a checkpoint stores, and how steps count as epochs across a change of files."""
import math
import warnings

import numpy as np
import pytest
import torch

from grown_timbres.checkpoints import read_checkpoint, save_checkpoint
from grown_timbres.history import (History, as_history, continue_on, epochs_at, epochs_done)
from grown_timbres.model import DDSPModel
from conftest import FIXTURES

# A history as train returned it before History: a dict, timed_epochs holding step counts.
OLD = {"loss": [3.0, 2.0, 1.5, 1.2], "terms": {"spectral": [2.9, 1.9, 1.4, 1.1],
                                               "time_l1": [0.1, 0.1, 0.1, 0.1]},
       "timed_epochs": [2, 4], "elapsed_seconds": [1.0, 2.0], "skipped_steps": 1,
       "status": "finished", "steps_per_epoch": 2, "examples_per_step": 3, "examples": 4,
       "files": [["a.wav", 1.5], ["b.wav", 2.0]], "checkpoint": "ck.pt: written at step 4"}


def test_an_old_history_dict_loads_with_its_fields_renamed():
    history = History.from_dict(OLD)
    assert history.timed_steps == [2, 4] and history.elapsed_seconds == [1.0, 2.0]
    assert history.loss == OLD["loss"] and history.terms == OLD["terms"]
    assert (history.steps_per_epoch, history.examples_per_step, history.examples) == (2, 3, 4)
    assert history.steps_before == 0 and history.epochs_before == 0.0  # no change of files
    assert history.capture is None and history.harmonic_waves is None  # not recorded then
    history.loss.append(1.0)
    assert len(OLD["loss"]) == 4  # a copy: training on never changes the dict it came from


def test_a_history_from_before_the_loss_had_named_terms_reads_its_curve_as_the_spectral_term():
    history = History.from_dict({"loss": [2.0], "spectral_loss": [1.9], "timed_epochs": [1],
                                 "elapsed_seconds": [0.5]})
    assert history.terms == {"spectral": [1.9]} and history.timed_steps == [1]


def test_the_round_one_checkpoints_history_loads():
    saved = read_checkpoint(FIXTURES / "training_checkpoint_round1.pt")["history"]
    assert "timed_epochs" in saved and "timed_steps" not in saved  # the layout written then
    history = History.from_dict(saved)
    assert history.timed_steps == saved["timed_epochs"] and history.loss == saved["loss"]
    assert epochs_done(history) == epochs_done(saved) == 3


def test_old_keys_read_as_they_did():
    history = History.from_dict(OLD)
    assert history["loss"] is history.loss and history["terms"]["spectral"][0] == 2.9
    assert history["timed_epochs"] is history.timed_steps
    assert history.get("timed_epochs") == [2, 4] and history.get("examples", 9) == 4
    # a field not recorded reads as a key the old dict did not have
    assert history.get("capture", False) is False and "capture" not in history
    assert history["capture"] is None and "checkpoint" in history
    assert history.get("no such key", "default") == "default"


def test_a_wrong_key_names_the_field_that_holds_it_now():
    history = History()
    with pytest.raises(KeyError, match=r'no field spectral_loss: it is terms\["spectral"\] now'):
        history["spectral_loss"]
    with pytest.raises(KeyError, match="no field losses .*fields: loss, terms, timed_steps"):
        history["losses"]
    with pytest.raises(AttributeError, match="no timed_epochs: it is called timed_steps now"):
        history.timed_epochs
    with pytest.raises(AttributeError, match="no attribute 'lost'"):
        history.lost


def test_to_dict_is_what_a_checkpoint_can_store_and_reads_back_equal(tmp_path):
    """Plain lists, dicts, numbers and text (weights_only loadable); fields not recorded are
    left out; from_dict reads it back equal. save_checkpoint stores a History as this dict."""
    history = History.from_dict(OLD)
    history.capture = "captured"
    stored = history.to_dict()
    assert "timed_steps" in stored and "harmonic_waves" not in stored
    assert History.from_dict(stored) == history
    save_checkpoint(tmp_path / "ck.pt", DDSPModel(hidden_size=8), history=history)
    assert read_checkpoint(tmp_path / "ck.pt")["history"] == stored


def test_recorded_steps_and_cutting_back():
    history = History(loss=[4.0], terms={"spectral": [3.9]}, timed_steps=[1],
                      elapsed_seconds=[1.0])
    history.record_steps(torch.tensor([[3.0, 2.9, 0.1], [2.0, 1.9, 0.1]]),
                         ["spectral", "time_l1"], 3.0)
    assert history.loss == [4.0, 3.0, 2.0] and history.timed_steps == [1, 3]
    assert history.terms["spectral"] == pytest.approx([3.9, 2.9, 1.9])
    assert np.isnan(history.terms["time_l1"][0])  # a term new since: NaN before it
    history.cut_back(1)
    assert history.loss == [4.0] and history.terms["spectral"] == [3.9]
    assert history.timed_steps == [1] and history.elapsed_seconds == [1.0]


def test_epochs_count_steps_per_epoch_and_a_change_of_files():
    """4 steps that count as 2 epochs of the files now, then 2 steps an epoch."""
    history = History(loss=[0.0] * 8, steps_per_epoch=2, epochs_before=2.0, steps_before=4)
    assert [epochs_at(history, s) for s in (2, 4, 6, 8)] == [1.0, 2.0, 3.0, 4.0]
    assert epochs_done(history) == 4.0 and history.position(6) == "step 6 (epoch 3.00)"
    assert epochs_done(None) == 0.0 and History(loss=[1.0]).position(1) == "epoch 1"
    assert epochs_at({"loss": [0.0] * 6, "steps_per_epoch": 3}, 6) == 2.0  # an old dict too


def test_other_files_convert_the_epochs_done_with_one_warning():
    """8 epochs of 2 examples resumed on 4: they count as 4 epochs of the 4 (history.py's
    rule); the same files again change nothing, without a word."""
    history = History(loss=[1.0] * 8, files=[["a.wav", 1.0], ["b.wav", 1.0]], examples=2)
    files = [["a.wav", 1.0], ["b.wav", 1.0], ["c.wav", 1.0], ["d.wav", 1.0]]
    with pytest.warns(UserWarning, match=r"new c\.wav, d\.wav\): its 8 epochs of 2 examples "
                                         "count as 4 epochs of the 4 examples now"):
        continue_on(history, 4, files)
    assert (history.epochs_before, history.steps_before, history.examples) == (4.0, 8, 4)
    assert history.files == files and epochs_done(history) == 4.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        continue_on(history, 4, files)
    assert history.steps_before == 8 and epochs_done(history) == 4.0


def test_as_history_takes_a_history_an_old_dict_or_nothing():
    history = History()
    assert as_history(history) is history and as_history(None) == History()
    assert as_history(OLD).timed_steps == [2, 4]
    with pytest.raises(TypeError, match="history must be a History .*not GradScaler"):
        as_history(torch.amp.GradScaler("cpu"))  # train's old sixth argument, by position
    assert math.isclose(epochs_done(as_history(OLD)), 2.0)
