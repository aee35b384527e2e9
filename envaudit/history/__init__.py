"""The history: every ``record``, ``check`` and ``fleet check`` on this machine, one row each, in
``$XDG_DATA_HOME/envaudit/history.sqlite``.

The public API the CLI wires: ``history_enabled`` (``--no-history``, ``ENVAUDIT_HISTORY=off``),
``append_check`` / ``append_record`` / ``append_fleet`` (each returns ``None`` or one line of
warning for stderr, and never raises: a history must never break a check), ``runs`` /
``count`` / ``run`` / ``latest`` / ``last_identical`` to read it (an unreadable file is an
``EnvauditError``), and ``since_last_identical``, the sentence a check shows, computed *before*
its own row is appended. ``envaudit history`` is written by the formats registered for it
(``render/formats.py``: ``render/history_text.py``, ``render/history_json.py``). What the
database guarantees is in ``history.database``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envaudit.errors import EnvauditError
from envaudit.history import database
from envaudit.history.since import since_sentence
from envaudit.history.types import (
    COMMANDS,
    SCHEMA,
    ArraySummary,
    CauseSummary,
    Command,
    Run,
    from_check,
    from_fleet,
    from_record,
)

if TYPE_CHECKING:
    from envaudit.result import CheckResult
    from envaudit.store import GoldenBundle

__all__ = ["COMMANDS", "SCHEMA", "ArraySummary", "CauseSummary", "Command", "Run",
           "append_check", "append_fleet", "append_record", "count", "default_path",
           "history_enabled", "last_identical", "latest", "parse_run_id", "parse_since",
           "run", "runs", "since_last_identical"]

FILE_NAME = "history.sqlite"
# Values of ENVAUDIT_HISTORY that turn the history off (any other value, or none, leaves it on).
OFF_VALUES = frozenset({"off", "0", "no", "false"})
# A run's ID: SQLite's INTEGER holds 18 decimal digits whatever they are.
_RUN_ID = re.compile(r"[0-9]{1,18}")


def default_path() -> Path:
    """``$XDG_DATA_HOME/envaudit/history.sqlite`` (``~/.local/share`` when unset or relative)."""
    base = os.environ.get("XDG_DATA_HOME", "")
    try:
        data = Path(base) if base and os.path.isabs(base) else Path.home() / ".local" / "share"
    except RuntimeError:  # no HOME and no passwd entry (a container's arbitrary uid)
        raise EnvauditError("cannot find a folder for the history (neither XDG_DATA_HOME nor"
                            " HOME is set); set XDG_DATA_HOME, or pass --no-history") from None
    return data / "envaudit" / FILE_NAME


def history_enabled(no_history_flag: bool) -> bool:
    """Whether this run is recorded: not with ``--no-history`` nor ``ENVAUDIT_HISTORY=off``."""
    return not no_history_flag and \
        os.environ.get("ENVAUDIT_HISTORY", "").strip().lower() not in OFF_VALUES


# --- writing: never raises ----------------------------------------------------------------


def append_check(result: CheckResult, golden_sha: str, command: Command = "check",
                 path: Path | None = None, *, at: datetime | None = None) -> str | None:
    """Append a check (pass the result as captured, before redaction). ``at``: the time to
    record (default now). Returns ``None``, or one line of warning saying why nothing was
    written."""
    return _append(lambda when: from_check(result, golden_sha, command, when), path, at)


def append_record(bundle: GoldenBundle, path: Path | None = None, *,
                  at: datetime | None = None) -> str | None:
    """Append the recording of ``bundle``; ``None`` or one line of warning."""
    return _append(lambda when: from_record(bundle, when), path, at)


def append_fleet(report_dict: Mapping[str, Any], golden_sha: str, path: Path | None = None, *,
                 at: datetime | None = None) -> str | None:
    """Append a fleet check (its report's ``to_dict()``): verdict the worst group verdict, with
    its findings; ``None`` or one line of warning."""
    return _append(lambda when: from_fleet(report_dict, golden_sha, when), path, at)


def _append(make: Any, path: Path | None, at: datetime | None) -> str | None:
    try:
        database.append(make(at or datetime.now(timezone.utc)),
                        default_path() if path is None else Path(path))
    except (database.HistoryUnavailable, EnvauditError) as exc:
        return "history not recorded: " + " ".join(str(exc).split())
    return None


# --- reading: an unreadable file is an EnvauditError --------------------------------------


def runs(path: Path | None = None, golden_sha: str | None = None,
         since: datetime | None = None, golden_path: str | None = None,
         limit: int | None = None) -> list[Run]:
    """The runs on record, oldest first: of one golden (by ``golden_sha``, or by the path it was
    used at), appended at or after ``since`` (a naive datetime is UTC); the newest ``limit`` of
    them when given."""
    where, params = _where(golden_sha, since, golden_path)
    return database.query(_path(path), where, params, limit=limit)


def count(path: Path | None = None, golden_sha: str | None = None,
          since: datetime | None = None, golden_path: str | None = None) -> int:
    """How many runs ``runs`` would give without a limit."""
    return database.count(_path(path), *_where(golden_sha, since, golden_path))


def latest(path: Path | None = None) -> Run | None:
    """The newest run on record, or None."""
    found = database.query(_path(path), limit=1)
    return found[0] if found else None


def _where(golden_sha: str | None, since: datetime | None,
           golden_path: str | None) -> tuple[str, list[Any]]:
    where, params = [], []
    if golden_sha is not None:
        where.append("golden_sha = ?")
        params.append(golden_sha)
    if golden_path is not None:
        where.append("golden_path = ?")
        params.append(golden_path)
    if since is not None:
        where.append("time >= ?")
        params.append(database.stamp(since))
    return " AND ".join(where), params


def run(run_id: int, path: Path | None = None) -> Run | None:
    """The run numbered ``run_id``, or None."""
    found = database.query(_path(path), "id = ?", (int(run_id),))
    return found[0] if found else None


def last_identical(golden_sha: str, path: Path | None = None) -> Run | None:
    """The latest ``check`` against this golden whose verdict was identical, or None."""
    found = database.query(_path(path), "golden_sha = ? AND command = 'check' AND verdict ="
                           " 'identical'", (golden_sha,), limit=1)
    return found[0] if found else None


def since_last_identical(result: CheckResult, golden_sha: str,
                         path: Path | None = None) -> str | None:
    """"last identical check against this golden: DATE (fingerprint fp-…); changed since then:
    …", or "no identical check against this golden on record"; None when there is nothing to
    say (``result`` is identical itself, so "since when" has no question to answer) or the history
    cannot be read (the append that follows says why). Call it before appending ``result``."""
    if result.verdict == "identical":
        return None
    try:
        last = last_identical(golden_sha, path)
    except EnvauditError:
        return None
    return since_sentence(last, result.current_fingerprint)


def parse_since(text: str) -> datetime:
    """``--since DATE``: an ISO date or date and time (``2025-06-01``, ``2025-06-01T12:00``,
    ``...Z``); without a zone, UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
        # In UTC here: a zone that pushes the moment past year 1 or 9999 is refused now, not by
        # the query (OverflowError, an "internal error").
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(
            timezone.utc)
    except ValueError:
        raise EnvauditError(f"--since {text!r} is not a date; write it as YYYY-MM-DD or"
                            " YYYY-MM-DDTHH:MM (UTC unless a zone is given)") from None
    except OverflowError:
        raise EnvauditError(f"--since {text!r} lies outside the years 1 to 9999 in UTC; give a"
                            " date within them") from None


def parse_run_id(text: str) -> int:
    """``history show ID``: a run number in ASCII digits (``str.isdigit`` also accepts "²" and
    other digits that ``int`` refuses or SQLite cannot hold)."""
    if not _RUN_ID.fullmatch(text):
        raise EnvauditError(f"run ID {text!r} is not a number; use an ID from the first column"
                            " of 'envaudit history'")
    return int(text)


def _path(path: Path | None) -> Path:
    return default_path() if path is None else Path(path)
