"""grown_timbres/runs.py: a run record holds the run (times, the steady pace apart from warm-up)
and loads back as written; a record shared or edited by hand that is no JSON object, lacks a
field or holds one of another type names its file and the field, and the comparison skips it;
unknown fields are kept."""
import json
import os

import pytest

from grown_timbres.runs import (RunRecordError, load_run_record, save_run_record,
                                steady_and_warmup, step_seconds)
from test_notebook import fake_project, shown
from test_report import records  # noqa: F401  (a fixture)

STEM = "01_C4"


def saved_record(tmp_path, **fields):
    """The path of the original run's record (test_notebook.fake_project) with `fields` set
    (None: removed)."""
    root = fake_project(tmp_path / "project")
    path = root / "outputs" / "runs" / "ddsp_original.json"
    record = json.loads(path.read_text())
    for field, value in fields.items():
        if value is None:
            record.pop(field)
        else:
            record[field] = value
    path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize("fields, named", [
    ({"device": None}, "required field 'device' is missing"),
    ({"device": 5}, "field device must be text, not int"),
    ({"n_files": -1}, "field n_files must be a whole number, 0 or more"),
    ({"n_files": True}, "field n_files must be a whole number"),
    ({"files": "01_C4.wav"}, "field files must be a list, not str"),
    ({"loss_curve": [2.0, "1.0"]}, r"field loss_curve\[1\] must be a number, not str"),
    ({"final_loss_terms": {"spectral": "low"}}, r"field final_loss_terms\['spectral'\] must be"),
    ({"metrics": {STEM: {"model": {}}}}, r"field metrics\['01_C4'\]\['model'\]\['spectral_dis"),
    ({"metrics": {STEM: {"model": None, "sine": None}}}, r"metrics\['01_C4'\]\['model'\] must"),
    ({"steps_per_epoch": 0}, "field steps_per_epoch must be a number above 0"),
    ({"steady_step_seconds": None, "timed_steps": ["1"]}, r"field timed_steps\[0\] must be"),
    ({"steady_step_seconds": None, "timed_steps": [10**12]}, "timed_steps counts more steps"),
])
def test_a_record_with_a_field_missing_or_of_another_type_names_the_file_and_field(
        tmp_path, fields, named):
    path = saved_record(tmp_path, **fields)
    with pytest.raises(RunRecordError, match=f"^{str(path)}: " + ".*" + named):
        load_run_record(path)


@pytest.mark.parametrize("text, named", [
    ('{"device": "cpu",', "not valid JSON (Expecting property name enclosed in double quotes "
                          "at line 1, column 18)"),
    ("[1, 2]", "a run record is a JSON object, not list"),
    ("1" * 5000, "not a usable JSON record"),
    ("[" * 100_000, "not a usable JSON record"),
    (b"\xff\xfe{}", "not UTF-8 text"),
])
def test_a_record_that_is_no_json_object_names_the_file(tmp_path, text, named):
    path = tmp_path / "ddsp_original.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(RunRecordError) as caught:
        load_run_record(path)
    assert str(caught.value).startswith(f"{path}: {named}")


def test_a_record_over_the_size_limit_is_not_read(tmp_path, monkeypatch):
    import grown_timbres.runs as records

    path = saved_record(tmp_path)
    monkeypatch.setattr(records, "MAX_RUN_RECORD_BYTES", 100)
    with pytest.raises(RunRecordError, match=r"bytes, more than MAX_RUN_RECORD_BYTES=100"):
        load_run_record(path)


def test_unknown_fields_are_kept_and_no_regular_file_is_no_record(tmp_path):
    path = saved_record(tmp_path, added_later={"tuning": [440.0]}, notes="mine")
    record = load_run_record(path)
    assert record["added_later"] == {"tuning": [440.0]} and record["notes"] == "mine"
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # would hang a reader: it is not read
    assert load_run_record(fifo) is None and load_run_record(tmp_path) is None


def test_the_comparison_skips_a_bad_record_naming_its_file_and_field(tmp_path, monkeypatch):
    path = saved_record(tmp_path, created=None)
    records, text = shown(monkeypatch, path.parent)
    assert records is None and "| run |" not in text
    assert "Not compared:" in text and "ddsp\\_original\\.json" in text
    assert "required field \\'created\\' is missing" in text
    assert "notebooks/ddsp_original.ipynb" in text and "No run record yet" not in text
    path.write_text("{")
    records, text = shown(monkeypatch, path.parent)
    assert records is None and "not valid JSON" in text


def test_a_record_timing_more_steps_than_its_curve_holds_still_compares(tmp_path, monkeypatch):
    path = saved_record(tmp_path, step_seconds=[1.0] * 50, loss_curve=[])
    records, text = shown(monkeypatch, path.parent)
    assert records is not None and "| run |" in text


# ----------------------------------------------------------------------------- a run, recorded
def test_step_seconds_spreads_each_window_evenly():
    """Syncs after steps 2, 5 and 6 at 4, 10 and 13 s: steps 1-2 took 2 s each, 3-5 2 s each,
    6 took 3 s."""
    assert step_seconds([2, 5, 6], [4.0, 10.0, 13.0]) == [2.0, 2.0, 2.0, 2.0, 2.0, 3.0]
    assert step_seconds([], []) == []


def test_a_record_written_before_steps_were_told_from_epochs_loads_with_the_new_names(
        tmp_path):
    """timed_epochs, epoch_seconds and steady_epoch_seconds held steps: they load as
    timed_steps, step_seconds and steady_step_seconds."""
    from conftest import FIXTURES

    record = load_run_record(FIXTURES / "run_record_round1.json")
    assert record["timed_steps"] == [1, 2, 3] and len(record["step_seconds"]) == 3
    assert "timed_epochs" not in record and "epoch_seconds" not in record


def test_make_run_record_holds_the_run(records):
    original, optimized = records["original"], records["optimized"]
    assert original["n_files"] == 1 and optimized["n_files"] == 12
    assert optimized["files"] == [f"scale_tones/{i:02d}.wav" for i in range(1, 13)]
    assert optimized["rejected_files"] == {"bad.wav": "silent"}
    assert original["n_epochs"] == 20 and optimized["n_epochs"] == 10
    assert original["total_training_seconds"] == pytest.approx(60.0)
    assert optimized["total_training_seconds"] == pytest.approx(90.0)
    assert original["seconds_per_file"] == pytest.approx(60.0)
    assert optimized["seconds_per_file"] == pytest.approx(7.5)
    assert optimized["step_seconds"] == pytest.approx([9.0] * 10)
    assert optimized["steady_step_seconds"] == pytest.approx(9.0)
    assert optimized["warmup_seconds"] == pytest.approx(0.0)
    assert optimized["wavs"] == ["outputs/ddsp_optimized/resynth_01.wav"]  # relative to root
    assert optimized["rejected_files"] == {"bad.wav": "silent"}
    # the last 10 spectral losses of the optimized run: 1.12 + 0.9 .. 1.12 + 0.0, mean 1.57
    assert optimized["final_loss_terms"]["spectral"] == pytest.approx(1.12 + 0.45)
    assert optimized["final_loss_terms"]["time_l1"] == pytest.approx(0.01)
    assert optimized["loss_term_curves"]["time_l1"] == [0.01] * 10
    assert optimized["final_loss"] == pytest.approx(1.12 + 0.01)
    assert optimized["skipped_steps"] == 1 and optimized["training_status"] == "finished"
    assert optimized["config"]["model"]["hidden_size"] == 16
    assert optimized["device_type"] == "cpu"
    assert json.loads(json.dumps(optimized, default=str))["n_files"] == 12  # JSON-ready


def test_save_and_load_run_record_round_trip(records, tmp_path):
    path = save_run_record(tmp_path / "runs" / "ddsp_optimized.json", records["optimized"])
    loaded = load_run_record(path)
    assert loaded["seconds_per_file"] == records["optimized"]["seconds_per_file"]
    assert loaded["metrics"]["02"]["model"]["spectral_distance"] == 2.0
    assert load_run_record(tmp_path / "missing.json") is None


def test_steady_pace_leaves_out_the_first_window_and_warmup_adds_capture():
    """Synced every 5 steps: the first window (compile) took 20 s, later ones 1 s per step.
    Steady 1 s per step; warm-up = 20 - 5 x 1 = 15 s, plus 4 s of capture."""
    assert steady_and_warmup([5, 10, 15, 20], [20.0, 25.0, 30.0, 35.0], 4.0) == pytest.approx(
        (1.0, 19.0))
    # one window only: its mean is the pace and no warm-up can be told apart
    assert steady_and_warmup([4], [8.0]) == (2.0, 0.0)
    assert steady_and_warmup([], []) == (0.0, 0.0)
