"""The repository's own promises: stripped, valid notebooks; README and CI in step."""
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_both_notebooks_exist():
    assert {p.name for p in NOTEBOOKS} >= {"ddsp_original.ipynb", "ddsp_optimized.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_and_stripped(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)  # nbformat.read only logs invalid notebooks
    result = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"{path.name} has outputs: run nbstripout on it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_cells_stay_thin(path):
    """No model, loss or feature code in cells: those live in ddsp_helpers."""
    source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells
                       if c.cell_type == "code")
    for forbidden in ("class ", "torch.stft", "librosa.pyin", "nn.Module", "def "):
        assert forbidden not in source, f"{path.name} defines {forbidden.strip()!r} in a cell"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = next(line for line in ci.splitlines() if "pytest" in line)
    assert command.strip() in readme


def test_outputs_are_ignored():
    assert "outputs/" in (ROOT / ".gitignore").read_text().split()
