"""Both notebooks, in smoke mode, with faults injected through the environment (the test hooks
of grown_timbres/config.injected_fault): the training step of epoch 3 diverges to NaN, and every
checkpoint write fails as on a full disk. Every cell must still run, say what happened, and
leave no partial file. The original runs first: the optimized notebook's comparison reads its
run record.

The notebooks run in a folder of links to the repository, so that their outputs stay in
pytest's temporary folder, away from the checkout's outputs/smoke; the feature cache is the
checkout's, shared with the smoke notebooks that nbval runs."""
import json

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO_ROOT

NAN_EPOCH = 3  # before the first snapshot (every 25 epochs): the history is cut back to nothing
LINKED = ("ddsp_helpers.py", "grown_timbres", "scale_tones")
FEATURE_CACHE = "outputs/feature_cache"


def cell_text(cell) -> str:
    return "".join(output.get("text", "") for output in cell.get("outputs", []))


def run_notebook(name: str, root) -> list[str]:
    """Execute notebooks/<name>.ipynb with `root` as its repository; the text each code cell
    printed. nbclient raises CellExecutionError, naming the cell, if any cell fails."""
    notebook = nbformat.read(REPO_ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(root / "notebooks")}}).execute()
    return [cell_text(cell) for cell in notebook.cells if cell.cell_type == "code"]


@pytest.fixture
def faulty_repo(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    for name in LINKED:
        (root / name).symlink_to(REPO_ROOT / name)
    (REPO_ROOT / FEATURE_CACHE).mkdir(parents=True, exist_ok=True)
    (root / FEATURE_CACHE).parent.mkdir()
    (root / FEATURE_CACHE).symlink_to(REPO_ROOT / FEATURE_CACHE)
    for variable, value in {"DDSP_SMOKE": "1", "DDSP_FAULT_NAN_EPOCH": str(NAN_EPOCH),
                            "DDSP_FAULT_DISK_FULL": "1", "MPLBACKEND": "Agg",
                            "TQDM_DISABLE": "1"}.items():
        monkeypatch.setenv(variable, value)  # the kernels inherit this environment
    return root


def test_every_cell_runs_after_a_nan_stop_with_a_full_disk(faulty_repo):
    outputs = faulty_repo / "outputs" / "smoke"
    for name in ("ddsp_original", "ddsp_optimized"):
        printed = "\n".join(run_notebook(name, faulty_repo))
        run_dir = outputs / name
        checkpoint = run_dir / "training_checkpoint.pt"
        assert (f"stopped at epoch {NAN_EPOCH}: the loss became nan; weights, optimizer, scaler "
                "and random state restored to epoch 0, the last snapshot, and the history cut "
                "back: 0 epochs") in printed, printed
        assert (f"training checkpoint: checkpoint of epoch 0: [Errno 28] {checkpoint}: not "
                "written (No space left on device); no checkpoint was written") in printed
        model_file = run_dir / ("ddsp_model.pt" if name == "ddsp_original"
                                else "ddsp_model_optimized.pt")
        assert (f"model not saved: [Errno 28] {model_file}: not written (No space left on "
                "device)") in printed
        record = json.loads((outputs / "runs" / f"{name}.json").read_text())
        assert record["training_status"].startswith(f"stopped at epoch {NAN_EPOCH}: ")
        assert (record["n_epochs"], record["loss_curve"], record["checkpoint"]) == (0, [], None)
    written = [p.relative_to(outputs) for p in outputs.rglob("*") if p.is_file()]  # not the cache
    assert not [p for p in written if p.suffix in (".pt", ".tmp")], written
    assert len([p for p in written if p.suffix == ".wav"]) >= 6  # every render still written
