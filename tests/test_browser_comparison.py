"""A shared run record whose fields carry markup, compared in a real browser: JupyterLab (served as
in tests/test_browser_upload.py) runs ddsp.show_comparison on two records whose device, date,
loss term and file names are <img onerror=...> tags. Their output is trusted (the user ran the
cell), so JupyterLab would run any handler in it: a control cell shows that it does for HTML
that the cell meant. The records' markup shows as text, and none of its handlers runs.
Skipped when the browser, its driver or selenium is missing, unless CI=true."""
from __future__ import annotations

import json
import re
import shutil

import nbformat
import pytest

from test_browser_upload import (CELL_TIMEOUT_S, CSS, RUN_BUTTON, STARTUP_TIMEOUT_S, _cells,
                                 _outputs_text, _wait_for, browser, served_copy)  # noqa: F401
from test_notebook import fake_project

pytestmark = pytest.mark.browser


def handler(src: str, mark: str) -> str:
    """An image that fails to load, whose handler marks the page's body with data-ddsp-<mark>."""
    return f"<img src={src} onerror=document.body.setAttribute('data-ddsp-{mark}',1)>"


STEM = handler("a", "pwned-name")  # a file name may hold all of this (no slash)
FIELDS = {"device": handler("b", "pwned-device"), "created": handler("c", "pwned-date")}
TERM = handler("d", "pwned-term")
CONTROL = handler("e", "control")
NOTEBOOK = "compare.ipynb"


def hostile_project(root, tmp_path):
    """Both notebooks' records and wavs, as another user shared them, in the served copy."""
    shared = fake_project(tmp_path / "shared", stem=STEM)
    shutil.copytree(shared / "outputs", root / "outputs", dirs_exist_ok=True)
    shutil.copy2(shared / "scale_tones" / f"{STEM}.wav", root / "scale_tones")
    for path in (root / "outputs" / "runs").glob("*.json"):
        record = json.loads(path.read_text())
        record.update(FIELDS)
        record["final_loss_terms"] = {TERM: 1.0}
        path.write_text(json.dumps(record))
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": kernel}, cells=[
        nbformat.v4.new_code_cell("import ddsp_helpers as ddsp\n"
                                  "records = ddsp.show_comparison('outputs/runs')"),
        nbformat.v4.new_code_cell("from IPython.display import HTML, display\n"
                                  f"display(HTML({CONTROL!r}))")])
    nbformat.write(notebook, root / NOTEBOOK)


def body_marks(driver) -> list:
    """The marks that handlers left on the body (JupyterLab sets data- attributes of its own)."""
    marks = driver.execute_script("return Object.keys(document.body.dataset)")
    return [mark for mark in marks if mark.startswith("ddsp")]


def run_cell(driver, index: int):
    """Select cell `index`, click Run and wait until it finished; fail on a traceback. A run
    asked for while the kernel's connection still settles can be dropped (the prompt stays
    `[ ]:` instead of `[*]:`): then it is asked for again."""
    prompt = _cells(driver)[index].find_element(CSS, ".jp-InputPrompt")
    for attempt in range(3):
        prompt.click()
        driver.find_element(CSS, RUN_BUTTON).click()
        try:
            _wait_for(lambda: prompt.text != "[ ]:", 20, f"cell {index} starting")
            break
        except AssertionError:
            if attempt == 2:
                raise
    _wait_for(lambda: re.fullmatch(r"\[\d+\]:", prompt.text), CELL_TIMEOUT_S,
              f"cell {index} finishing")
    assert "Traceback (most recent call last)" not in _cells(driver)[index].text, \
        _outputs_text(driver)


def test_markup_in_a_shared_record_shows_as_text_and_runs_no_handler(
        browser, served_copy, tmp_path):  # noqa: F811
    url, root, log_path = served_copy
    hostile_project(root, tmp_path)
    browser.get(f"{url}/lab/tree/{NOTEBOOK}?reset")
    _wait_for(lambda: len(_cells(browser)) == 2, STARTUP_TIMEOUT_S, f"{NOTEBOOK} showing")
    _wait_for(lambda: browser.find_elements(
        CSS, ".jp-Notebook-ExecutionIndicator[data-status='idle']"),
        STARTUP_TIMEOUT_S, f"the kernel starting (server log: {log_path})")
    for index in range(2):  # the comparison, then the control: HTML the cell means, that runs
        run_cell(browser, index)
    _wait_for(lambda: "ddspControl" in body_marks(browser), 30,
              "the control's handler running (trusted output runs handlers)")
    assert body_marks(browser) == ["ddspControl"], _outputs_text(browser)
    text = _cells(browser)[0].text
    for markup in [STEM, TERM, *FIELDS.values()]:
        assert markup in text, (markup, text)
    comparison = _cells(browser)[0]
    assert comparison.find_elements(CSS, ".jp-RenderedMarkdown table")  # the table, rendered
    assert len(comparison.find_elements(CSS, "audio")) == 3  # target and both resyntheses
    assert not comparison.find_elements(CSS, ".jp-OutputArea img[onerror]")
