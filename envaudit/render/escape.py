"""How a stranger's string is made safe for the output it lands in: one function per output kind.

Everything envaudit shows that came from a fingerprint, a bundle, a model, a node or a path is
someone else's text: a hostname, an environment value, a package name, a folder name, an error a
node wrote. Each output kind has one function here, and every renderer of that kind puts such a
string into its output through it:

- terminal text (``for_terminal``): every character that is not printable (C0 and C1 controls such
  as ESC, BEL and CSI, line breaks, tabs, Unicode format characters such as bidi overrides, lone
  surrogates from a non-UTF-8 path) is shown as its Python escape, ``\\x1b``, ``\\n``,
  ``\\u202e``: nothing a stranger wrote can move the cursor, clear the screen, set the window
  title or start a second line. Rich markup is never involved: renderers put text into ``Text``
  objects, which rich does not parse for ``[bold]`` or ``[link=...]``. ``TerminalSafe`` repeats
  the control-character rule on everything rich is about to write, as the net under a renderer
  that forgot;
- Markdown (``for_markdown``, ``for_markdown_code``): controls as above, then ``<`` and ``&``
  as entities (a ``<img src=...>`` shows as text and GitHub loads nothing), ``|`` behind a
  backslash (a value stays one table cell) and the ``(`` of ``](`` too (no Markdown link or
  image; GitHub still makes a bare URL clickable, which loads nothing).
  Inside a code span nothing is interpreted, so there only the backtick (which would end it) is
  replaced and the pipe escaped (GitHub splits table rows before it reads code spans). Where a
  renderer builds Markdown itself (a code span, a bold word) it marks the string ``Markdown``;
  its table builder (``markdown_table``) escapes every other cell (``markdown``), so a cell
  cannot be forgotten;
- a whole document that may be printed to a terminal (``for_document``, HTML and Markdown, and
  every str the CLI writes): controls as above except the document's own line breaks; the net
  under a string a renderer forgot. JUnit XML (``for_xml``): what XML 1.0 cannot carry (most C0
  controls, lone surrogates) and C1 controls are replaced by U+FFFD, so the document is always
  well-formed. HTML's own escaping (``html.escape``) and XML's (``xml.etree``) stay with their
  renderers.

Constraint: pure string functions, no decisions; an escaped string may be longer than the
original, so a renderer escapes before it measures or lays out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

# Markdown. "<" and "&" become entities: no tag, no autolink, no entity of a stranger's is read
# (a ">" alone starts nothing inline, and "->" stays readable in the source). A pipe is escaped
# so a value stays one table cell; GitHub's row splitter (cmark-gfm) reads a backslash before any
# punctuation as an escaped pair, so a stranger's backslashes right before a pipe are doubled
# first, or "\\|" would still end the cell. "](" is the one way inline text becomes a link or an
# image (reference links need a definition, which only starts a line): its parenthesis is escaped.
_HTML = str.maketrans({"&": "&amp;", "<": "&lt;"})
_PIPE = re.compile(r"(\\*)\|")
_LINK = "]("
# XML 1.0 cannot carry these even as character references; a lone surrogate is how Python decodes
# a non-UTF-8 byte in a path (surrogateescape). C1 controls (CSI is U+009B) and DEL it can, but a
# terminal may act on them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _pipes_escaped(text: str) -> str:
    return _PIPE.sub(lambda m: m.group(1) * 2 + "\\|", text)


def for_terminal(text: str) -> str:
    """``text`` as one line that cannot drive a terminal: every non-printable character as its
    Python escape (``"\\x1b"``, ``"\\n"``, ``"\\u202e"``)."""
    if text.isprintable():  # the common case, at C speed
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def for_document(text: str) -> str:
    """A whole document with its line breaks kept and every other non-printable character
    escaped as ``for_terminal`` does."""
    return "\n".join(map(for_terminal, text.split("\n")))


def for_xml(document: str) -> str:
    """A serialized XML document with every character XML 1.0 cannot carry (C0 controls but tab
    and line breaks, lone surrogates, U+FFFE/U+FFFF) and every C1 control replaced by U+FFFD:
    always well-formed, and nothing in it drives a terminal that shows it."""
    return _NOT_XML.sub("\ufffd", document)


def for_markdown(text: str) -> str:
    """``text`` as Markdown that shows these characters as text: one line, no HTML, no link or
    image, and one table cell."""
    return _pipes_escaped(for_terminal(text).translate(_HTML)).replace(_LINK, "]\\(")


def for_markdown_code(text: str) -> Markdown:
    """``text`` as a Markdown code span (in backticks) that it cannot end early or split into two
    table cells (nothing else in a code span is read as Markdown or HTML)."""
    return Markdown("`" + _pipes_escaped(for_terminal(text).replace("`", "'")) + "`")


class Markdown(str):
    """A string that is already Markdown, made by a renderer from escaped pieces (a code span,
    a bold status word): ``markdown`` passes it as it is."""


def markdown(value: str) -> str:
    """What a Markdown table or line builder puts in for ``value``: a ``Markdown`` string as it
    is, any other string escaped with ``for_markdown``. Plain text is the default, so a cell a
    renderer forgot to mark is shown as text, never read as markup."""
    return value if isinstance(value, Markdown) else for_markdown(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A pipe table's lines: every cell escaped as text (``markdown``) unless the renderer made
    it ``Markdown``, so a cell cannot be forgotten."""
    lines = ["| " + " | ".join(markdown(h) for h in header) + " |",
             "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(markdown(v) for v in row) + " |" for row in rows]


class TerminalSafe:
    """A rich renderable that shows ``renderable`` with every control character that reaches a
    segment's text escaped (line breaks, which rich itself writes between lines, excepted).

    The net under the renderers: each of them already escapes what it puts in (which keeps its
    layout right); this catches a string that one of them forgot, at the cost of that line's
    alignment. Segments rich marks as control codes are its own cursor moves, never text."""

    def __init__(self, renderable: Any) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        from rich.segment import Segment

        for segment in console.render(self.renderable, options):
            if segment.control or segment.text.isprintable():
                yield segment
            else:
                yield Segment(for_document(segment.text), segment.style)
