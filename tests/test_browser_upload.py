"""The optimized notebook's upload widget, clicked in a real browser: JupyterLab serves a temporary
copy of the repository on 127.0.0.1 (no token) and headless Chromium, driven by selenium through
Debian's chromium-driver, runs the cells, picks two wav files in the widget's file chooser, and
reads the file table. Skipped when the browser, its driver or selenium is missing, unless CI=true:
then that is a failure (`.ci/run` installs them)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import headless_chromium

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/ddsp_optimized.ipynb"
SERVED = ["ddsp_helpers.py", "grown_timbres", "notebooks", "scale_tones"]  # what the notebook reads
PICKED = {"cello C4.wav": "01_C4.wav", "cello E4.wav": "05_E4.wav"}  # upload name: bundled tone
CELL_TIMEOUT_S = 300  # the feature cell runs pYIN on both files (a fresh cache, 2 busy cores)
STARTUP_TIMEOUT_S = 90
TABLE_WITHIN_CELLS = 7  # of the upload widget's cell (today 5: recording markdown and cell,
#                        read uploads, markdown, features)
CSS = "css selector"  # By.CSS_SELECTOR, without importing selenium before the skip check
RUN_BUTTON = "jp-button[data-command='notebook:run-cell-and-select-next']"
UPLOAD_BUTTON = ".jp-OutputArea-output .widget-upload"


def _wait_for(condition, timeout_s: float, what: str, poll_s: float = 0.25):
    """condition()'s first truthy value, polled; AssertionError naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(poll_s)


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served_copy(tmp_path):
    """(url, copy root, server log): JupyterLab serving a copy of the repository, so uploads
    land in the copy's outputs/, not the developer's."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in SERVED:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    # the kernel sees what a person's would: no smoke run (CI's DDSP_SMOKE=1), plots inline
    env = {k: v for k, v in os.environ.items() if k not in ("DDSP_SMOKE", "MPLBACKEND")}
    # the developer's Jupyter and IPython settings (a password, saved layouts, history) neither
    # change this server nor are changed by it
    jupyter_home = tmp_path / "jupyter"
    env.update(JUPYTER_CONFIG_DIR=str(jupyter_home / "config"),
               JUPYTER_RUNTIME_DIR=str(jupyter_home / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(jupyter_home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(jupyter_home / "workspaces"),
               IPYTHONDIR=str(jupyter_home / "ipython"))
    port = _free_loopback_port()
    log_path = tmp_path / "jupyter.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={root}",
               # nothing outside the machine is reachable in CI: no news, update or PyPI lookups
               "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def ready():
        if server.poll() is not None:
            raise AssertionError(f"jupyter lab exited ({server.returncode}):\n"
                                 f"{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        _wait_for(ready, STARTUP_TIMEOUT_S, f"jupyter lab answering on {url}", poll_s=0.5)
        yield url, root, log_path
    finally:
        _stop(server)


def _stop(server: subprocess.Popen):
    """SIGTERM, on which Jupyter shuts its kernels down; whatever of the server, its kernels and
    their workers is still alive after that (or after 30 s) is killed."""
    import psutil  # an ipykernel dependency

    try:
        family = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    except psutil.NoSuchProcess:  # it exited at start-up
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    for process in family:
        try:
            process.kill()  # psutil checks that the pid was not reused
        except psutil.NoSuchProcess:
            pass
    server.wait(timeout=10)


@pytest.fixture
def browser():
    """Headless Chromium under chromedriver; skips (or fails in CI) before any server starts."""
    # DevTools events (the file chooser opening) are read back from chromedriver's performance log
    driver = headless_chromium("--window-size=1400,1000",
                               capabilities={"goog:loggingPrefs": {"performance": "ALL"}})
    driver.set_page_load_timeout(STARTUP_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _cells(driver):
    return driver.find_elements(CSS, ".jp-NotebookPanel .jp-Notebook .jp-Cell")


def _outputs_text(driver) -> str:
    """Every cell's outputs, in order: what the failure messages show."""
    return "\n".join(f"--- cell {i}:\n{area.text}" for i, cell in enumerate(_cells(driver))
                     for area in cell.find_elements(CSS, ".jp-OutputArea")
                     if area.text.strip())


def _run_active_cell(driver) -> int:
    """Click Run on the selected cell (Run selects the next one), wait until it finished and
    fail on a traceback. Returns the index of the cell that ran."""
    cells = _cells(driver)
    index = next(i for i, cell in enumerate(cells)
                 if "jp-mod-active" in cell.get_attribute("class"))
    cell = cells[index]
    driver.find_element(CSS, RUN_BUTTON).click()
    if "jp-CodeCell" in cell.get_attribute("class"):  # markdown renders at once
        _wait_for(lambda: re.fullmatch(r"\[\d+\]:", cell.find_element(
            CSS, ".jp-InputPrompt").text), CELL_TIMEOUT_S, f"cell {index} finishing")
        if "Traceback (most recent call last)" in cell.text:
            raise AssertionError(f"cell {index} raised:\n{_outputs_text(driver)}")
    return index


def _run_until(driver, found, what: str, max_cells: int, stop=lambda: None):
    """Run cell after cell from the selected one until found() is truthy: (the index of the cell
    that ran last, the value). Fails after max_cells cells, or when stop() returns a reason: the
    test never runs on into training."""
    for _ in range(max_cells):
        index = _run_active_cell(driver)
        value = found()
        if value:
            return index, value
        reason = stop()
        if reason:
            raise AssertionError(f"{reason} before {what}:\n{_outputs_text(driver)}")
    raise AssertionError(f"no {what} within {max_cells} cells:\n{_outputs_text(driver)}")


def _choose_files(driver, upload_button, paths):
    """Click the widget's button and pick `paths` in the file chooser it opens. Headless Chromium
    shows no dialog: DevTools intercepts the chooser and fills it, and the widget sees the same
    `change` event as after a person's choice."""
    driver.execute_cdp_cmd("Page.setInterceptFileChooserDialog", {"enabled": True})
    driver.get_log("performance")  # only events after the click count

    def chooser_opened():
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Page.fileChooserOpened":
                return message["params"]
        return None

    upload_button.click()
    chooser = _wait_for(chooser_opened, 15, "a file chooser opening on clicking Upload")
    assert chooser["mode"] == "selectMultiple", "the widget lets only one file be chosen"
    driver.execute_cdp_cmd("DOM.setFileInputFiles", {"files": [str(p) for p in paths],
                                                     "backendNodeId": chooser["backendNodeId"]})


def _file_table(driver) -> dict | None:
    """{file: status} of the rendered table headed `file | status`, or None before it shows."""
    for table in driver.find_elements(CSS, ".jp-OutputArea .jp-RenderedMarkdown table"):
        header = [th.text for th in table.find_elements(CSS, "th")]
        if header[:2] == ["file", "status"]:
            rows = [[td.text for td in row.find_elements(CSS, "td")]
                    for row in table.find_elements(CSS, "tbody tr")]
            return {row[0]: row[1] for row in rows}
    return None


def test_two_wav_files_chosen_in_the_upload_widget_are_accepted_and_saved(
        browser, served_copy, tmp_path):
    """As a person in JupyterLab: open the optimized notebook, run its cells to the upload
    widget, choose two wav files, run on from the next cell to the file table; both files are
    listed as accepted and saved, byte for byte, under outputs/uploads/."""
    url, root, log_path = served_copy
    picked = tmp_path / "picked"  # named unlike the bundled tones, which the notebook falls back to
    picked.mkdir()
    for name, tone in PICKED.items():
        shutil.copy2(REPO_ROOT / "scale_tones" / tone, picked / name)

    browser.get(f"{url}/lab/tree/{NOTEBOOK}?reset")  # ?reset: no layout restored
    _wait_for(lambda: len(_cells(browser)) > 5, STARTUP_TIMEOUT_S, f"{NOTEBOOK} showing its cells")
    _wait_for(lambda: browser.find_elements(
        CSS, ".jp-Notebook-ExecutionIndicator[data-status='idle']"),
        STARTUP_TIMEOUT_S, f"the kernel starting (server log: {log_path})")
    _cells(browser)[0].find_element(CSS, ".jp-InputPrompt").click()

    upload_cell, buttons = _run_until(
        browser, lambda: browser.find_elements(CSS, UPLOAD_BUTTON), "an upload widget",
        max_cells=len(_cells(browser)),
        stop=lambda: _file_table(browser) and "the file table (bundled tones) showed")
    upload_button = buttons[0]
    assert upload_button.text.strip() == "Upload (0)"
    _choose_files(browser, upload_button, sorted(picked.iterdir()))
    # the count changes once the page has read both files and sent them to the kernel, ahead of
    # the next cell's run
    _wait_for(lambda: upload_button.text.strip() == "Upload (2)", 30, "the widget holding 2 files")

    # clicking Upload selected the widget's cell: as the notebook says, go on from the next one
    # (running the widget's cell again would make a new, empty widget)
    _cells(browser)[upload_cell + 1].find_element(CSS, ".jp-InputPrompt").click()
    _, table = _run_until(browser, lambda: _file_table(browser), "a file table",
                          max_cells=TABLE_WITHIN_CELLS)
    assert table == {name: "accepted" for name in PICKED}, _outputs_text(browser)
    uploads = root / "outputs" / "uploads"
    assert sorted(p.name for p in uploads.iterdir()) == sorted(PICKED)
    for name in PICKED:
        assert (uploads / name).read_bytes() == (picked / name).read_bytes(), name
