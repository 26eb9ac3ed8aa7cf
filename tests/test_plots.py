"""grown_timbres/plots.py: the notebooks' figures have the axes, lines and titles they promise."""
import numpy as np
import pytest
import torch

from grown_timbres.config import HOP_LENGTH, N_MFCC, SAMPLE_RATE
from grown_timbres.batching import collate
from grown_timbres.growth import held_note, stages_from_table
from grown_timbres.model import DDSPModel
from grown_timbres.plots import plot_loss, plot_stage_controls, plot_transfer
from grown_timbres.transfer import recording_to_controls


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return DDSPModel(hidden_size=32)


FORM_ROWS = [
    {"name": "root", "n_harmonics": "1", "noise": "off", "duration": "0.3"},
    {"name": "five", "n_harmonics": 5, "noise": False, "duration": 0.25},
    ["breath", "all", "on", "0.45"],
]


def octave_lower_batch(features):
    """A fake training batch: the same tones one octave lower."""
    return collate([{**f, "f0": f["f0"] * np.float32(0.5)} for f in features[:3]])


def test_plot_transfer_before_and_after(bundled_features):
    """What the figure shows: on the f0 axis (log scale) the recording's f0 before (dashed) and
    after (solid) the shift, one octave apart, against time in seconds; on the loudness axis
    both loudness curves; the title names the octave shift."""
    import matplotlib.pyplot as plt

    result = recording_to_controls(bundled_features[0], octave_lower_batch(bundled_features))
    fig = plot_transfer(result)
    f0_ax, loud_ax = fig.axes
    assert "octave shift -1" in fig._suptitle.get_text() and f0_ax.get_yscale() == "log"
    (before_f0, after_f0), (before_loud, after_loud) = f0_ax.lines[:2], loud_ax.lines[:2]
    n = len(result["f0"])
    np.testing.assert_allclose(after_f0.get_xdata(), np.arange(n) * HOP_LENGTH / SAMPLE_RATE)
    np.testing.assert_array_equal(before_f0.get_ydata(), bundled_features[0]["f0"])
    np.testing.assert_array_equal(after_f0.get_ydata(), result["f0"])
    np.testing.assert_allclose(np.asarray(after_f0.get_ydata()) / before_f0.get_ydata(), 0.5,
                               rtol=1e-6)
    assert before_f0.get_linestyle() == "--" and after_f0.get_linestyle() == "-"
    np.testing.assert_array_equal(before_loud.get_ydata(), bundled_features[0]["loudness"])
    np.testing.assert_array_equal(after_loud.get_ydata(), result["loudness"])
    before = {"f0": result["original_f0"], "loudness": result["original_loudness"]}
    explicit = plot_transfer(before, result)
    assert len(explicit.axes) == 2
    np.testing.assert_array_equal(explicit.axes[0].lines[1].get_ydata(), result["f0"])
    plt.close("all")


def test_plot_stage_controls_has_an_axes_pair_per_stage(small_model):
    """Top row: one bar per harmonic at that stage's amplitude (the root stage: harmonic 1
    only; five: harmonics 1-5); bottom row: the noise filter's response (flat zero with noise
    off). The bars are the held note's harmonic amplitudes; the noise stage says what the
    noise adds, and that it is barely audible when under 1 dB (an untrained model's noise)."""
    import matplotlib.pyplot as plt

    stages = stages_from_table(FORM_ROWS)
    n_frames = 50
    note = held_note(small_model, {"f0": np.full(n_frames, 220.0),
                                   "voiced": np.ones(n_frames, bool),
                                   "loudness": np.full(n_frames, -20.0),
                                   "mfcc": np.zeros((n_frames, N_MFCC))})
    fig = plot_stage_controls(note, stages)
    assert len(fig.axes) == 2 * len(stages)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert [t.split("\n")[0] for t in titles] == ["root", "five", "breath"]
    steady = note.harmonic_amplitudes()
    rows = np.asarray(fig.axes).reshape(2, len(stages))  # subplots(2, n): row by row
    for column, count in enumerate((1, 5, None)):
        bars = np.array([patch.get_height() for patch in rows[0, column].patches])
        assert len(bars) == small_model.n_harmonics
        expected = steady * (np.arange(len(steady)) < (count or len(steady)))
        np.testing.assert_allclose(bars, expected, rtol=1e-5, atol=1e-9)
        response = rows[1, column].lines[0].get_ydata()
        assert (np.max(response) > 0) == (count is None)
    said = rows[1, 2].texts[0].get_text()
    assert note.noise_adds_db() < 1.0
    assert f"noise adds {note.noise_adds_db():.1f} dB" in said and "barely" in said
    assert rows[1, 0].texts[0].get_text() == "noise off"
    plt.close(fig)


def test_plot_loss_draws_the_total_and_every_term():
    import matplotlib.pyplot as plt

    history = {"loss": [3.0, 2.0, 1.5],
               "terms": {"spectral": [2.9, 1.9, 1.4], "time_l1": [0.1, 0.1, 0.1]}}
    fig = plot_loss(history, "a run")
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["total", "spectral", "time_l1"]
    np.testing.assert_array_equal(lines[1].get_ydata(), history["terms"]["spectral"])
    plt.close(fig)


def test_the_loss_is_plotted_against_epochs_also_when_an_epoch_is_several_steps():
    """A history of 6 steps at 3 steps an epoch spans 2 epochs on the x axis (one point a
    step), in the single-run plot and in the comparison."""
    from grown_timbres.plots import plot_loss_comparison

    history = {"loss": [6.0, 5, 4, 3, 2, 1], "terms": {}, "steps_per_epoch": 3}
    line = plot_loss(history).axes[0].lines[0]
    np.testing.assert_allclose(line.get_xdata(), np.arange(1, 7) / 3)
    record = {"loss_curve": history["loss"], "step_seconds": [1.0] * 6, "steps_per_epoch": 3}
    line = plot_loss_comparison({"run": record}).axes[0].lines[0]
    assert line.get_xdata()[-1] == pytest.approx(2.0)


def test_the_loss_of_a_run_resumed_on_other_files_is_plotted_against_its_counted_epochs():
    """4 steps that count as 2 epochs of the files now (resume.py's rule), then 4 steps at 2
    steps an epoch: the x axis rises evenly to 2, then by half an epoch a step to 4."""
    history = {"loss": [8.0, 7, 6, 5, 4, 3, 2, 1], "terms": {}, "steps_per_epoch": 2,
               "epochs_before": 2.0, "steps_before": 4}
    line = plot_loss(history).axes[0].lines[0]
    np.testing.assert_allclose(line.get_xdata(), [0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4])
