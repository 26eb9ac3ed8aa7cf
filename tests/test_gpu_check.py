"""scripts/prepare_gpu_check.py and scripts/gpu_check.py without a GPU: what is carried never
shadows the GPU image's own packages, a wheel's unmet requirement is named, and an executed
notebook too large to come back is cut. (CI runs `gpu_check.py --dry-run` itself.)"""
import sys
import zipfile
from pathlib import Path

import nbformat

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
