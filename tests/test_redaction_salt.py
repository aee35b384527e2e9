"""The redaction salt: random per installation, stored 0600 in a 0700 folder, never derived from
what other users can read, and refused (one line each) when someone else could know or choose it.

Each attack is put in place first (a world-readable machine id, a salt file readable by others,
one owned by another uid, a symbolic link, a folder others can write) and asserted to be there
before the salt is asked for. Tests that play "another user" chown to a throwaway uid and need
root; they are skipped with the reason elsewhere.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest

from envaudit.errors import EnvauditError
from envaudit.fingerprint import redact
from envaudit.fingerprint.salt import SALT_BYTES, installation_salt

STRANGER_UID = 54321  # a throwaway uid: "another user" on this machine
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


def salt_path(config: Path) -> Path:
    return config / "envaudit" / "salt"


def test_salt_is_random_per_installation_not_the_machine_id(tmp_path):
    """/etc/machine-id is the same for every user of a machine (and for every container of an
    image): two installations on this one machine must get unrelated salts."""
    machine_id = Path("/etc/machine-id")
    first, second = installation_salt(tmp_path / "a"), installation_salt(tmp_path / "b")
    assert len(first) == len(second) == SALT_BYTES and first != second
    if machine_id.is_file():  # the old derivation, for the record: not what is used
        import hashlib

        old = hashlib.sha256(b"envaudit-redaction:" + machine_id.read_bytes().strip()).digest()
        assert old not in (first, second)
    assert installation_salt(tmp_path / "a") == first  # stable on one installation


def test_salt_file_is_0600_in_a_0700_folder_whatever_the_umask(tmp_path):
    old = os.umask(0)  # the loosest umask: the modes must not depend on it
    try:
        salt = installation_salt(tmp_path / "config")
    finally:
        os.umask(old)
    path = salt_path(tmp_path / "config")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text(encoding="ascii") == salt.hex() + "\n"
    assert sorted(os.listdir(path.parent)) == ["salt"]  # no temporary file left


def test_report_uses_and_creates_the_stored_salt(tmp_path):
    """A real ``envaudit report`` subprocess: the salt appears 0600 where XDG_CONFIG_HOME says."""
    config = tmp_path / "xdg"
    env = {**os.environ, "XDG_CONFIG_HOME": str(config)}
    proc = subprocess.run([sys.executable, "-m", "envaudit", "report"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(salt_path(config).stat().st_mode) == 0o600


def test_salt_readable_by_others_is_refused_not_used(tmp_path):
    config = tmp_path / "config"
    installation_salt(config)
    path = salt_path(config)
    path.chmod(0o644)  # as another tool, or a careless copy, might leave it
    assert stat.S_IMODE(path.stat().st_mode) & 0o044
    with pytest.raises(EnvauditError) as raised:
        installation_salt(config)
    message = str(raised.value)
    assert "can be read or written by others (mode 0644)" in message and "\n" not in message
    assert "remove it" in message


def test_a_symlinked_salt_is_refused_not_followed(tmp_path):
    known = tmp_path / "known-salt"
    known.write_text("ab" * SALT_BYTES + "\n", encoding="ascii")
    known.chmod(0o600)
    path = salt_path(tmp_path / "config")
    path.parent.mkdir(parents=True, mode=0o700)
    path.symlink_to(known)
    assert path.is_symlink() and os.readlink(path) == str(known)
    with pytest.raises(EnvauditError, match="is a symbolic link"):
        installation_salt(tmp_path / "config")


@needs_root
def test_a_salt_planted_by_another_user_is_refused(tmp_path):
    """Someone who can write a shared XDG_CONFIG_HOME plants a salt they know."""
    path = salt_path(tmp_path / "config")
    path.parent.mkdir(parents=True, mode=0o700)
    path.write_text("cd" * SALT_BYTES + "\n", encoding="ascii")
    path.chmod(0o600)
    os.chown(path, STRANGER_UID, STRANGER_UID)
    assert path.stat().st_uid == STRANGER_UID
    with pytest.raises(EnvauditError, match=f"belongs to another user \\(uid {STRANGER_UID}\\)"):
        installation_salt(tmp_path / "config")


@needs_root
def test_a_salt_folder_others_can_write_is_refused(tmp_path):
    folder = tmp_path / "config" / "envaudit"
    folder.mkdir(parents=True)
    folder.chmod(0o777)  # anybody could swap the salt for one they know
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777
    with pytest.raises(EnvauditError, match="can be written by others .*mode 0777"):
        installation_salt(tmp_path / "config")
    assert not salt_path(tmp_path / "config").exists()  # nothing written there either
    folder.chmod(0o700)
    os.chown(folder, STRANGER_UID, STRANGER_UID)
    with pytest.raises(EnvauditError, match=f"owner uid {STRANGER_UID}"):
        installation_salt(tmp_path / "config")


def test_a_fifo_in_place_of_the_salt_is_refused_without_hanging(tmp_path):
    path = salt_path(tmp_path / "config")
    path.parent.mkdir(parents=True, mode=0o700)
    os.mkfifo(path, 0o600)
    with pytest.raises(EnvauditError, match="not a regular file"):
        installation_salt(tmp_path / "config")


@pytest.mark.parametrize("content", ["not hex\n", "ab" * 8 + "\n", ""])
def test_a_corrupt_salt_is_one_user_error_and_never_replaced(tmp_path, content):
    path = salt_path(tmp_path / "config")
    path.parent.mkdir(parents=True, mode=0o700)
    path.write_text(content, encoding="ascii")
    path.chmod(0o600)
    with pytest.raises(EnvauditError, match=f"is not {2 * SALT_BYTES} hex digits; remove it"):
        installation_salt(tmp_path / "config")
    assert path.read_text(encoding="ascii") == content


def test_salt_folder_follows_xdg_config_home_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    salt = installation_salt()
    assert salt_path(tmp_path / "xdg").read_text() == salt.hex() + "\n"
    assert installation_salt(tmp_path / "given") != salt  # a given folder wins
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    salt = installation_salt()
    assert salt_path(tmp_path / "home" / ".config").read_text() == salt.hex() + "\n"


def test_salt_without_any_home_is_a_user_error(monkeypatch):
    import pwd

    def no_entry(uid: int) -> types.SimpleNamespace:
        raise KeyError(uid)

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.delenv("HOME")
    with pytest.raises(EnvauditError, match="neither XDG_CONFIG_HOME nor HOME is set"):
        installation_salt()


def test_a_salt_another_process_stored_first_wins(tmp_path, monkeypatch):
    other = "ab" * SALT_BYTES

    def link_after_the_other(src, dst):
        Path(dst).write_text(other + "\n", encoding="ascii")
        Path(dst).chmod(0o600)
        raise FileExistsError(errno.EEXIST, "File exists", str(dst))

    monkeypatch.setattr(os, "link", link_after_the_other)
    assert installation_salt(tmp_path) == bytes.fromhex(other)
    assert sorted(os.listdir(tmp_path / "envaudit")) == ["salt"]


def test_a_file_system_without_hard_links_gets_the_salt_by_rename(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    salt = installation_salt(tmp_path)
    assert salt_path(tmp_path).read_text(encoding="ascii") == salt.hex() + "\n"
    assert stat.S_IMODE(salt_path(tmp_path).stat().st_mode) == 0o600


def test_a_salt_that_cannot_be_stored_is_one_user_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(EnvauditError) as raised:
        installation_salt(tmp_path / "file")
    message = str(raised.value)
    assert message.startswith(f"cannot store the redaction salt in {salt_path(tmp_path / 'file')}")
    assert message.endswith("set XDG_CONFIG_HOME to a writable folder, or pass --no-redact")


def test_gpu_serials_hash_with_the_installation_salt(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    tree = {"gpu": {"devices": [{"serial": "1652322012345"}]}}
    shown = redact.redact(tree)["gpu"]["devices"][0]["serial"]
    assert shown == redact.hashed("1652322012345", installation_salt())
    assert "1652322012345" not in shown
