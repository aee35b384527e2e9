"""Where output goes and what the exit code says about it: ``-o FILE`` never destroys what is at
the path, a lost stdout is exit 2, and no path, encoding or bug ends in a traceback.

No test here points at a real system file: a device node is made inside a private mount
namespace on a small tmpfs, so even a wrong writer can only replace that copy.
"""

from __future__ import annotations

import dataclasses
import io
import os
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import cli_env, run_cli
from test_render_check import make_result

from envaudit import cli
from envaudit.errors import EnvauditError
from envaudit.output import write_text
from envaudit.render import check_junit


def _namespace_refusal() -> str | None:
    """Why a private mount namespace with a tmpfs and a device node cannot be made here, or None
    when it can (it needs root or CAP_SYS_ADMIN, util-linux unshare and a kernel that allows it)."""
    folder = tempfile.mkdtemp(prefix="envaudit-ns-probe-")
    try:
        proc = subprocess.run(
            ["unshare", "--mount", "sh", "-c",
             'mount -t tmpfs -o size=16k tmpfs "$1" && mknod "$1/null" c 1 3', "sh", folder],
            capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot run unshare: {exc}"
    finally:
        os.rmdir(folder)
    if proc.returncode != 0:
        return f"unshare --mount with tmpfs and mknod not permitted: {proc.stderr.strip()}"
    return None


_NO_NAMESPACE = _namespace_refusal()
needs_namespace = pytest.mark.skipif(_NO_NAMESPACE is not None, reason=str(_NO_NAMESPACE))
ENVAUDIT = [sys.executable, "-m", "envaudit"]


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    return lines[0]


def _fingerprint_to(path: Path | str | bytes) -> subprocess.CompletedProcess[str]:
    return run_cli("fingerprint", "--format", "json", "-o", os.fsdecode(path))


def _is_fingerprint(text: str) -> bool:
    return text.startswith("{") and '"schema": "envaudit.fingerprint/1"' in text


@pytest.fixture(scope="module")
def fingerprints(tmp_path_factory) -> tuple[Path, Path]:
    """Two fingerprint files whose diff is a finding (exit 1): oneDNN switched off in the second."""
    folder = tmp_path_factory.mktemp("fingerprints")
    a, b = folder / "a.json", folder / "b.json"
    for path, onednn in ((a, None), (b, "0")):
        proc = run_cli("fingerprint", "--format", "json", "-o", str(path),
                       env=cli_env(TF_ENABLE_ONEDNN_OPTS=onednn))
        assert proc.returncode == 0, proc.stderr
    assert run_cli("diff", str(a), str(b)).returncode == 1
    return a, b


# --- -o FILE: regular files and symlinks ------------------------------------------------------


def test_existing_file_is_replaced_atomically_keeping_mode_and_owner(tmp_path):
    out = tmp_path / "report.json"
    out.write_text("old report")
    out.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(out, 4321, 4321)
    before = out.stat()
    proc = _fingerprint_to(out)
    assert proc.returncode == 0, proc.stderr
    after = out.stat()
    assert _is_fingerprint(out.read_text())
    assert stat.S_IMODE(after.st_mode) == 0o600  # a private report stays private
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert after.st_ino != before.st_ino  # renamed into place, never rewritten in place
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_new_file_gets_the_mode_the_umask_gives(tmp_path):
    out = tmp_path / "new.json"
    proc = subprocess.run([*ENVAUDIT, "fingerprint", "--format", "json", "-o", str(out)],
                          env=cli_env(), capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: os.umask(0o027), check=False)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


def test_symlink_is_written_through_and_stays_a_link(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    inode = real.stat().st_ino
    proc = _fingerprint_to(link)
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert _is_fingerprint(real.read_text())
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert real.stat().st_ino == inode  # opened through the link, never renamed over its target
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]


@pytest.mark.skipif(os.geteuid() != 0, reason="playing another user needs root (lchown)")
def test_a_strangers_symlink_in_a_shared_folder_never_leads_root_to_replace_its_target(tmp_path):
    """Root writes -o into a /tmp-like folder where another user linked the name to a file of
    root's: the file is neither renamed over nor rewritten, and the refusal is one line."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "root-config"
    victim.write_text("root's own settings\n")
    victim.chmod(0o600)
    link = shared / "report.txt"
    link.symlink_to(victim)
    os.chown(link, 54321, 54321, follow_symlinks=False)
    before = victim.stat()
    assert link.lstat().st_uid == 54321 and link.resolve() == victim
    assert (before.st_uid, shared.stat().st_mode & 0o1002) == (0, 0o1002)

    line = _one_error_line(_fingerprint_to(link))
    assert "another user (uid 54321)" in line or "protected_symlinks" in line
    assert victim.read_text() == "root's own settings\n"
    assert victim.stat().st_ino == before.st_ino
    assert link.is_symlink()


def test_dev_stdout_appends_to_a_log_it_is_redirected_to(tmp_path):
    log = tmp_path / "build.log"
    log.write_text("earlier build output\n")
    proc = subprocess.run(["sh", "-c", '"$@" >> "$0"', str(log), *ENVAUDIT, "fingerprint",
                           "--format", "json", "-o", "/dev/stdout"],
                          env=cli_env(), capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    earlier, rest = log.read_text().split("\n", 1)
    assert earlier == "earlier build output" and _is_fingerprint(rest)


@pytest.mark.parametrize("name", ["-", "/dev/stdout", "/proc/self/fd/1"])
def test_stdout_names_write_into_a_pipe(tmp_path, name):
    proc = subprocess.run(["bash", "-c", 'set -o pipefail; "$@" | cat', "sh", *ENVAUDIT,
                           "fingerprint", "--format", "json", "-o", name],
                          env=cli_env(), cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert _is_fingerprint(proc.stdout)
    assert list(tmp_path.iterdir()) == []  # no file named "-" in the working folder


def test_dangling_symlink_is_refused(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "elsewhere" / "x.json")
    line = _one_error_line(_fingerprint_to(link))
    assert "symlink" in line and "does not exist" in line
    assert link.is_symlink() and not (tmp_path / "elsewhere").exists()


def test_symlink_to_a_directory_is_refused(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "folder")
    assert "directory" in _one_error_line(_fingerprint_to(tmp_path / "link"))
    assert list((tmp_path / "folder").iterdir()) == []


def test_socket_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        assert "socket" in _one_error_line(_fingerprint_to(path))
        assert stat.S_ISSOCK(path.lstat().st_mode)


def test_non_utf8_file_name_is_written(tmp_path):
    name = os.fsdecode(bytes(tmp_path) + b"/r\xffport.json")  # carries a lone surrogate
    proc = _fingerprint_to(name)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(bytes(tmp_path)) == [b"r\xffport.json"]


# --- -o FILE: FIFOs and character devices are written through ----------------------------------


def test_fifo_is_written_through_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    proc = _fingerprint_to(fifo)
    reader.join(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert _is_fingerprint(received[0].decode())
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]


def _in_private_tmpfs(folder: Path, script: str, *args: str, size: str = "64k"):
    """Run ``script`` (sh, "$1" is the folder) with a fresh tmpfs mounted on ``folder`` in a
    mount namespace of its own: nothing it makes or breaks is visible outside it."""
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c",
         f'mount -t tmpfs -o size={size} tmpfs "$1" || exit 99\n{script}',
         "sh", str(folder), *args],
        env=cli_env(), capture_output=True, text=True, timeout=120, check=False)


@needs_namespace
def test_character_device_is_written_through_not_replaced(tmp_path):
    proc = _in_private_tmpfs(tmp_path, """
        mknod "$1/null" c 1 3 || exit 98
        "$2" -m envaudit fingerprint --format json -o "$1/null" || exit $?
        test -c "$1/null" || { echo "not a device any more"; exit 97; }
        ls -A "$1"
    """, sys.executable)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["null"]


@needs_namespace
def test_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path):
    proc = _in_private_tmpfs(tmp_path, """
        printf 'previous report' > "$1/out.json"
        dd if=/dev/zero of="$1/filler" bs=1k 2>/dev/null
        "$2" -m envaudit fingerprint --format json -o "$1/out.json"
        echo "exit $?"
        cat "$1/out.json"; echo
        ls -A "$1"
    """, sys.executable, size="16k")
    assert proc.returncode == 0, proc.stderr
    exit_line, content, *listing = proc.stdout.splitlines()
    assert exit_line == "exit 2"
    assert len(proc.stderr.strip().splitlines()) == 1 and "no space left" in proc.stderr.lower()
    assert "Traceback" not in proc.stderr
    assert content == "previous report"
    assert sorted(" ".join(listing).split()) == ["filler", "out.json"]  # no temporary file


@pytest.mark.parametrize("failure", [OSError(5, "Input/output error"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, failure):
    out = tmp_path / "report.txt"
    out.write_text("previous")

    def fail(fd: int) -> None:
        raise failure

    monkeypatch.setattr(os, "fsync", fail)
    expected = EnvauditError if isinstance(failure, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as caught:
        write_text(str(out), "new")
    if expected is EnvauditError:
        assert "Input/output error" in str(caught.value) and "\n" not in str(caught.value)
    assert out.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["report.txt"]


def test_text_that_is_not_utf8_is_written_with_replacements(tmp_path):
    out = tmp_path / "r.txt"
    write_text(str(out), "golden /data/r\udcffport\n")
    assert out.read_bytes() == b"golden /data/r?port\n"


# --- stdout: exit codes never lie --------------------------------------------------------------


def test_broken_pipe_is_exit_2_not_the_verdict(fingerprints):
    a, b = fingerprints
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte, as with '| head -c0'
    try:
        proc = subprocess.run([*ENVAUDIT, "diff", str(a), str(b)], stdout=write_end,
                              stderr=subprocess.PIPE, env=cli_env(), text=True, timeout=120,
                              check=False)
    finally:
        os.close(write_end)
    line = _one_error_line(proc)
    assert "not fully written" in line and "broken pipe" in line


def test_closed_stdout_is_exit_2_and_suggests_a_file():
    proc = subprocess.run(["sh", "-c", '"$@" >&-', "sh", *ENVAUDIT, "fingerprint"],
                          env=cli_env(), capture_output=True, text=True, timeout=120,
                          check=False)
    assert "-o FILE" in _one_error_line(proc)


def test_unwritable_stdout_is_exit_2_and_suggests_a_file(tmp_path):
    read_only = tmp_path / "stdout"
    read_only.write_text("")
    proc = subprocess.run(["sh", "-c", '"$@" 1<"$0"', str(read_only), *ENVAUDIT,
                           "fingerprint", "--format", "json"],
                          env=cli_env(), capture_output=True, text=True, timeout=120,
                          check=False)
    assert "-o FILE" in _one_error_line(proc)


def test_check_marks_on_an_ascii_stdout(monkeypatch):
    # The rich check report carries verdict marks that rich does not swap for ASCII the way it
    # swaps box lines, so an ASCII stdout (PYTHONIOENCODING=ascii, a C locale) must escape them.
    import envaudit.pipeline.compose

    monkeypatch.setattr(envaudit.pipeline.compose, "check", lambda **kwargs: make_result())
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii"))
    code = cli.main(["check", "--golden", "unused"])
    sys.stdout.flush()
    assert code == 1
    text = raw.getvalue().decode("ascii")
    assert "\\u25b2" in text  # ▲, the drift mark


# --- last resort and argument checks ---------------------------------------------------------


def test_a_bug_is_one_line_and_exit_2(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cli, "_cmd_fingerprint", broken)
    monkeypatch.delenv("ENVAUDIT_DEBUG", raising=False)
    assert cli.main(["fingerprint"]) == 2
    err = capsys.readouterr().err
    assert err == ("envaudit: internal error: RuntimeError: boom second line; please report it "
                   "with the command line and the output of 'envaudit report'\n")
    monkeypatch.setenv("ENVAUDIT_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["fingerprint"])


def test_interrupt_is_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_fingerprint", interrupted)
    assert cli.main(["fingerprint"]) == 130
    assert capsys.readouterr().err == "envaudit: interrupted\n"


@pytest.mark.parametrize("args", [("record", "--golden", ""), ("check", "--golden", ""),
                                  ("fingerprint", "-o", "")])
def test_an_empty_path_is_refused_not_taken_as_the_default(args):
    line = _one_error_line(run_cli(*args))
    assert "is empty" in line


# --- JUnit with a non-UTF-8 path -------------------------------------------------------------


def test_junit_with_a_surrogate_escaped_path_is_well_formed_xml(tmp_path):
    golden = os.fsdecode(b"/data/g\xffolden")
    text = check_junit.render(dataclasses.replace(make_result(), golden_path=golden))
    root = ET.fromstring(text.encode("utf-8"))
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["golden"] == "/data/g\ufffdolden"
    out = tmp_path / "report.xml"
    write_text(str(out), text)
    assert ET.parse(out).getroot().get("name") == "envaudit"
