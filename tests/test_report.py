"""grown_timbres/report.py: the side-by-side comparison of run records (speedup from the steady
pace, metrics over shared files, older records' missing terms), with every expected number
worked out here from the inputs; numbers formatted for people."""
import pytest

from grown_timbres.model import DDSPModel
from grown_timbres.report import comparison_markdown, comparison_rows, format_number
from grown_timbres.runs import load_run_record, make_run_record, save_run_record


def fake_run(n_files, n_epochs, seconds_per_epoch, final_spectral, sine_cents=12.0):
    """(batch, history, metrics) of a run over n_files files, each epoch taking
    seconds_per_epoch, synchronised every epoch; the spectral loss falls linearly to
    final_spectral over its last 10 epochs."""
    batch = {"file_paths": [f"scale_tones/{i + 1:02d}.wav" for i in range(n_files)],
             "errors": {"bad.wav": "silent"}, "sources": []}
    spectral = [final_spectral + 0.1 * (n_epochs - 1 - e) for e in range(n_epochs)]
    history = {"loss": [s + 0.01 for s in spectral],
               "terms": {"spectral": spectral, "time_l1": [0.01] * n_epochs},
               "timed_steps": list(range(1, n_epochs + 1)),
               "elapsed_seconds": [seconds_per_epoch * (e + 1) for e in range(n_epochs)],
               "skipped_steps": 1, "status": "finished"}
    metrics = {f"{i + 1:02d}": {
        "model": {"spectral_distance": 1.0 + i, "f0_error_cents": 2.0 if i else float("nan"),
                  "voiced_frames_matched": 1.0, "loudness_l1_db": 0.5},
        "sine": {"spectral_distance": 4.0, "f0_error_cents": sine_cents,
                 "voiced_frames_matched": 1.0, "loudness_l1_db": 1.5}} for i in range(n_files)}
    return batch, history, metrics


@pytest.fixture
def records():
    """The original notebook: 1 file, 20 epochs of 3 s (60 s in all, 3 s per file per epoch).
    The optimized one: 12 files, 10 epochs of 9 s (90 s; 0.75 s per file per epoch): 4x faster
    per file per epoch although it took longer in total and ran half the epochs."""
    model = DDSPModel(hidden_size=16)
    runs = {}
    for label, (n_files, n_epochs, seconds) in {"original": (1, 20, 3.0),
                                                "optimized": (12, 10, 9.0)}.items():
        batch, history, metrics = fake_run(n_files, n_epochs, seconds,
                                           final_spectral=1.0 + n_files / 100)
        runs[label] = make_run_record(f"ddsp_{label}", model, batch, history,
                                         {"n_epochs": n_epochs}, metrics,
                                         [f"outputs/ddsp_{label}/resynth_01.wav"],
                                         feature_seconds=1.5, root=".", device="cpu")
    return runs


def test_comparison_rows_speedup_per_file_and_content(records):
    rows = comparison_rows(records)
    assert [r["run"] for r in rows] == ["original", "optimized"]
    original, optimized = rows
    # steady time per file per epoch: 3 s / 1 file = 3 s; 9 s / 12 files = 0.75 s
    assert original["speedup per example"] == pytest.approx(1.0)
    assert optimized["speedup per example"] == pytest.approx(3.0 / 0.75)
    assert original["ms per example per step"] == pytest.approx(3000.0)
    assert optimized["ms per example per step"] == pytest.approx(750.0)
    assert optimized["steady ms per step"] == pytest.approx(9000.0)
    assert optimized["warm-up s"] == pytest.approx(0.0)
    assert (original["files"], optimized["files"]) == (1, 12)
    assert (original["epochs"], optimized["epochs"]) == (20, 10)
    assert optimized["training s"] == pytest.approx(90.0)
    assert original["final spectral loss"] == pytest.approx(1.01 + 0.45)
    assert optimized["final spectral loss"] == pytest.approx(1.12 + 0.45)
    assert optimized["final time_l1 loss"] == pytest.approx(0.01)
    # metrics over the files both runs learned: only 01 (model spectral distance 1.0, f0 error
    # NaN), not the mean over the optimized run's 12 files
    assert optimized["spectral distance (sine)"] == "1.000 (4.000)"
    assert optimized["f0 error cents (sine)"] == "nan (12.0)"
    assert original["f0 error cents (sine)"] == "nan (12.0)"
    assert optimized["loudness L1 dB (sine)"] == "0.50 (1.50)"


def test_comparison_markdown_table(records):
    lines = comparison_markdown(records).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:6] == ["run", "recorded", "device", "files", "examples per step", "epochs"]
    assert "speedup per example" in header
    assert lines[1] == "|" + "---|" * len(header)
    assert len(lines) == 7 and lines[4] == ""
    assert lines[5] == "Metrics over the file both runs learned: 01."
    cells = {row[0]: dict(zip(header, row)) for row in
             ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}
    assert cells["optimized"]["speedup per example"] == "4.00x"
    assert cells["original"]["speedup per example"] == "1.00x"
    assert cells["optimized"]["files"] == "12" and cells["original"]["files"] == "1"
    assert cells["optimized"]["ms per example per step"] == "750"
    assert cells["optimized"]["training s"] == "90.0"
    assert cells["optimized"]["final spectral loss"] == "1.57"


def test_a_record_written_before_named_loss_terms_loads_and_compares(records, tmp_path):
    """Run records from before issue 10 hold spectral_loss_curve and final_spectral_loss: they
    load as the spectral term, and a term they lack shows as '-' in the comparison."""
    old = dict(records["original"])
    old["spectral_loss_curve"] = old.pop("loss_term_curves")["spectral"]
    old["final_spectral_loss"] = old.pop("final_loss_terms")["spectral"]
    path = save_run_record(tmp_path / "ddsp_original.json", old)
    loaded = load_run_record(path)
    assert loaded["loss_term_curves"] == {"spectral": old["spectral_loss_curve"]}
    assert loaded["final_loss_terms"] == {"spectral": pytest.approx(1.01 + 0.45)}
    rows = comparison_rows({"original": loaded, "optimized": records["optimized"]})
    assert rows[0]["final spectral loss"] == pytest.approx(1.01 + 0.45)
    assert rows[0]["final time_l1 loss"] is None
    table = comparison_markdown({"original": loaded, "optimized": records["optimized"]})
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    original = [c.strip() for c in table.splitlines()[2].strip("|").split("|")]
    assert original[header.index(r"final time\_l1 loss")] == "-"  # Markdown-escaped


def test_speedup_uses_the_steady_pace_not_the_total(records):
    """A 60 s compile in the optimized run's first window leaves its steady pace, and so the
    speedup, unchanged; the 60 s show as warm-up."""
    slow_start = dict(records["optimized"])
    slow_start["warmup_seconds"] = 60.0
    slow_start["total_training_seconds"] += 60.0
    rows = comparison_rows({"original": records["original"], "optimized": slow_start})
    assert rows[1]["speedup per example"] == pytest.approx(4.0)
    assert rows[1]["warm-up s"] == 60.0


@pytest.mark.parametrize("value, text", [
    (1527.4, "1527"), (12.345, "12.3"), (4.5678, "4.57"), (0.0123456, "0.0123"), (0.5, "0.5"),
    (0.0, "0.00"), (3, "3"), (None, "-"), (float("nan"), "nan"), ("cpu", "cpu")])
def test_numbers_are_formatted_for_people(value, text):
    assert format_number(value) == text
