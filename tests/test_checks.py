"""grown_timbres/checks.py: check_run_outputs passes what a good run makes and names every wrong
thing: a non-finite, silent or short wav, a melody without its room's tail, a non-finite metric,
a growth table missing a stage or a file; the notebooks' other smoke checks (training, the
cached loss, the comparison) pass a good run and name what is wrong."""
import numpy as np
import pytest
import soundfile as sf

from grown_timbres.checks import (RunCheckError, cached_and_plain_loss, check_cached_loss,
                                  check_comparison, check_run_outputs, check_training,
                                  expected_samples)
from grown_timbres.config import HOP_LENGTH, SAMPLE_RATE
from grown_timbres.room_part import ROOM_SECONDS
from grown_timbres.stages import GROWTH_STAGES, Stage
from grown_timbres.notes import parse_note_list
from grown_timbres.report import growth_table

SR = SAMPLE_RATE
NOTES = parse_note_list("C4:0.4 E4:0.4 G4:0.8")  # 1.6 s
STAGES = [Stage("one", 1, False, 0.5), Stage("all", None, True, 0.5)]


class Note:  # what growth_table reads of a held note
    @staticmethod
    def noise_adds_db():
        return 0.4


def tone(seconds, amplitude=0.3):
    t = np.arange(round(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def wav(tmp_path, name, audio):
    path = tmp_path / name
    sf.write(str(path), np.asarray(audio, np.float32), SR, subtype="FLOAT")
    return path


def good_metrics():
    values = {"spectral_distance": 1.2, "f0_error_cents": 3.0, "voiced_frames_matched": 1.0,
              "loudness_l1_db": 2.0}
    return {"a": {"model": dict(values), "sine": dict(values)},
            "b": {"model": dict(values), "sine": dict(values)}}


@pytest.fixture
def good_run(tmp_path):
    """(wavs, metrics, growth table) of a run that made everything right, with a room."""
    growth = tone(1.0)
    wavs = {wav(tmp_path, "resynth_a.wav", tone(0.5)): round(0.5 * SR),
            wav(tmp_path, "grown_a.wav", growth): STAGES,
            wav(tmp_path, "melody.wav", tone(1.6 + 0.05 + ROOM_SECONDS)): NOTES}
    table = growth_table({"a": growth, "b": growth}, {"a": Note, "b": Note}, STAGES)
    return wavs, good_metrics(), table


def test_a_good_run_passes(good_run):
    wavs, metrics, table = good_run
    summary = check_run_outputs(wavs, metrics, table, STAGES, room=True)
    assert summary.startswith("checked 3 wavs (finite, not silent, as long as expected), "
                              "16 metrics (finite) and the growth table (2 files x 2 stages)")


def problems_of(*args, **kwargs) -> str:
    with pytest.raises(RunCheckError) as caught:
        check_run_outputs(*args, **kwargs)
    return str(caught.value)


@pytest.mark.parametrize("name, audio, message", [
    ("resynth_a.wav", np.where(np.arange(round(0.5 * SR)) == 1000, np.nan, tone(0.5)),
     "resynth_a.wav: 1 non-finite samples"),
    ("resynth_a.wav", np.zeros(round(0.5 * SR)), "resynth_a.wav: silent"),
    ("resynth_a.wav", tone(0.4), f"resynth_a.wav: {round(0.4 * SR)} samples, expected "
                                 f"{round(0.5 * SR)}"),
    ("grown_a.wav", tone(1.1), f"grown_a.wav: {round(1.1 * SR)} samples, expected {SR}"),
    ("melody.wav", tone(1.6 + 0.05), "melody.wav: "),  # no room tail
    ("melody.wav", tone(1.5 + ROOM_SECONDS), "melody.wav: "),  # a note short
])
def test_a_wrong_wav_is_named_with_what_is_wrong(good_run, tmp_path, name, audio, message):
    wavs, metrics, table = good_run
    wav(tmp_path, name, audio)
    problems = problems_of(wavs, metrics, table, STAGES, room=True)
    assert message in problems and len(problems.splitlines()) == 2, problems


def test_a_melody_lasts_its_notes_and_the_rooms_tail_only_with_a_room():
    notes = round(1.6 * SR)
    tail = round(ROOM_SECONDS * SR)
    assert expected_samples(NOTES)[0] == notes
    assert expected_samples(NOTES, room=True)[0] == notes + tail
    f0 = np.full(100, 440.0)
    assert expected_samples(f0) == (100 * HOP_LENGTH, 101 * HOP_LENGTH)
    assert expected_samples(f0, room=True)[0] == 100 * HOP_LENGTH + tail
    assert expected_samples(GROWTH_STAGES, room=True) == (round(5.5 * SR),) * 2
    with pytest.raises(TypeError, match="an expected length is samples, Stages, Notes or f0"):
        expected_samples("1 s")


def test_a_missing_wav_and_a_non_finite_metric_are_named(good_run, tmp_path):
    wavs, metrics, table = good_run
    metrics["b"]["sine"]["f0_error_cents"] = float("nan")
    wavs[tmp_path / "grown_b.wav"] = STAGES
    problems = problems_of(wavs, metrics, table, STAGES, room=True)
    assert "grown_b.wav: not written" in problems
    assert "metric f0_error_cents of b (sine) is nan" in problems
    assert "the metrics table is empty" in problems_of(wavs, {}, table, STAGES, room=True)


def test_a_growth_table_needs_a_column_per_stage_and_a_row_per_file(good_run):
    wavs, metrics, table = good_run
    problems = problems_of(wavs, metrics, table, STAGES[:1], room=True)
    assert "the growth table's stages are ['one', 'all'], not ['one']" in problems
    lines = table.splitlines()
    problems = problems_of(wavs, metrics, "\n".join(lines[:-1]), STAGES, room=True)
    assert "the growth table's rows are ['a'], not one per file ['a', 'b']" in problems
    broken = table.replace(lines[-1], lines[-1].replace("Hz", "Hz | extra", 1))
    assert "growth of b: 3 stages, not 2" in problems_of(wavs, metrics, broken, STAGES,
                                                          room=True)
    broken = growth_table({"a": tone(1.0), "b": np.full(SR, np.nan)}, {"a": Note, "b": Note},
                          STAGES)
    problems = problems_of(wavs, metrics, broken, STAGES, room=True)
    assert "growth of b, stage 'one': 'nan dB, nan Hz' is not a finite level and centroid" \
        in problems, problems


def test_stage_and_file_names_with_markdown_characters_are_read_as_growth_table_escapes_them():
    """The default stages' names hold parentheses and a plus ("full timbre (harmonics +
    noise)") and the bundled tones' names an underscore, which growth_table escapes: the check
    reads them back as the names they are."""
    growth = tone(sum(stage.duration for stage in GROWTH_STAGES))
    metrics = {"01_C4": good_metrics()["a"], "02_Cs4": good_metrics()["b"]}
    table = growth_table({stem: growth for stem in metrics}, {stem: Note for stem in metrics},
                         GROWTH_STAGES)
    assert "\\(" in table and "01\\_C4" in table
    summary = check_run_outputs({}, metrics, table, GROWTH_STAGES)
    assert f"2 files x {len(GROWTH_STAGES)} stages" in summary


# ----------------------------------------------------------------------------- smoke checks
def finished(loss, status="finished"):
    return {"status": status, "loss": loss}


def test_training_that_finished_and_learned_passes():
    assert check_training(finished([1.0, 0.5])) == ("training finished; the loss fell from "
                                                    "1.0000 to 0.5000")


@pytest.mark.parametrize("history, message", [
    (finished([1.0, 0.95]), "the loss did not fall: 1.0000 -> 0.9500 in 2 steps"),
    (finished([1.0, float("nan")]), "training did not finish cleanly: finished"),
    (finished([]), "training did not finish cleanly: finished"),
    (finished([1.0, 0.5], "interrupted at step 2"), "did not finish cleanly: interrupted"),
])
def test_training_that_did_not_finish_or_learn_is_named(history, message):
    with pytest.raises(RunCheckError, match=message):
        check_training(history)


def test_an_injected_nan_must_stop_training_at_its_epoch():
    stopped = finished([], "stopped at epoch 3: the loss became nan; ...")
    assert "epoch 3" in check_training(stopped, nan_epoch="3")
    with pytest.raises(RunCheckError, match="no NaN stop: finished"):
        check_training(finished([1.0, 0.5]), nan_epoch="3")


def test_the_cached_loss_equals_the_plain_one_and_a_difference_is_named():
    import torch

    from grown_timbres.model import DDSPModel
    from conftest import batch_of_rows, small_inputs

    torch.manual_seed(0)
    f0, loudness, mfcc = small_inputs(batch=2, n_frames=30)
    audio = 0.1 * torch.rand(2, 30 * HOP_LENGTH)
    batch = batch_of_rows({"f0": f0, "loudness": loudness, "mfcc": mfcc, "audio": audio,
                           "lengths": torch.tensor([30, 20])})
    cached, plain = cached_and_plain_loss(DDSPModel(hidden_size=16), batch)
    assert cached == pytest.approx(plain, rel=1e-5)
    assert "equals the plain loss" in check_cached_loss(cached, plain)
    with pytest.raises(RunCheckError, match="cached-target loss 1.0010000 != plain loss 1.0000000"):
        check_cached_loss(1.001, 1.0)


def test_the_comparison_shows_this_record_once_the_other_notebook_ran(tmp_path):
    record = {"notebook": "ddsp_original", "created": "2026-12-04 18:00:00"}
    assert "ddsp_optimized.ipynb has not run" in check_comparison(None, tmp_path, record)
    with pytest.raises(RunCheckError, match="should show both records"):
        check_comparison({"original": record}, tmp_path, record)
    (tmp_path / "ddsp_optimized.json").write_text("{}")
    with pytest.raises(RunCheckError, match="should show both records"):
        check_comparison(None, tmp_path, record)
    older = {**record, "created": "2026-12-03 09:00:00"}
    with pytest.raises(RunCheckError, match="did not show the run record this notebook just"):
        check_comparison({"original": older, "optimized": {}}, tmp_path, record)
    assert "beside" in check_comparison({"original": record, "optimized": {}}, tmp_path, record)
