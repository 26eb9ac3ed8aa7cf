"""grown_timbres/training_set.py: the TrainingSet collate makes (its excerpts, its examples),
read by the old dict keys too, moved to a device whole, and each file's Features back out."""
import dataclasses

import numpy as np
import pytest
import torch

from grown_timbres.batching import batch_to_device, collate, file_features
from grown_timbres.config import HOP_LENGTH, SAMPLE_RATE
from grown_timbres.features import Features


def test_a_training_set_reads_by_its_old_keys_and_names_its_fields_for_others(bundled_features):
    """Code written for collate's dict keeps working: batch["f0"] is the excerpts' f0,
    batch["examples"]["starts"] the examples' starts, and `in`, get and ** work; a key the dict
    never had raises a KeyError naming the fields to read instead. Nothing can be assigned."""
    batch = collate(bundled_features[:2])
    for key in ("f0", "loudness", "mfcc", "audio", "voiced", "lengths"):
        assert batch[key] is getattr(batch.excerpts, key)
    for key in ("file_paths", "sources", "errors", "examples"):
        assert batch[key] is getattr(batch, key)
    assert batch["examples"]["starts"] is batch.examples.starts
    assert set({**batch}) >= {"f0", "lengths", "file_paths", "errors", "sources", "examples"}
    assert "lengths" in batch and batch.get("harmonic_waves") is None
    with pytest.raises(KeyError, match=r"TrainingSet has no key 'excerpt'.*\.excerpts, \.examples"):
        batch["excerpt"]
    with pytest.raises(KeyError, match=r"Examples has no key 'start'.*\.starts"):
        batch.examples["start"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        batch.errors = {}


def test_to_moves_every_tensor_and_keeps_the_rest(bundled_features):
    """batch_to_device (TrainingSet.to): every tensor of the excerpts and of the examples on
    the device, the files, sources and errors as they were; the original stays where it was."""
    batch = collate(bundled_features[:2])
    moved = batch_to_device(batch, "meta")
    for data in (moved.excerpts, moved.examples):
        tensors = [getattr(data, field.name) for field in dataclasses.fields(data)
                   if isinstance(getattr(data, field.name), torch.Tensor)]
        assert len(tensors) >= 6 and all(t.device.type == "meta" for t in tensors)
    assert moved.file_paths is batch.file_paths and moved.sources is batch.sources
    assert moved.hop_length == moved.examples.hop_length == HOP_LENGTH
    assert batch.excerpts.f0.device.type == "cpu" and batch.examples.audio.device.type == "cpu"


def test_file_features_of_a_training_set_and_of_an_old_dict_batch_agree(bundled_features):
    """file_features gives a Features (the data's sample rate and hop with it), from a
    TrainingSet and from a dict of its old keys (as code from before TrainingSet makes) alike."""
    batch = collate(bundled_features[:2])
    got = file_features(batch, 1)
    assert isinstance(got, Features) and got.path == bundled_features[1].path
    assert (got.sample_rate, got.hop_length) == (SAMPLE_RATE, HOP_LENGTH)
    from_dict = file_features(dict(batch), 1)
    for key in ("audio", "f0", "voiced", "loudness", "mfcc"):
        np.testing.assert_array_equal(getattr(got, key), bundled_features[1][key])
        np.testing.assert_array_equal(from_dict[key], got[key])
