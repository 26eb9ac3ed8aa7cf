"""grown_timbres/scoring.py: evaluate_batch is the one scorer of a resynthesis against its files;
the benchmark's parity distance, measure_room's and the migration cell's ask it for fewer files
and measures and get the very numbers the full report gives."""
import numpy as np
import pytest
import torch

from grown_timbres.config import HOP_LENGTH
from grown_timbres.loss import MultiScaleSpectralLoss
from grown_timbres.model import DDSPModel
from grown_timbres.scoring import (MEASURES, evaluate_batch, mean_metric, resynthesis_metrics,
                                   resynthesize)
from conftest import batch_of_rows, small_inputs

N_FRAMES = 40


@pytest.fixture(scope="module")
def scored():
    """A tiny model, a batch of three rows of different lengths (their targets: a seeded noise,
    quiet), and the full report's metrics of it."""
    torch.manual_seed(0)
    model = DDSPModel(hidden_size=16)
    f0, loudness, mfcc = small_inputs(batch=3, n_frames=N_FRAMES)
    audio = 0.1 * torch.rand(3, N_FRAMES * HOP_LENGTH, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([N_FRAMES, 30, 25])
    batch = batch_of_rows({"f0": f0, "loudness": loudness, "mfcc": mfcc, "audio": audio,
                           "lengths": lengths}, paths=["a.wav", "b.wav", "c.wav"])
    metrics, outputs = evaluate_batch(model, batch, progress=False)
    return model, batch, metrics, outputs


def test_the_full_report_scores_every_file_beside_the_sine(scored):
    _, batch, metrics, outputs = scored
    assert list(metrics) == ["a", "b", "c"]
    assert all(list(m["model"]) == list(MEASURES) == list(m["sine"]) for m in metrics.values())
    assert [len(o) for o in outputs] == [n * HOP_LENGTH for n in batch["lengths"].tolist()]


def test_fewer_rows_and_measures_give_the_same_numbers(scored):
    """The benchmark's call: rows, spectral distance only, no sine."""
    model, batch, metrics, _ = scored
    some, outputs = evaluate_batch(model, batch, progress=False, rows=[2, 0],
                                   measures=["spectral_distance"], sine=False)
    assert list(some) == ["c", "a"] and [len(o) for o in outputs] == [25 * HOP_LENGTH,
                                                                        N_FRAMES * HOP_LENGTH]
    for stem, by_kind in some.items():
        assert by_kind == {"model": {"spectral_distance":
                                     metrics[stem]["model"]["spectral_distance"]}}


def test_the_spectral_distance_is_the_plain_loss_of_output_and_file(scored):
    model, batch, metrics, _ = scored
    for i, output in enumerate(resynthesize(model, batch)):
        n = int(batch["lengths"][i]) * HOP_LENGTH
        expected = MultiScaleSpectralLoss()(torch.from_numpy(output)[None],
                                            batch["audio"][i: i + 1, :n])
        got = metrics["abc"[i]]["model"]["spectral_distance"]
        assert got == pytest.approx(float(expected), rel=1e-6)


def test_an_unknown_measure_is_refused_naming_the_known_ones():
    target = {"audio": np.zeros(4096, np.float32)}
    with pytest.raises(ValueError, match="unknown measures \\['loudness'\\]: choose from "
                                         "spectral_distance"):
        resynthesis_metrics(np.zeros(4096, np.float32), target, measures=["loudness"])


def test_mean_metric_leaves_out_nan_and_is_nan_without_any_value():
    metrics = {"a": {"model": {"f0_error_cents": 2.0}}, "b": {"model": {"f0_error_cents": 4.0}},
               "c": {"model": {"f0_error_cents": float("nan")}}}
    assert mean_metric(metrics, "f0_error_cents") == pytest.approx(3.0)
    assert np.isnan(mean_metric({"c": metrics["c"]}, "f0_error_cents"))
