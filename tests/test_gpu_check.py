"""scripts/prepare_gpu_check.py and scripts/gpu_check.py without a GPU: what is carried never
shadows the GPU image's own packages, a wheel's unmet requirement is named, an executed
notebook too large to come back is cut, the notebooks' parity gate reads the run records'
metrics on the original's file, and the parity probe's variants are compared with its
reference. (CI runs `gpu_check.py --dry-run` itself.)"""
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import gpu_check  # noqa: E402
import prepare_gpu_check as prepare  # noqa: E402


def test_carried_packages_never_replace_the_gpu_images_own():
    carried = {prepare.normalized(name) for name in prepare.CARRIED}
    assert not carried & prepare.IMAGE_PACKAGES
    assert {"torch", "numpy", "numba"} <= prepare.IMAGE_PACKAGES


def wheel(folder: Path, name: str, requirements: list) -> Path:
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}-1.0.dist-info/METADATA", "Metadata-Version: 2.1\n"
                         f"Name: {name}\n" + "".join(f"Requires-Dist: {r}\n" for r in requirements))
    return path


def test_unmet_requirements_are_those_neither_carried_nor_in_the_image(tmp_path):
    made = wheel(tmp_path, "librosa", [
        "numpy>=1.22", "soxr>=0.3.2", "no-such-package>=1", "pytest; extra == 'tests'",
        "windows-only; sys_platform == 'win32'", "old-backport; python_version < '3.10'"])
    unmet = prepare.unmet_requirements([made])
    assert len(unmet) == 1 and "no-such-package" in unmet[0]


def test_an_executed_notebook_too_large_to_come_back_is_cut(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "NOTEBOOK_MAX_BYTES", 50_000)
    cell = nbformat.v4.new_code_cell("play()")
    cell.outputs = [nbformat.v4.new_output("display_data", {"text/html": "x" * 60_000,
                                                            "text/plain": "player"}),
                    nbformat.v4.new_output("stream", text="ok\n")]
    notebook = nbformat.v4.new_notebook(cells=[cell])
    gpu_check.write_notebook(notebook, tmp_path / "small.ipynb")
    written = nbformat.read(tmp_path / "small.ipynb", as_version=4)
    data = written.cells[0].outputs[0]["data"]
    assert "left out by gpu_check" in data["text/html"] and data["text/plain"] == "player"
    assert written.cells[0].outputs[1]["text"] == "ok\n"


def record(distances: dict) -> dict:
    """A run record's metrics as the notebooks write them (other fields left out)."""
    return {"metrics": {stem: {"model": {"spectral_distance": d, "f0_error_cents": 5.0},
                               "sine": {"spectral_distance": 9.0}}
                        for stem, d in distances.items()}}


def test_notebook_parity_fails_the_2026_12_04_gap_and_names_its_figure():
    optimized = record({"01_C4": 1.292, "02_Cs4": 0.84})
    figures, problem = gpu_check.notebook_parity(optimized, record({"01_C4": 0.704}), 0.05)
    assert figures["parity_files"] == ["01_C4"]  # the original's file only, not 02_Cs4
    assert abs(figures["parity_change"] - (1.292 / 0.704 - 1)) < 1e-9
    assert figures["parity_ok"] is False
    assert "parity_change +83.5%" in problem and "01_C4" in problem


def test_notebook_parity_passes_within_the_tolerance_either_way():
    for optimized in (0.724, 0.68):  # +1.3% (2026-11-27) and -3.4%
        figures, problem = gpu_check.notebook_parity(record({"01_C4": optimized}),
                                                     record({"01_C4": 0.715}), 0.05)
        assert problem is None and figures["parity_ok"] is True
    figures, problem = gpu_check.notebook_parity(record({"01_C4": 0.6}),
                                                 record({"01_C4": 0.715}), 0.05)
    assert figures["parity_ok"] is False and "-16.1%" in problem  # better by too much: not parity


def test_notebook_parity_names_a_missing_or_undefined_metric():
    figures, problem = gpu_check.notebook_parity(record({"02_Cs4": 0.7}),
                                                 record({"01_C4": 0.7}), 0.05)
    assert "no metric for 01_C4" in problem and "parity_change" not in figures
    _, problem = gpu_check.notebook_parity(record({"01_C4": float("nan")}),
                                           record({"01_C4": 0.7}), 0.05)
    assert problem is not None
    _, problem = gpu_check.notebook_parity(record({"01_C4": 0.7}), {"metrics": None}, 0.05)
    assert "original notebook's run record has no metrics" in problem


def test_parity_variants_are_compared_with_the_float32_eager_reference():
    variants = {"fp32_eager": {"status": "measured", "metric_mean": 0.70},
                "fp16_captured": {"status": "measured", "metric_mean": 0.72},
                "notebook": {"status": "measured", "metric_mean": 1.10},
                "tf32_captured": {"status": "refused", "reason": "no CUDA"},
                "benchmark_loop": {"status": "failed", "reason": "RuntimeError: boom"}}
    figures, problems = gpu_check.against_reference(variants, 0.05)
    assert set(figures) == {"fp16_captured_vs_fp32_eager", "notebook_vs_fp32_eager"}
    assert abs(figures["notebook_vs_fp32_eager"] - (1.10 / 0.70 - 1)) < 1e-9
    assert len(problems) == 2 and problems[0].startswith("notebook_vs_fp32_eager +57.1%")
    assert "benchmark_loop: RuntimeError: boom" in problems[1]
    refused_reference = {**variants, "fp32_eager": {"status": "refused", "reason": "x"}}
    assert gpu_check.against_reference(refused_reference, 0.05)[0] == {}


def test_the_parity_probe_is_left_out_of_the_default_plan_but_has_its_limits():
    assert "parity" in gpu_check.PARTS and "parity" not in gpu_check.DEFAULT_PARTS
    assert set(gpu_check.PARTS) <= set(gpu_check.PART_LIMIT_S) & set(gpu_check.PART_LEAST_S)
    assert set(gpu_check.PARTS) <= set(gpu_check.HEADLINE)


def test_parity_variants_are_chosen_by_name_and_always_keep_the_reference():
    assert gpu_check.chosen_parity_variants(None) == list(gpu_check.PARITY_VARIANTS)
    assert gpu_check.chosen_parity_variants("fp32_eager, notebook") == ["fp32_eager", "notebook"]
    with pytest.raises(ValueError, match="--parity-variants: notebok"):
        gpu_check.chosen_parity_variants("fp32_eager,notebok")
    with pytest.raises(ValueError, match="no fp32_eager"):
        gpu_check.chosen_parity_variants("notebook")
