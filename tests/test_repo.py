"""The repository's own promises: stripped, valid notebooks; README and CI in step."""
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_both_notebooks_exist_and_their_colab_badges_open_them():
    """README's table lists both notebooks; each Colab badge opens that very notebook
    (github/<owner>/<repo>/blob/main/notebooks/<name>) of the repository that the notebook's
    setup cell clones (REPO_URL), as the README asks forks to keep in step."""
    import re

    assert {p.name for p in NOTEBOOKS} >= {"ddsp_original.ipynb", "ddsp_optimized.ipynb"}
    readme = (ROOT / "README.md").read_text()
    badges = dict(re.findall(r"^\| `notebooks/([\w.]+\.ipynb)` \|.*\(https://colab\.research\.google"
                             r"\.com/github/([\w.-]+/[\w.-]+/blob/main/notebooks/[\w.]+)\) \|$",
                             readme, flags=re.M))
    assert set(badges) == {"ddsp_original.ipynb", "ddsp_optimized.ipynb"}
    for name, target in badges.items():
        repo, path = target.split("/blob/main/")
        assert path == f"notebooks/{name}" and (ROOT / path).is_file()
        setup = "\n".join(c.source for c in nbformat.read(ROOT / path, as_version=4).cells
                          if c.cell_type == "code")
        repo_url = re.search(r'^REPO_URL = "([^"]+)"', setup, flags=re.M)
        assert repo_url and repo_url.group(1).rstrip("/").removesuffix(".git") == \
            f"https://github.com/{repo}", name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_and_stripped(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)  # nbformat.read only logs invalid notebooks
    result = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"{path.name} has outputs: run nbstripout on it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_cells_stay_thin(path):
    """No model, loss or feature code in cells: those live in grown_timbres/."""
    source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells
                       if c.cell_type == "code")
    for forbidden in ("class ", "torch.stft", "librosa.pyin", "nn.Module", "def "):
        assert forbidden not in source, f"{path.name} defines {forbidden.strip()!r} in a cell"


def readme_command(marker: str) -> str:
    """The README quick start's one-line command whose text contains `marker`."""
    lines = (ROOT / "README.md").read_text().splitlines()
    return next(line for line in lines if marker in line and line.startswith("python3 -m venv"))


def test_ci_runs_the_readme_test_command_one_step_per_line():
    """.ci/run runs the README's test command split at its `&&`, each step on a line of its
    own, in order and with nothing between them: under `set -e` a failing step stops CI."""
    steps = [step.strip() for step in readme_command("pytest").split("&&")]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "set -euo pipefail" in ci_lines
    first = ci_lines.index(steps[0])
    assert ci_lines[first: first + len(steps)] == steps
    assert not any("&&" in line for line in ci_lines if not line.startswith("#"))


def test_outputs_are_ignored():
    assert "outputs/" in (ROOT / ".gitignore").read_text().split()
