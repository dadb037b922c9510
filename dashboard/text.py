"""User-supplied strings (run names, tags, model and task names, worker ids, errors) as plain text.

Streamlit renders Markdown (with its own directives: ``:red[...]``, ``:material/...:``, ``$...$``)
in st.markdown, captions, alerts, titles and widget labels, and Plotly renders a subset of HTML
(``<a href>``, ``<b>``, ``<br>``) in titles, legends, tick labels and hover text. The rules:

- A user string is shown with ``st.text`` or ``st.code`` (never parsed), or in a widget that shows
  plain text (st.dataframe cells, selectbox and multiselect options, text_input placeholders),
  raw: escaping there would show the backslashes. It never goes into a Markdown message; not even
  escaped, since Streamlit runs transforms on the parsed text (GFM links bare URLs and e-mail
  addresses) and on the source (``:material/x:`` is rewritten even inside code spans).
- A server's message (an error detail, which may quote a config) inside Markdown: :func:`plain`,
  backslash escapes. No image, raw HTML, hidden-target link or directive survives; a bare URL in
  it may still be linked, showing its own target.
- Plotly text: :func:`plotly`.
"""

from __future__ import annotations

import string

# CommonMark lets a backslash escape any ASCII punctuation character, and the escaped character
# is always literal text: no emphasis, link, image, raw HTML, entity, directive or math.
_MARKDOWN = str.maketrans({c: "\\" + c for c in string.punctuation})
_PLOTLY = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def plain(value: object) -> str:
    """``value`` as Markdown source that renders as its text, on one line (see the module's rules)."""
    text = " ".join(str(value).splitlines())
    return text.translate(_MARKDOWN)


def plotly(value: object) -> str:
    """``value`` as Plotly text (titles, trace names, hover templates) that renders as its text."""
    return str(value).translate(_PLOTLY)

