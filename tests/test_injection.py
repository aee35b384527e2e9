"""A stranger's strings are shown, never obeyed: every output kind escapes them
(``envaudit/render/escape.py``).

The attack: a fingerprint file, a golden bundle (its fingerprint, even its folder name) or a fleet
node carries raw HTML (``<img src=x onerror=...>``: GitHub loads it from a Markdown report),
terminal control sequences (ESC ``]0;`` sets the window title, ESC ``[2J`` clears the screen, the
8-bit CSI ``\\x9b``), rich markup (``[bold red]``, ``[link=...]``), pipes that would split a
Markdown table cell and ``]]>`` that would end XML character data. Each test first shows the
hostile bytes really are in the data envaudit reads, then that the output shows them as text.

What "shown as text" means here: in terminal text no ESC, BEL or CSI character and the escape
``\\x1b`` instead; in Markdown, once rendered as GitHub does (CommonMark with pipe tables, by
markdown-it-py, which rich already brings), no ``<img>`` element, no link, every table row as many
cells as its header, and the hostile text visible; JUnit parses as XML with the text preserved;
HTML has no ``<img`` tag.
"""

from __future__ import annotations

import dataclasses
import io
import json
import string
import xml.etree.ElementTree as ET

import pytest
from conftest import ROOT, cli_env, run_cli
from forge import forge, one_ulp_up
from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from rich.text import Text
from test_render_check import make_result

from envaudit.attribute.types import Cause
from envaudit.fingerprint.types import Change
from envaudit.render.escape import (
    for_markdown,
    for_markdown_code,
    for_terminal,
    for_xml,
)

IMG = "<img src=x onerror=alert(1)>"
TITLE, CLEAR, CSI = "\x1b]0;pwned\x07", "\x1b[2J", "\x9b31m"
MARKUP = "[bold red]loud[/] [link=https://evil.example]x[/link]"
HOSTILE = f"{IMG}|]]>{TITLE}{CLEAR}{CSI}{MARKUP} ![p](x.png) a\\|b"
RAW_CONTROLS = ("\x1b", "\x07", "\x9b")


def assert_terminal_safe(text: str) -> None:
    """No character a terminal acts on, and the escapes where they were."""
    assert not [c for c in RAW_CONTROLS if c in text], text
    assert "\\x1b]0;pwned\\x07" in text and "\\x1b[2J" in text


def assert_markdown_safe(md: str, shown: str = "&lt;img src=x onerror=alert(1)&gt;") -> str:
    """``md`` rendered as GitHub does: no element or link from a stranger, tables whole, the
    hostile text visible as text. Returns the rendered HTML."""
    assert not [c for c in RAW_CONTROLS if c in md]
    parser = MarkdownIt("commonmark").enable("table")
    html = parser.render(md)
    assert "<img" not in html and "<a " not in html
    assert shown in html
    cells: list[int] = []
    for token in parser.parse(md):
        if token.type == "tr_open":
            cells.append(0)
        elif token.type in ("th_open", "td_open"):
            cells[-1] += 1
        elif token.type == "table_close":
            assert len(set(cells)) == 1, cells  # every row as many cells as the header
            cells = []
    return html


# --- one function per output kind ----------------------------------------------------------


@pytest.mark.parametrize(("escape", "text", "expected"), [
    (for_terminal, f"{TITLE}{CLEAR}{CSI}\n\t\u202e",
     "\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\n\\t\\u202e"),
    (for_terminal, "[bold]é ✓ 漢 <b>|", "[bold]é ✓ 漢 <b>|"),
    (for_markdown, IMG, "&lt;img src=x onerror=alert(1)>"),
    (for_markdown, "a|b a\\|b &lt; ![p](u) [x]\n", "a\\|b a\\\\\\|b &amp;lt; ![p]\\(u) [x]\\n"),
    (for_markdown_code, "a`b|c <i>", "`a'b\\|c <i>`"),
    (for_xml, "a\x1b\x00\x9b\udcff\tb\n", "a\ufffd\ufffd\ufffd\ufffd\tb\n"),
])
def test_one_escaping_function_per_output_kind(escape, text, expected):
    assert escape(text) == expected


@given(st.text(alphabet=st.sampled_from(string.printable + "\x1b\x07\x9b\u202e<>&|\\[]()`é"),
               max_size=40))
def test_markdown_text_cannot_leave_plain_text_for_any_input(text):
    md = for_markdown(text)
    assert md.isprintable() and "<" not in md and "](" not in md
    # GitHub's row splitter reads "\\" as a pair: every pipe needs an odd run of backslashes.
    for i, ch in enumerate(md):
        if ch == "|":
            run = len(md[:i]) - len(md[:i].rstrip("\\"))
            assert run % 2 == 1, (text, md)


# --- through the real CLI --------------------------------------------------------------------


def test_diff_of_forged_fingerprints_cannot_drive_the_terminal(tmp_path):
    a = tmp_path / "a.json"
    assert run_cli("fingerprint", "--format", "json", "-o", str(a)).returncode == 0
    forged = json.loads(a.read_text())
    # Short values, one per variable: the table may fold a long one at any width.
    forged["env"] = {**forged["env"], "OMP_NUM_THREADS": TITLE + CLEAR, "MKL_NUM_THREADS": MARKUP,
                     "TF_ENABLE_ONEDNN_OPTS": f"{IMG}|x", f"X{CSI}": "1"}
    forged["captured_at"] = CLEAR + "now"
    b = tmp_path / "b.json"
    b.write_text(json.dumps(forged))
    # The attack is real: the raw bytes reach envaudit's data unchanged (JSON escapes them).
    as_data = json.loads(run_cli("diff", str(a), str(b), "--format", "json").stdout)
    changed = {c["path"]: c["current"] for c in as_data["changes"]}
    assert changed["env.OMP_NUM_THREADS"] == TITLE + CLEAR
    assert changed["env.MKL_NUM_THREADS"] == MARKUP
    for args in ((), ("-o", str(tmp_path / "diff.txt"))):
        proc = run_cli("diff", str(a), str(b), *args)
        assert proc.returncode == 1, proc.stderr
        text = proc.stdout if not args else (tmp_path / "diff.txt").read_text()
        assert_terminal_safe(text)
        assert MARKUP in text  # rich markup shown as written, not read
        assert "env.X\\x9b31m" in text and f"{IMG}|x" in text and "(\\x1b[2Jnow)" in text


def test_check_markdown_and_history_of_a_forged_bundle(tmp_path):
    # Folder name and recorded environment value both hostile; checksums all valid.
    name = f"g{IMG}{CLEAR}|x"
    from envaudit import store

    # One stage a rounding step off, so that the check is not identical on any machine (the
    # shipped reference may be this machine's) and its causes quote the hostile value.
    block1 = store.load_bundle(ROOT / "golden" / "reference").stages_by_mode["eager"]["block1"]
    golden = forge(ROOT / "golden" / "reference", tmp_path / name,
                   env={"OMP_NUM_THREADS": HOSTILE}, stages={"block1": one_ulp_up(block1)})
    assert "\x1b" in golden.name and IMG in golden.name
    assert store.load_bundle(golden).fingerprint.data["env"]["OMP_NUM_THREADS"] == HOSTILE
    env = cli_env(XDG_DATA_HOME=str(tmp_path / "data"))
    proc = run_cli("check", "--golden", str(golden), "--no-confirm", "--format", "md", env=env)
    assert proc.returncode in (0, 1), proc.stderr
    md = proc.stdout
    html = assert_markdown_safe(md)
    # Text that quotes the value (headline, causes) has it escaped in the source too.
    assert "OMP_NUM_THREADS: '&lt;img src=x onerror=alert(1)>\\|]]>\\x1b]0;pwned\\x07" in md
    row = next(line for line in md.splitlines() if line.startswith("| env.OMP_NUM_THREADS |"))
    assert row.count(" | ") == 4  # five cells, the value's pipe escaped inside its own
    # The path is a code span: shown literally, never read as HTML.
    assert "g&lt;img src=x onerror=alert(1)&gt;\\x1b[2J\\|x</code>" in html

    listing = run_cli("history", env=env)
    assert listing.returncode == 0, listing.stderr
    assert IMG in listing.stdout and "\\x1b[2J" in listing.stdout
    assert not [c for c in RAW_CONTROLS if c in listing.stdout]
    shown = run_cli("history", "show", "1", env=env)
    assert shown.returncode == 0, shown.stderr
    assert_terminal_safe(shown.stdout)


def test_report_and_fingerprint_show_a_hostile_environment_value_as_text():
    # Short enough that the terminal table never folds it.
    env = cli_env(TF_ENABLE_ONEDNN_OPTS=f"{IMG}|{TITLE}{CLEAR}{CSI}[bold red]loud[/]")
    report = run_cli("report", env=env)
    assert report.returncode == 0, report.stderr
    assert_markdown_safe(report.stdout)
    row = next(line for line in report.stdout.splitlines()
               if line.startswith("| TF_ENABLE_ONEDNN_OPTS |"))
    assert row.count(" | ") == 1 and "&lt;img" in row
    # The summary quotes the value too, as text (it is made from the same tree)
    summary = next(line for line in report.stdout.splitlines()
                   if line.startswith("- **Numerics variables set:**"))
    assert "TF_ENABLE_ONEDNN_OPTS=&lt;img" in summary and "\\x1b]0;pwned" in summary
    text = run_cli("fingerprint", env=env)
    assert text.returncode == 0, text.stderr
    assert_terminal_safe(text.stdout)
    assert "[bold red]loud[/]" in text.stdout


# --- every format, on a hostile result -----------------------------------------------------


@pytest.fixture(scope="module")
def hostile():
    """A real drift result (``make_result``) with a stranger's strings wherever a bundle puts
    them: headline, golden path, a changed variable (name and value), a cause and its evidence."""
    return dataclasses.replace(
        make_result(), headline=f"Drift: {HOSTILE}", golden_path=f"/g/{HOSTILE}",
        fingerprint_changes=(Change(f"env.X{CSI}", HOSTILE, None, "numerics-env", True),),
        causes=(Cause(f"env.X: {HOSTILE}", "likely", (f"because {HOSTILE}",)),))


def test_check_text_shows_everything_escaped(hostile, tmp_path):
    from envaudit import cli
    from envaudit.render import check_text

    out = tmp_path / "check.txt"
    cli._emit(check_text.render(hostile), str(out))  # what the CLI writes, at 120 columns
    text = out.read_text()
    assert_terminal_safe(text)
    words = " ".join(text.split())  # lines wrap at spaces
    assert f"Drift: {IMG}|]]>\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m{MARKUP}" in words


def test_check_markdown_junit_and_html_keep_it_text(hostile):
    from envaudit.render import check_html, check_junit, check_md

    md = check_md.render(hostile)
    assert_markdown_safe(md)
    assert md.splitlines()[2].startswith("Drift: &lt;img src=x onerror=alert(1)>\\|]]>")
    doc = check_junit.render(hostile)
    root = ET.fromstring(doc.encode())  # well-formed, though "]]>" and controls were in it
    assert not list(root.iter("img")) and not [c for c in RAW_CONTROLS if c in doc]
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["headline"].startswith(f"Drift: {IMG}|]]>\ufffd]0;pwned\ufffd")
    page = check_html.render(hostile)
    assert "<img src=x onerror" not in page and not [c for c in RAW_CONTROLS if c in page]
    assert "Drift: &lt;img src=x onerror=alert(1)&gt;|]]&gt;\\x1b]0;pwned\\x07" in page


def test_fleet_formats_escape_what_a_node_sent():
    from rich.console import Console

    from envaudit.fleet.report import NodePlace, build_report, parse_node
    from envaudit.render import fleet_html, fleet_junit, fleet_md, fleet_text

    host = f"h{IMG}|{CLEAR}"
    nodes = [parse_node(NodePlace(host, "tcp://10.0.0.1:1"), {"error": HOSTILE}, "check"),
             parse_node(NodePlace("h2", "tcp://10.0.0.2:1"), {"error": MARKUP}, "check")]
    report = build_report("check", nodes, "g", "fp-" + "a" * 16, 2, 1.0)
    assert nodes[0].host == host and HOSTILE in (nodes[0].error or "")
    console = Console(file=io.StringIO(), width=400, no_color=True)
    console.print(fleet_text.render(report))
    text = console.file.getvalue()
    assert_terminal_safe(text)
    assert MARKUP in text
    assert_markdown_safe(fleet_md.render(report), shown="h&lt;img src=x onerror=alert(1)&gt;|")
    doc = fleet_junit.render(report)
    root = ET.fromstring(doc.encode())
    assert {c.get("name") for c in root.iter("testcase")} >= {f"h{IMG}|\ufffd[2J"}
    page = fleet_html.render(report)
    assert "<img src=x onerror" not in page and not [c for c in RAW_CONTROLS if c in page]


def test_the_output_net_escapes_what_a_renderer_forgot(tmp_path, capsys):
    """A renderer that put a raw string in a ``Text`` or a str document is still escaped on the
    way out, to stdout and to ``-o``; a document's own line breaks stay."""
    from envaudit import cli

    forgot = Text(f"raw {TITLE}{CLEAR}")
    assert "\x1b" in forgot.plain  # rich drops BEL itself, and passes ESC through
    cli._emit(forgot, str(tmp_path / "out.txt"))
    cli._emit(forgot, None)
    for text in ((tmp_path / "out.txt").read_text(), capsys.readouterr().out):
        assert "\x1b" not in text and "raw \\x1b]0;pwned\\x1b[2J" in text
    document = f"# title\n\nraw {TITLE}{CSI}\n"
    cli._emit(document, str(tmp_path / "out.md"))
    cli._emit(document, None)
    for text in ((tmp_path / "out.md").read_text(), capsys.readouterr().out):
        assert text == "# title\n\nraw \\x1b]0;pwned\\x07\\x9b31m\n"
