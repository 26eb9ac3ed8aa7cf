"""grown_timbres/markup.py and every place that builds HTML or Markdown from text a file or a
run record controls: such text, rendered, shows as the characters it is and makes no tag, link,
emphasis or math. Markdown is rendered here by mistune (nbconvert's renderer), HTML is parsed
by the standard library's parser; tests/test_browser_comparison.py renders in JupyterLab."""
from html.parser import HTMLParser

import numpy as np
import pytest

from grown_timbres.config import SAMPLE_RATE
from grown_timbres.stages import Stage
from grown_timbres.markup import html_text, markdown_text
from grown_timbres.notebook import players_table
from grown_timbres.report import comparison_markdown, growth_table, metrics_table, sources_table
from test_notebook import fake_project, shown
from test_report import records  # noqa: F401  (a fixture)

HANDLER = "<img src=x onerror=document.body.setAttribute('data-pwned',1)>"
HOSTILE = [HANDLER, "[click](javascript:alert(1))", "**bold** _it_ `code` ~~gone~~",
           "a | b", "$x^2$", "&lt;img&gt; &amp;", "<https://example.com>", "# heading",
           "line\nbreak", "back\\slash\\*"]


class Page(HTMLParser):
    """The tags and the text of an HTML fragment."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.text = [], []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)

    def cells(self) -> list:
        return [t.strip() for t in self.text if t.strip()]


def rendered(markdown: str) -> Page:
    import mistune

    return Page(mistune.create_markdown(plugins=["table", "strikethrough", "math"])(markdown))


def shown_as_text(page: Page, text: str, own_tags=()):
    """`text` is among the page's text (a line break read as a space), and the page made no tag
    that text would make (but the table's `own_tags`)."""
    assert " ".join(text.splitlines()) in page.cells(), page.cells()
    made = {"img", "a", "strong", "em", "code", "del", "h1", "script"} - set(own_tags)
    assert not made & set(page.tags), page.tags


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_text_is_the_text_itself_in_a_table_and_a_paragraph(text):
    shown_as_text(rendered(f"| h |\n|---|\n| {markdown_text(text)} |"), text)
    assert rendered(markdown_text(text)).tags == ["p"]


@pytest.mark.parametrize("text", HOSTILE)
def test_html_text_is_the_text_itself(text):
    page = Page(f"<td title='{html_text(text)}'>{html_text(text)}</td>")
    assert page.tags == ["td"] and page.text == [text]


@pytest.mark.parametrize("text", HOSTILE)
def test_record_strings_in_the_comparison_table_are_text(records, text):  # noqa: F811
    """device, created, loss term names and the shared file names of two records."""
    stem = text.replace("/", "|")  # a file name holds no slash
    records = {label: dict(r) for label, r in records.items()}
    for record in records.values():
        record.update(device=text, created=text)
        record["final_loss_terms"] = {text: 1.0}
        record["files"] = [f"scale_tones/{stem}.wav"]
        record["metrics"] = {stem: next(iter(record["metrics"].values()))}
    page = rendered(comparison_markdown(records))
    shown_as_text(page, text)
    flat = " ".join(text.splitlines())
    assert page.cells().count(flat) == 4  # device and date of each run
    assert f"final {flat} loss" in page.cells()
    assert (f"Metrics over the file both runs learned: {' '.join(stem.splitlines())}."
            in "".join(page.text))


def test_file_and_stage_names_in_the_metrics_and_growth_tables_are_text():
    metric = {"spectral_distance": 1.0, "f0_error_cents": 2.0, "loudness_l1_db": 0.5}
    shown_as_text(rendered(metrics_table({HANDLER: {"model": metric, "sine": metric}})), HANDLER)

    class Note:
        def noise_adds_db(self):
            return 1.0

    stages = [Stage(HANDLER, 1, False, 0.5)]
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE)
    page = rendered(growth_table({"[x](javascript:alert(1))": tone},
                                 {"[x](javascript:alert(1))": Note()}, stages))
    shown_as_text(page, HANDLER)
    shown_as_text(page, "[x](javascript:alert(1))")


def test_file_names_and_reasons_in_the_sources_table_are_text():
    batch = {"sources": [{"file": HANDLER, "seconds": 2.0, "examples": 1, "seconds_used": 2.0,
                          "silent": 0, "unpitched": 0, "excerpt_start_seconds": 0.0}],
             "errors": {f"uploads/{HOSTILE[1]}": f"{HOSTILE[2]}: not audio"}}
    page = rendered(sources_table(batch))
    assert page.tags.count("strong") == 1  # its own "rejected"
    for text in (HANDLER, HOSTILE[1], f"{HOSTILE[2]}: not audio"):
        shown_as_text(page, text, own_tags=["strong"])


def test_labels_and_columns_of_a_players_table_are_text():
    clip = np.zeros(100, np.float32)
    page = Page(players_table({HANDLER: {HOSTILE[1]: clip}}, [HOSTILE[1]]))
    assert HANDLER in page.cells() and HOSTILE[1] in page.cells()
    assert "img" not in page.tags and page.tags.count("audio") == 1


def test_a_hostile_file_name_in_the_side_by_side_section_is_text(tmp_path, monkeypatch):
    """Both runs learned a file whose name is markup: the table's metrics line, the players'
    row label and the messages show it as text."""
    root = fake_project(tmp_path / "project", stem=HANDLER)
    records, text = shown(monkeypatch, root / "outputs" / "runs")
    assert records is not None and "<audio" in text
    assert HANDLER not in text  # nowhere as markup, in the Markdown or in the HTML
    assert "&lt;img src=x onerror=document.body.setAttribute(&#x27;data-pwned&#x27;,1)&gt;" in text
    (root / "outputs" / "ddsp_original" / f"resynth_{HANDLER}.wav").unlink()
    _, text = shown(monkeypatch, root / "outputs" / "runs")
    gone = next(line for line in text.splitlines() if "gone" in line)
    shown_as_text(rendered(gone.split(" learned ")[1].split(", but")[0]), HANDLER)
