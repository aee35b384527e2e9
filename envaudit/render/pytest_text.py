"""What the pytest plugin says: a failed check's message, its whole report, a recording's skip
reason, and the session's summary (the environment once, then one line per check).

The message is the check's own words, not new ones: the headline as ``envaudit check -q`` prints
it (``check_text.headline``, whose sentence ends with the top cause and its label), the line a
golden recorded elsewhere gets, the exit code, and where each execution mode first diverged. The
whole report is ``check_text.render``, as ``envaudit check`` prints it. The results given here are
already redacted (``redact_result.shareable``); every string from a bundle or an environment is
escaped for the terminal (a golden's path is a stranger's string as much as a variable's value).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from envaudit.fingerprint.summary import summarize
from envaudit.fingerprint.types import Fingerprint
from envaudit.render import check_text
from envaudit.render.escape import TerminalSafe, for_terminal
from envaudit.render.palette import VERDICT
from envaudit.render.training_words import divergence_words, quoted
from envaudit.result import CheckResult

if TYPE_CHECKING:
    from envaudit.pytest_gate import GateEntry

# The summary facts (``fingerprint.summary``) the session's summary lists: what runs the numbers
# (TensorFlow, the CPU and its kernels, the GPUs and driver) and the settings that move them. The
# build, the runtimes, Python and the OS are in ``envaudit fingerprint``.
SHOWN_FACTS = ("TensorFlow", "CPU", "CPU kernels", "NVIDIA driver and GPUs",
               "Numerics variables set")
REPORT_WIDTH = 120  # as the CLI writes a report into a file or a pipe
# An error's line in the summary is cut here: the test's failure above has it whole.
ERROR_CHARS = 100


def failure_message(result: CheckResult) -> str:
    """Why a check failed its test, first line the headline (pytest's short summary shows it)."""
    lines = [_plain(check_text.headline(result))]
    if result.recorded_elsewhere is not None:
        lines.append(for_terminal(result.recorded_elsewhere.line))
    strict = "; strict=True: only identical passes" if result.strict else ""
    lines.append(f"golden {for_terminal(result.golden_path)}: exit {result.exit_code}{strict}")
    lines += [f"first divergence, {mode}: {where}" for mode, where in _divergences(result)]
    lines.append("the whole report is under 'envaudit report' below")
    return "\n".join(lines)


def report(result: CheckResult) -> str:
    """The whole text report, as ``envaudit check`` writes it into a file."""
    return _plain(check_text.render(result))


def recorded_reason(golden: str, earlier: bool) -> str:
    """Why a test was skipped under --envaudit-record."""
    if earlier:
        return (f"envaudit: golden {for_terminal(golden)} was recorded earlier in this session"
                " (--envaudit-record); run without it to check")
    return f"envaudit: recorded golden {for_terminal(golden)} (--envaudit-record); run without" \
        " it to check"


def environment_facts(fingerprint: Fingerprint) -> tuple[tuple[str, str], ...]:
    """The facts of ``fingerprint`` the summary lists (``SHOWN_FACTS``), as (label, value)."""
    return tuple((f.label, f.value) for f in summarize(fingerprint) if f.label in SHOWN_FACTS)


def summary_lines(entries: Sequence[GateEntry]) -> list[str]:
    """The session's summary: each environment the checks ran in, once, then one line per call
    (test, golden, what it found)."""
    lines: list[str] = []
    seen: dict[str, tuple[tuple[str, str], ...]] = {}
    for entry in entries:
        if entry.fingerprint_id and entry.fingerprint_id not in seen:
            seen[entry.fingerprint_id] = entry.environment
    for fingerprint_id, facts in seen.items():
        lines.append(f"environment {for_terminal(fingerprint_id)}")
        lines += [f"  {for_terminal(label)}: {for_terminal(value)}" for label, value in facts]
    lines.append(f"checks ({len(entries)}):")
    for entry in sorted(entries, key=lambda e: e.test):
        lines.append(f"  {for_terminal(entry.test)}: golden {for_terminal(entry.golden)}:"
                     f" {_outcome(entry)}")
    return lines


def _outcome(entry: GateEntry) -> str:
    if entry.outcome == "error":
        detail = for_terminal(entry.detail)
        cut = detail if len(detail) <= ERROR_CHARS else detail[:ERROR_CHARS - 1] + "…"
        return f"error, failed: {cut}"
    if entry.outcome in ("recorded", "recorded earlier"):
        return entry.outcome.replace("earlier", "earlier in this session")
    word = VERDICT[entry.outcome].word  # type: ignore[index]
    strict = " (strict)" if entry.strict else ""
    return f"{word}{strict}, {'passed' if entry.passed else 'failed'}"


def _divergences(result: CheckResult) -> list[tuple[str, str]]:
    """(mode, where it first diverged) for each mode that moved; the stage in the words the
    terminal report uses, a training array as every format words it."""
    noun = "stage" if result.subject.model is None else "array"
    found = []
    for mode, _stages, first, _not_run in result.by_mode():
        if first is not None:
            where = divergence_words(first, quoted) or f"{noun} {quoted(first.stage)}"
            found.append((f"{mode} mode" if mode else "the run", for_terminal(where)))
    return found


def _plain(renderable: Any) -> str:
    """A rich renderable as plain text: no colour, lines not wrapped, tables 120 wide."""
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, no_color=True, force_terminal=False, width=REPORT_WIDTH,
            soft_wrap=True, highlight=False).print(TerminalSafe(renderable))
    return buffer.getvalue().rstrip("\n")
