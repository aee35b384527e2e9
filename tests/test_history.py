"""The history: rows appended by record, check and fleet check, read back, listed and shown; safe
with concurrent writers; a foreign or newer file is warned about and left alone. No TensorFlow:
check results are the renderers' realistic one with real fingerprints."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from rich.console import Console

from envaudit import history
from envaudit.errors import EnvauditError
from envaudit.fingerprint import capture
from envaudit.fingerprint.types import Fingerprint
from envaudit.render import check_json, check_md, check_text, history_json, history_text
from envaudit.store import GoldenBundle
from tests.test_render_check import make_result

GOLDEN_A, GOLDEN_B = "a" * 64, "b" * 64
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def tree() -> dict:
    return capture().to_dict()


def fingerprint(tree: dict, fp_id: str, **env: str) -> Fingerprint:
    data = copy.deepcopy(tree)
    data["fingerprint_id"] = fp_id
    data["env"] = {**data["env"], **env}
    return Fingerprint(data)


def result_with(fp: Fingerprint, verdict: str = "identical", exit_code: int = 0):
    return dataclasses.replace(make_result(), verdict=verdict, exit_code=exit_code,
                               current_fingerprint=fp, current_fingerprint_id=fp.fingerprint_id)


def test_a_check_is_appended_listed_and_shown(tree, tmp_path):
    db = tmp_path / "h.sqlite"
    fp = fingerprint(tree, "fp-0123456789abcdef")
    result = result_with(fp, "drift", 1)
    assert history.append_check(result, GOLDEN_A, path=db, at=T0) is None
    (run,) = history.runs(db)
    assert (run.id, run.time, run.command, run.golden_sha) == (1, T0, "check", GOLDEN_A)
    assert (run.golden_path, run.fingerprint_id, run.verdict, run.exit_code) == (
        "/data/golden [default]", "fp-0123456789abcdef", "drift", 1)
    assert run.fingerprint.data == fp.data  # stored as captured, whole
    hidden = next(a for a in run.arrays if a.name == "hidden")
    assert (hidden.kind, hidden.mode, hidden.status) == ("stage", "eager", "rounding")
    assert hidden.max_rel == pytest.approx(result.stages[2].max_rel)
    assert run.causes[0].change == "env.TF_ENABLE_ONEDNN_OPTS: unset -> '0'"
    assert run.causes[0].confidence == "confirmed"
    assert run.timings == {"workload": 1.25, "total": 2.5}
    assert history.run(1, db) == run and history.run(2, db) is None

    table = history_text.render(history.runs(db), db).splitlines()
    assert table[0].split() == ["id", "time", "command", "golden", "fingerprint", "verdict"]
    assert table[1].split() == ["1", "2025-06-01", "12:00:00", "check", "/data/golden",
                                "[default]", "fp-0123456789abcdef", "drift"]
    listed = json.loads(history_json.render(history.runs(db), db))
    assert listed["database"] == str(db) and "fingerprint" not in listed["runs"][0]
    shown = json.loads(history_json.render_run(run))
    assert shown["fingerprint"]["fingerprint_id"] == "fp-0123456789abcdef"
    assert shown["time"] == "2025-06-01T12:00:00+00:00" and shown["verdict"] == "drift"
    text = history_text.render_run(run)
    assert "[confirmed] env.TF_ENABLE_ONEDNN_OPTS: unset -> '0'" in text
    assert "manifest sha256 " + GOLDEN_A in text and "rounding" in text


def test_record_and_fleet_rows(tree, tmp_path):
    db = tmp_path / "h.sqlite"
    fp = fingerprint(tree, "fp-1111111111111111")
    bundle = GoldenBundle(tmp_path / "golden", {"manifest_sha256": GOLDEN_A,
                                                "workload": {"timings": {"total": 3.0}}},
                          fp, {}, {}, {}, {})
    report = {"exit_code": 1, "findings": ["drift", "node_error"], "seconds": 4.5,
              "golden": {"path": "/g", "fingerprint_id": "fp-x"},
              "groups": [{"fingerprint_id": "fp-2", "verdict": "equivalent", "causes": []},
                         {"fingerprint_id": "fp-3", "verdict": "drift",
                          "causes": [{"change": "env.X: unset -> '1'", "confidence": "likely",
                                      "path": "env.X"}]}]}
    assert history.append_record(bundle, db) is None
    assert history.append_fleet(report, GOLDEN_A, db) is None
    record, fleet = history.runs(db)
    assert (record.command, record.golden_sha, record.verdict) == ("record", GOLDEN_A, None)
    assert record.golden_path == str(tmp_path / "golden") and record.timings == {"total": 3.0}
    assert record.fingerprint.fingerprint_id == "fp-1111111111111111"
    assert (fleet.command, fleet.verdict, fleet.exit_code) == ("fleet check", "drift", 1)
    assert fleet.findings == ("drift", "node_error") and fleet.fingerprint_id == "fp-2,fp-3"
    assert [(c.change, c.confidence) for c in fleet.causes] == [("env.X: unset -> '1'",
                                                                  "likely")]


def test_the_default_database_is_under_xdg_data_home(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert history.default_path() == tmp_path / "data" / "envaudit" / "history.sqlite"
    assert history.append_check(result_with(fingerprint(tree, "fp-1")), GOLDEN_A) is None
    assert [r.fingerprint_id for r in history.runs()] == ["fp-1"]


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from envaudit import history
    db, label, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    print("ready", flush=True)
    while not go.exists():  # both start writing at the same instant
        time.sleep(0.001)
    for i in range(50):
        report = {"exit_code": 0, "findings": [], "golden": {"path": label},
                  "groups": [{"fingerprint_id": f"fp-{i}", "verdict": "identical"}]}
        warning = history.append_fleet(report, "c" * 64, db)
        assert warning is None, warning
""")


def test_two_processes_appending_at_once_both_get_every_row(tmp_path):
    db = tmp_path / "h.sqlite"
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), label, str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for label in ("one", "two")]
    for proc in procs:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
    go.touch()
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    rows = history.runs(db)
    assert len(rows) == 100 and len({r.id for r in rows}) == 100
    for label in ("one", "two"):
        assert sorted(int(r.fingerprint_id[3:]) for r in rows if r.golden_path == label) == \
            list(range(50))
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_of_garbage_gets_a_warning_and_is_left_as_it_is(tree, tmp_path):
    db = tmp_path / "h.sqlite"
    garbage = bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))
    db.write_bytes(garbage)
    warning = history.append_check(result_with(fingerprint(tree, "fp-1")), GOLDEN_A, path=db)
    assert warning is not None and "\n" not in warning
    assert warning.startswith("history not recorded: ") and "not an envaudit history" in warning
    assert str(db) in warning
    assert db.read_bytes() == garbage and sorted(p.name for p in tmp_path.iterdir()) == [db.name]
    with pytest.raises(EnvauditError, match="move it aside"):
        history.runs(db)
    assert history.since_last_identical(result_with(fingerprint(tree, "fp-1")), GOLDEN_A,
                                        db) is None


def test_a_newer_schema_gets_a_warning_and_is_not_written(tree, tmp_path):
    db = tmp_path / "h.sqlite"
    assert history.append_check(result_with(fingerprint(tree, "fp-1")), GOLDEN_A, path=db) is None
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    warning = history.append_check(result_with(fingerprint(tree, "fp-2")), GOLDEN_A, path=db)
    assert warning is not None and "\n" not in warning and "schema version 99" in warning
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT fingerprint_id FROM runs").fetchall() == [("fp-1",)]
    conn.close()
    with pytest.raises(EnvauditError, match="upgrade envaudit"):
        history.runs(db)


def test_an_sqlite_file_of_something_else_is_not_written(tree, tmp_path):
    db = tmp_path / "other.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE photos (name TEXT)")
    conn.close()
    before = db.read_bytes()
    warning = history.append_check(result_with(fingerprint(tree, "fp-1")), GOLDEN_A, path=db)
    assert warning is not None and "not an envaudit history" in warning
    assert db.read_bytes() == before


def test_history_of_an_empty_or_absent_database_says_so(tmp_path):
    absent = tmp_path / "absent.sqlite"
    assert history.runs(absent) == [] and history.run(1, absent) is None
    assert history_text.render(history.runs(absent), absent) == \
        f"no checks on record in {absent}\n"
    assert not absent.exists()  # reading never creates the file
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    assert history_text.render(history.runs(empty), empty) == \
        f"no checks on record in {empty}\n"
    assert json.loads(history_json.render([], empty))["runs"] == []


def test_since_last_identical_picks_the_last_identical_check_of_this_golden(tree, tmp_path):
    db = tmp_path / "h.sqlite"
    now = fingerprint(tree, "fp-cccccccccccccccc", TF_ENABLE_ONEDNN_OPTS="0")
    now.data["packages"]["numpy"] = {"version": "0.0.1"}
    current = result_with(now, "drift", 1)
    assert history.since_last_identical(current, GOLDEN_A, db) == \
        "no identical check against this golden on record"

    old = fingerprint(tree, "fp-aaaaaaaaaaaaaaaa")
    appended = [
        (result_with(fingerprint(tree, "fp-0000000000000000")), GOLDEN_A, T0, "check"),
        (result_with(old), GOLDEN_A, T0 + timedelta(days=1), "check"),  # the one
        (result_with(fingerprint(tree, "fp-d"), "drift", 1), GOLDEN_A, T0 + timedelta(days=2),
         "check"),
        (result_with(fingerprint(tree, "fp-b")), GOLDEN_B, T0 + timedelta(days=3), "check"),
    ]
    for result, sha, at, command in appended:
        assert history.append_check(result, sha, command, db, at=at) is None
    assert history.last_identical(GOLDEN_A, db).fingerprint_id == "fp-aaaaaaaaaaaaaaaa"
    sentence = history.since_last_identical(current, GOLDEN_A, db)
    assert sentence.startswith("last identical check against this golden: 2025-06-02 12:00:00"
                               " UTC (fingerprint fp-aaaaaaaaaaaaaaaa); changed since then: "
                               "env.TF_ENABLE_ONEDNN_OPTS: unset -> '0'; ")
    assert "packages.numpy.version: " in sentence and "captured_at" not in sentence

    same = dataclasses.replace(current, current_fingerprint=old)
    assert history.since_last_identical(same, GOLDEN_A, db).endswith("changed since then: nothing")


def test_the_check_renderers_show_the_sentence(tree):
    sentence = ("last identical check against this golden: 2025-06-02 12:00:00 UTC (fingerprint"
                " fp-aaaaaaaaaaaaaaaa); changed since then: env.TF_ENABLE_ONEDNN_OPTS: unset ->"
                " '0'")
    plain = make_result()
    result = dataclasses.replace(plain, since_last_identical=sentence)
    console = Console(file=io.StringIO(), width=400, no_color=True)
    console.print(check_text.render(result))
    lines = console.file.getvalue().splitlines()
    assert lines[1].startswith("golden /data/golden [default]") and lines[2] == sentence
    assert f"- history: {sentence}" in check_md.render(result).splitlines()
    assert "history:" not in check_md.render(plain)
    assert json.loads(check_json.render(result))["since_last_identical"] == sentence
    assert json.loads(check_json.render(plain))["since_last_identical"] is None


def test_history_is_off_with_the_flag_or_the_variable(monkeypatch):
    monkeypatch.delenv("ENVAUDIT_HISTORY", raising=False)
    assert history.history_enabled(False) and not history.history_enabled(True)
    for value in ("off", "OFF", "0", "no", "false"):
        monkeypatch.setenv("ENVAUDIT_HISTORY", value)
        assert not history.history_enabled(False)
    monkeypatch.setenv("ENVAUDIT_HISTORY", "on")
    assert history.history_enabled(False)


def test_since_filters_by_time_and_golden(tree, tmp_path):
    db = tmp_path / "h.sqlite"
    for day, sha in enumerate((GOLDEN_A, GOLDEN_B, GOLDEN_A)):
        history.append_check(result_with(fingerprint(tree, f"fp-{day}")), sha, path=db,
                             at=T0 + timedelta(days=day))
    ids = [r.fingerprint_id for r in history.runs(db, since=T0 + timedelta(days=1))]
    assert ids == ["fp-1", "fp-2"]
    naive = datetime(2025, 6, 2, 12, 0)  # UTC when no zone is given
    assert [r.fingerprint_id for r in history.runs(db, since=naive)] == ["fp-1", "fp-2"]
    assert [r.fingerprint_id for r in history.runs(db, GOLDEN_A)] == ["fp-0", "fp-2"]
    assert [r.fingerprint_id for r in history.runs(
        db, GOLDEN_A, since=history.parse_since("2025-06-02"))] == ["fp-2"]
    assert history.parse_since("2025-06-02T14:00+02:00") == T0 + timedelta(days=1)
    with pytest.raises(EnvauditError, match="YYYY-MM-DD"):
        history.parse_since("yesterday")
