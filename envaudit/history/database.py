"""The history database: one SQLite file, standard library only.

Constraints the next editor must keep:

- **Never break a check.** ``append`` turns every failure (a file of garbage, a schema written by
  a newer envaudit, a folder that cannot be created, a lock held too long) into one line of
  warning, returned; it raises nothing.
- **Never destroy a user's file.** A file that is not an envaudit history is left exactly as it
  is (read, never written: the schema version is read before anything that writes, such as
  switching to WAL). The warning says to move it aside.
- **Concurrent writers are safe.** WAL journal, a busy timeout, one ``BEGIN IMMEDIATE``
  transaction per row (the write lock is taken before reading the schema version, so two
  processes never both migrate), and a bounded retry of a lock that is still busy.
- **Private.** Rows hold fingerprints as captured (host and user names, paths, variables). The
  file is created 0600 before SQLite opens it (SQLite gives its ``-wal`` and ``-shm`` files the
  database's mode), the folder 0700 when envaudit creates it; a history of this user that an
  earlier envaudit left readable by others is made 0600 once a row was written to it.
- **Versioned schema, table-driven migrations.** ``MIGRATIONS[i]`` takes version ``i`` to
  ``i + 1``; ``meta.schema_version`` says where a file is. A file at a newer version is never
  written, and reading it is refused with a message.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from envaudit import untrusted
from envaudit.errors import EnvauditError
from envaudit.fingerprint.types import Fingerprint
from envaudit.history.types import ArraySummary, CauseSummary, Run
from envaudit.plain import plain

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 0 -> 1: the runs, and the version itself
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            time TEXT NOT NULL,
            command TEXT NOT NULL,
            golden_sha TEXT NOT NULL,
            golden_path TEXT NOT NULL,
            fingerprint_id TEXT NOT NULL,
            fingerprint_json TEXT,
            verdict TEXT,
            exit_code INTEGER NOT NULL,
            arrays_json TEXT NOT NULL,
            causes_json TEXT NOT NULL,
            findings_json TEXT NOT NULL,
            timings_json TEXT NOT NULL)""",
        "CREATE INDEX runs_by_golden ON runs (golden_sha, id)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
# The history holds every run's fingerprint as captured (host and user names, paths, variables):
# readable by its owner only, like the files beside it.
PRIVATE_MODE = 0o600
PRIVATE_FOLDER_MODE = 0o700
# A writer waits this long for another's lock: a row takes milliseconds to write, so only a stuck
# process holds it longer, and a check must not hang on it.
BUSY_TIMEOUT_S = 10.0
# Locks that SQLite reports busy without calling its busy handler (taking WAL mode on a new file
# while another process does the same) are retried until this deadline, then given up with a
# warning.
RETRY_DEADLINE_S = 30.0
RETRY_PAUSE_S = 0.02
_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (the low byte of extended codes)
_COLUMNS = ("id", "time", "command", "golden_sha", "golden_path", "fingerprint_id",
            "fingerprint_json", "verdict", "exit_code", "arrays_json", "causes_json",
            "findings_json", "timings_json")


class HistoryUnavailable(Exception):
    """Why a row could not be written, as the one line of the warning."""


def append(run: Run, path: Path) -> None:
    """Write ``run`` as one row; raises ``HistoryUnavailable`` with the reason, and nothing
    else."""
    try:
        _create_folders(path.parent)
        _create_private(path)
    except OSError as exc:
        raise HistoryUnavailable(f"cannot create {path}: {exc.strerror or exc}") from None
    deadline = time.monotonic() + RETRY_DEADLINE_S
    while True:
        try:
            _append_once(run, path)
            _make_private(path)
            return
        except sqlite3.OperationalError as exc:
            if _is_busy(exc) and time.monotonic() < deadline:
                time.sleep(RETRY_PAUSE_S)
                continue
            raise HistoryUnavailable(f"cannot write {path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise HistoryUnavailable(_not_history(path, exc)) from None


def query(path: Path, where: str = "", params: Sequence[Any] = (),
          limit: int | None = None) -> list[Run]:
    """The runs in ``path`` matching ``where`` (SQL over the runs columns), oldest first, or the
    newest ``limit`` of them; none when the file is absent or empty. A file that is not a
    history, or is at a newer schema, is an ``EnvauditError``."""
    order = "ORDER BY id DESC LIMIT ?" if limit is not None else "ORDER BY id"
    sql = f"SELECT {', '.join(_COLUMNS)} FROM runs {f'WHERE {where}' if where else ''} {order}"
    runs = _read(path, sql, (*params, limit) if limit is not None else tuple(params), _run)
    return runs[::-1] if limit is not None else runs


def count(path: Path, where: str = "", params: Sequence[Any] = ()) -> int:
    """How many runs in ``path`` match ``where`` (0 when the file is absent or empty)."""
    sql = f"SELECT COUNT(*) FROM runs {f'WHERE {where}' if where else ''}"
    return sum(_read(path, sql, tuple(params), lambda row: int(row[0])))


def _read(path: Path, sql: str, params: tuple[Any, ...], convert: Any) -> list[Any]:
    """``convert`` of each row ``sql`` selects, with every way a file can fail to be a readable
    history turned into one ``EnvauditError`` line."""
    if not path.is_file():
        return []
    try:
        conn = _connect(path)
        try:
            if _version(conn, path) == 0:
                return []
            return [convert(row) for row in conn.execute(sql, params)]
        finally:
            conn.close()
    except HistoryUnavailable as exc:
        raise EnvauditError(str(exc)) from None
    except sqlite3.OperationalError as exc:
        raise EnvauditError(f"cannot read the history {path}: {exc}; check its permissions,"
                            " or retry when other envaudit runs have finished") from None
    except sqlite3.DatabaseError as exc:
        raise EnvauditError(_not_history(path, exc)) from None
    except (ValueError, TypeError, KeyError) as exc:
        raise EnvauditError(f"the history {path} holds a row envaudit cannot read ({exc}); move"
                            " the file aside to start a new history") from None


# --- writing --------------------------------------------------------------------------------


def _append_once(run: Run, path: Path) -> None:
    conn = _connect(path)
    try:
        _version(conn, path)  # read first: a file that is not ours is never written
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            _migrate(conn, _version(conn, path))
            conn.execute(f"INSERT INTO runs ({', '.join(_COLUMNS[1:])}) VALUES"
                         f" ({', '.join('?' * (len(_COLUMNS) - 1))})", _row(run))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()


def _create_folders(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each 0700: a folder envaudit creates is the
    user's alone, whatever the umask (``mkdir(parents=True)`` would give parents the umask's
    mode). Folders that exist are left as they are."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for each in reversed(missing):
        try:
            each.mkdir(mode=PRIVATE_FOLDER_MODE)
        except FileExistsError:
            continue  # made by another process meanwhile (or a file: the next step says so)


def _create_private(path: Path) -> None:
    """Create the database file with mode 0600 before SQLite does (it would use 0644 less the
    umask); SQLite gives its WAL and shared-memory files the mode of the database file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     PRIVATE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def _make_private(path: Path) -> None:
    """Take group and other access away from a history an earlier envaudit wrote with the umask,
    and its side files: only files of this user, and only once the file proved to be a history
    (a row was just written), so a stranger's file is never changed."""
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue  # absent (SQLite removes the side files on close), or a link: not ours
        try:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and \
                    stat.S_IMODE(info.st_mode) & 0o077:
                os.fchmod(fd, PRIVATE_MODE)
        except OSError:
            pass  # best effort: the row is written, the mode stays what it was
        finally:
            os.close(fd)


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    for number, statements in enumerate(MIGRATIONS[version:], version + 1):
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT(key)"
                     " DO UPDATE SET value = excluded.value", (str(number),))


def _row(run: Run) -> tuple[Any, ...]:
    fingerprint = None if run.fingerprint is None else run.fingerprint.to_json(indent=None)
    return (stamp(run.time), run.command, run.golden_sha, run.golden_path, run.fingerprint_id,
            fingerprint, run.verdict, run.exit_code, _compact(plain(run.arrays)),
            _compact(plain(run.causes)), _compact(list(run.findings)),
            _compact(dict(run.timings)))


def _compact(value: Any) -> str:
    # Python's JSON (NaN and Infinity allowed): a shape mismatch has an infinite max_rel, and this
    # text is read back only here.
    return json.dumps(value, separators=(",", ":"))


def stamp(moment: datetime) -> str:
    """``moment`` as the time column holds it: UTC, one fixed ISO form, so text order is time
    order (a naive datetime is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


# --- reading --------------------------------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    return conn


def _version(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version of the open file: 0 for an empty one; ``HistoryUnavailable`` for a
    newer one or an SQLite file of something else."""
    tables = {name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        if tables - {"sqlite_sequence"}:
            raise HistoryUnavailable(f"{path} is an SQLite database but not an envaudit history;"
                                     " move it aside (envaudit starts a new one there)")
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        version = int(row[0]) if row else 0
    except (TypeError, ValueError):
        version = -1
    if version < 0 or version > SCHEMA_VERSION:
        raise HistoryUnavailable(f"{path} has history schema version {row[0] if row else '?'},"
                                 f" this envaudit knows {SCHEMA_VERSION}; upgrade envaudit, or"
                                 " move the file aside to start a new history")
    return version


def _run(row: Sequence[Any]) -> Run:
    (run_id, moment, command, golden_sha, golden_path, fingerprint_id, fingerprint_json, verdict,
     exit_code, arrays_json, causes_json, findings_json, timings_json) = row
    return Run(
        id=int(run_id), time=datetime.fromisoformat(moment), command=command,
        golden_sha=golden_sha, golden_path=golden_path, fingerprint_id=fingerprint_id,
        verdict=verdict, exit_code=int(exit_code),
        arrays=tuple(ArraySummary(**a) for a in untrusted.loads(arrays_json)),
        causes=tuple(CauseSummary(**c) for c in untrusted.loads(causes_json)),
        findings=tuple(untrusted.loads(findings_json)), timings=untrusted.loads(timings_json),
        fingerprint=None if fingerprint_json is None else Fingerprint(
            untrusted.loads(fingerprint_json)),
    )


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _BUSY_CODES
    return "locked" in str(exc) or "busy" in str(exc)


def _not_history(path: Path, exc: sqlite3.DatabaseError) -> str:
    return (f"{path} is not an envaudit history database ({exc}); it was left as it is: move it"
            " aside (envaudit starts a new one there)")
