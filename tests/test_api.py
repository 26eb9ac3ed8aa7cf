"""The notebooks' API and the package's shape: ddsp_helpers names exactly what the two notebooks
call (the README's examples use only those names), importing it stays light, and the files of
grown_timbres/ import one way, in the order the data flows, each a few pages long."""
import ast
import inspect
import re
import subprocess
import sys

import nbformat
import pytest

import ddsp_helpers
from conftest import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
PACKAGE = REPO_ROOT / "grown_timbres"
# The data flow, as grown_timbres/__init__.py lists it: a file imports only files above it.
FLOW = ["config", "old_keys", "markup", "device", "files", "audio", "numba_cache", "worker_pool",
        "feature_cache", "pitch", "analysis", "features", "training_set", "batching", "synth",
        "model_config", "part", "harmonic_part", "noise_part", "room_part", "model", "loss",
        "checkpoints", "capture", "history", "resume", "step", "train_options", "train",
        "stages", "growth", "scoring", "report", "runs", "notes", "midi", "melody", "transfer",
        "plots", "notebook", "comparison", "checks"]

MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60
MAX_TRAIN_PARAMETERS = 8


def names_used(text: str) -> set:
    return set(re.findall(r"\bddsp\.([A-Za-z_]\w*)", text))


def notebook_names() -> set:
    return {name for path in NOTEBOOKS for cell in nbformat.read(path, as_version=4).cells
            if cell.cell_type == "code" for name in names_used(cell.source)}


def test_facade_exports_exactly_the_notebook_names():
    public = {name for name in vars(ddsp_helpers) if not name.startswith("_")}
    assert public == notebook_names(), (sorted(public - notebook_names()),
                                        sorted(notebook_names() - public))


@pytest.mark.parametrize("name", sorted(notebook_names()))
def test_every_notebook_name_exists(name):
    assert getattr(ddsp_helpers, name, None) is not None, name


def test_the_readme_uses_notebook_names_only():
    used = names_used((REPO_ROOT / "README.md").read_text())
    assert {"grow_timbre", "load_multiple_files", "stages_from_table"} <= used
    assert used <= notebook_names(), sorted(used - notebook_names())


def test_facade_is_thin_and_package_files_a_few_pages():
    assert len((REPO_ROOT / "ddsp_helpers.py").read_text().splitlines()) < 120
    files = {p.stem: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert set(files) - {"__init__"} == set(FLOW)
    assert max(files.values()) <= MAX_MODULE_LINES, {
        name: n for name, n in files.items() if n > MAX_MODULE_LINES}


def test_no_function_is_longer_than_a_page():
    """Every function of the package, def line to last line (docstring included), at most
    MAX_FUNCTION_LINES: a longer one is several steps that want names of their own."""
    long = {}
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.stem}.{node.name}"] = length
    assert not long, long


def test_train_takes_few_parameters():
    """The loop's options are one TrainOptions; the old keywords reach it through **options."""
    from grown_timbres.train import train

    assert len(inspect.signature(train).parameters) <= MAX_TRAIN_PARAMETERS


@pytest.mark.parametrize("name", FLOW)
def test_imports_run_one_way(name):
    """No circles, nothing running back up: each file imports only files listed above it."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    imported = {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.level == 1}
    assert imported <= set(FLOW[: FLOW.index(name)]), sorted(imported)


@pytest.mark.parametrize("name, data_stages", [
    ("model", {"analysis", "features", "training_set", "batching"}),
    ("features", {"training_set", "batching"})])
def test_imports_follow_the_data(name, data_stages):
    """The model takes pitch conversions from pitch.py, not from the features; the features
    of a file know nothing of batches (batching imports features, never the reverse)."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    imported = {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.level == 1}
    assert not imported & data_stages, sorted(imported & data_stages)


def test_import_is_light():
    """`import ddsp_helpers` loads torch and numpy only: librosa, soundfile, matplotlib, mido
    and IPython wait until a function needs them (a notebook's first cell stays quick)."""
    heavy = ("librosa", "numba", "soundfile", "matplotlib", "mido", "IPython", "scipy")
    code = ("import sys, ddsp_helpers; print(' '.join(m for m in " + repr(heavy)
            + " if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True,
                            capture_output=True, text=True)
    assert result.stdout.split() == []
