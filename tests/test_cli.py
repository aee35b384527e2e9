"""The command line's contract: usage errors are one line and exit 2, output goes where asked."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

import envaudit


@pytest.mark.parametrize("args", [
    ("check", "--repeat", "0"),
    ("bogus",),
    ("fingerprint", "--format", "xml"),
    ("diff", "only-one.json"),
])
def test_usage_errors_are_one_line_and_exit_2(args):
    proc = run_cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "--help" in lines[0]
    assert "Traceback" not in proc.stderr


def test_no_command_prints_help_and_exits_2():
    proc = run_cli()
    assert proc.returncode == 2
    assert "fingerprint" in proc.stderr and "check" in proc.stderr


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"envaudit {envaudit.__version__}"


def test_output_file_gets_the_report_and_stdout_stays_empty(tmp_path):
    out = tmp_path / "fp.json"
    proc = run_cli("fingerprint", "--format", "json", "-o", str(out))
    assert proc.returncode == 0
    assert proc.stdout == ""
    assert json.loads(out.read_text())["schema"] == "envaudit.fingerprint/1"
    assert [p.name for p in tmp_path.iterdir()] == ["fp.json"]  # no temporary file left


def test_output_to_a_directory_is_a_user_error(tmp_path):
    proc = run_cli("fingerprint", "-o", str(tmp_path))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "directory" in proc.stderr


def test_plain_text_output_has_no_escape_codes_when_piped():
    proc = run_cli("fingerprint")
    assert proc.returncode == 0
    assert "\x1b[" not in proc.stdout
    assert "fingerprint fp-" in proc.stdout.splitlines()[0]
