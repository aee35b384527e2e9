"""Redaction of a fingerprint tree for a bug report.

``redact(data)`` returns a copy in which, in every key and string value:
- the home folder becomes ``~``, other ``/home/<name>`` folders ``/home/[user]``, ``/root``
  ``~root``;
- the hostname becomes ``[hostname]`` and the user name ``[user]``;
- GPU UUIDs (``GPU-...``, ``MIG-...``) and serials become ``redacted-<hash>``, a salted SHA-256 that
  is stable on one machine, so two reports from one box still match and nobody else can reverse
  it. The salt is derived from /etc/machine-id, or else a random one is stored once in
  ``$XDG_CONFIG_HOME/envaudit/salt`` (default ``~/.config``), written atomically.
The renderers format the redacted copy; nothing here formats or prints.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from envaudit.errors import EnvauditError

REDACTED_FIELDS = "hostname, user, home paths, GPU identifiers"
_GPU_ID = re.compile(r"\b(?:GPU|MIG)-[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}\b")
_OTHER_HOME = re.compile(r"/home/[^/\s:;,'\"]+")
MACHINE_ID = Path("/etc/machine-id")
_ROOT_HOME = re.compile(r"(?<![\w.~-])/root(?=/|$|[\s:;,'\"])")


def redact(data: Mapping[str, Any], salt: bytes | None = None) -> dict[str, Any]:
    salt = machine_salt() if salt is None else salt
    hostnames = _hostnames(data)
    identifiers = {value: hashed(value, salt) for value in _gpu_identifiers(data)}
    replacements = _Replacements(_homes(), hostnames, _users(), identifiers, salt)
    return replacements.tree(data)


def hashed(identifier: str, salt: bytes) -> str:
    return "redacted-" + hashlib.sha256(salt + identifier.encode("utf-8")).hexdigest()[:12]


def machine_salt(config_home: Path | None = None) -> bytes:
    try:
        machine_id = MACHINE_ID.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        machine_id = ""
    if machine_id:
        return hashlib.sha256(b"envaudit-redaction:" + machine_id.encode()).digest()
    return _stored_salt(config_home)


def _stored_salt(config_home: Path | None) -> bytes:
    if config_home is None:
        xdg = os.environ.get("XDG_CONFIG_HOME")
        config_home = Path(xdg) if xdg else Path.home() / ".config"
    path = config_home / "envaudit" / "salt"
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        pass
    salt = secrets.token_bytes(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".salt.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(salt.hex() + "\n")
        try:
            os.link(tmp, path)  # never replace a salt another process stored first
        except FileExistsError:
            salt = bytes.fromhex(path.read_text(encoding="ascii").strip())
        except OSError:  # a file system without hard links
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except (OSError, ValueError) as exc:
        raise EnvauditError(
            f"cannot store the redaction salt in {path} ({exc}); set XDG_CONFIG_HOME to a"
            " writable folder, or pass --no-redact"
        ) from None
    return salt


def _gpu_identifiers(data: Mapping[str, Any]) -> Iterable[str]:
    gpu = data.get("gpu")
    devices = gpu.get("devices", []) if isinstance(gpu, Mapping) else []
    for device in devices if isinstance(devices, list) else []:
        for key in ("uuid", "serial"):
            value = device.get(key) if isinstance(device, Mapping) else None
            if isinstance(value, str) and value:
                yield value


def _hostnames(data: Mapping[str, Any]) -> set[str]:
    names = {os.uname().nodename}
    os_section = data.get("os")
    if isinstance(os_section, Mapping) and isinstance(os_section.get("hostname"), str):
        names.add(os_section["hostname"])
    return {name for name in names if name}


def _users() -> set[str]:
    names = {os.environ.get("USER", ""), os.environ.get("LOGNAME", "")}
    try:
        names.add(getpass.getuser())
    except (OSError, KeyError):
        pass
    try:
        import pwd

        names.add(pwd.getpwuid(os.getuid()).pw_name)
    except (ImportError, KeyError):
        pass
    return {name for name in names if name}


def _homes() -> list[str]:
    homes = {os.environ.get("HOME", ""), str(Path.home())}
    try:
        import pwd

        homes.add(pwd.getpwuid(os.getuid()).pw_dir)
    except (ImportError, KeyError):
        pass
    return sorted((h.rstrip("/") for h in homes if h.rstrip("/")), key=len, reverse=True)


class _Replacements:
    def __init__(
        self, homes: list[str], hostnames: set[str], users: set[str],
        identifiers: dict[str, str], salt: bytes,
    ) -> None:
        self.homes = homes
        self.identifiers = identifiers
        self.salt = salt
        self.words = [
            (re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w-])"), label)
            for names, label in ((hostnames, "[hostname]"), (users, "[user]"))
            for name in sorted(names, key=len, reverse=True)
        ]

    def tree(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.tree(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.tree(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def text(self, text: str) -> str:
        for identifier, replacement in self.identifiers.items():
            text = text.replace(identifier, replacement)
        text = _GPU_ID.sub(lambda m: hashed(m.group(0), self.salt), text)
        for home in self.homes:
            text = re.sub(rf"{re.escape(home)}(?=/|$|[\s:;,'\"])", "~", text)
        text = _OTHER_HOME.sub("/home/[user]", text)
        text = _ROOT_HOME.sub("~root", text)
        for pattern, label in self.words:
            text = pattern.sub(label, text)
        return text
