"""Text from files and run records made safe for the notebooks' HTML and Markdown output: a
file name, a device name or any string a shared run record holds shows as the characters it
is, and never becomes markup. Trusted output in JupyterLab runs the handlers of any HTML it
holds, Markdown included (`<img src=x onerror=...>` in a table cell would run as the user).

    text -> html_text(text) for HTML;  text -> markdown_text(text) for Markdown (tables too)
"""
from __future__ import annotations

import html
import string


def html_text(value) -> str:
    """str(value) as literal text inside HTML, attribute values included."""
    return html.escape(str(value), quote=True)


def markdown_text(value) -> str:
    """str(value) as literal text in Markdown, also inside a table cell: no emphasis, links,
    code, math, headings or raw HTML can come from it, and a line break is a space.

    CommonMark lets a backslash make any ASCII punctuation mark literal, and so every one is
    escaped (`\\<img ...` is text, not a tag); entities would not do: some renderers (nbconvert's
    mistune) show `&lt;` as it is written."""
    text = " ".join(str(value).splitlines())
    return "".join("\\" + c if c in string.punctuation else c for c in text)
