"""The redaction policy: one set of rules for everything that leaves the machine.

Reports, check outputs in every format, golden bundles and fleet reports are made to be shared;
``Redactor`` is what they pass through (``envaudit.redact_result`` applies it to a check result).
Build one with ``Redactor.for_trees(*fingerprints)`` from every fingerprint involved, then
``.tree(data)`` redacts a JSON tree and ``.text(s)`` any string. In every key and string value:
- secrets: the value of every variable whose name looks secret, and every variable value that
  contains a long random token, becomes ``[redacted]`` in the ``env`` section, and each literal
  occurrence of such a value anywhere else (cause evidence quotes values) becomes ``[redacted]``
  too; URL userinfo becomes ``scheme://[redacted]@host`` in every string
  (rules in ``credentials``; tokens are looked for in variable values only, since hex digests
  and commit ids elsewhere are facts);
- GPU UUIDs (``GPU-...``, ``MIG-...``) and serials become ``redacted-<hash>``, a salted SHA-256
  that is stable on one machine, so two reports from one box still match and nobody else can
  reverse it. The salt is derived from /etc/machine-id, or else a random one is stored once in
  ``$XDG_CONFIG_HOME/envaudit/salt`` (default ``~/.config``), written atomically;
- this user's home becomes ``~``, other ``/home/<name>`` and ``/Users/<name>`` folders
  ``/home/[user]``, ``/root`` ``~root``;
- the hostname of this machine and of every fingerprint given becomes ``[hostname]``, this
  machine's user names ``[user]`` (not ``root``: every machine has it, hiding it hides nobody).
Constraints: the policy is data (a frozen ``Redactor``), built once and applied the same way to
the golden and the current side, so a redacted golden diffs cleanly against a redacted current;
who and where this machine is comes in as an ``Identity`` that tests inject; nothing here formats
or prints. Redaction does not recompute a tree's ``fingerprint_id``.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from envaudit.errors import EnvauditError
from envaudit.fingerprint.credentials import (
    DEVICE_ID,
    REDACTED,
    has_token,
    looks_secret_name,
    mask_url_credentials,
)
from envaudit.fingerprint.model import Fingerprint

REDACTED_FIELDS = (
    "hostname, user, home paths, GPU identifiers (salted hash), values of secret-named"
    " variables, URL credentials, random tokens in variables"
)
MACHINE_ID = Path("/etc/machine-id")
_OTHER_HOME = re.compile(r"/(?:home|Users)/[^/\s:;,'\"]+")
_ROOT_HOME = re.compile(r"(?<![\w.~-])/root(?=/|$|[\s:;,'\"])")
_PATH_END = r"(?=/|$|[\s:;,'\"])"
# A secret shorter than this is replaced only where it is quoted (as causes quote values): a
# 1-5 character value ("0", "true") also occurs everywhere as an ordinary word or number.
_SECRET_MIN_ANYWHERE = 6
_UNSHARED_USERS = frozenset({"root"})


@dataclass(frozen=True)
class Identity:
    """Who and where this process is: the names and home folders redaction hides."""

    hostnames: frozenset[str]
    users: frozenset[str]
    homes: tuple[str, ...]  # this user's home folder(s), without a trailing "/"

    @classmethod
    def of_this_machine(cls) -> Identity:
        users = {os.environ.get("USER", ""), os.environ.get("LOGNAME", "")}
        homes = {os.environ.get("HOME", "")}
        try:
            homes.add(str(Path.home()))
        except RuntimeError:  # no HOME and no passwd entry (a container's arbitrary uid)
            pass
        try:
            users.add(getpass.getuser())
        except (OSError, KeyError):
            pass
        try:
            import pwd

            entry = pwd.getpwuid(os.getuid())
            users.add(entry.pw_name)
            homes.add(entry.pw_dir)
        except (ImportError, KeyError):
            pass
        return cls.of(hostnames=[os.uname().nodename], users=users, homes=homes)

    @classmethod
    def of(cls, hostnames: Iterable[str], users: Iterable[str], homes: Iterable[str]) -> Identity:
        """An identity from recorded inputs; empty names and a home of "/" are dropped (HOME=/
        for a service account would turn every path into "~")."""
        stripped = {h.rstrip("/") for h in homes}
        return cls(
            hostnames=frozenset(h for h in hostnames if h),
            users=frozenset(u for u in users if u),
            homes=tuple(sorted((h for h in stripped if h), key=len, reverse=True)),
        )


@dataclass(frozen=True)
class Redactor:
    """The policy, with everything it must hide already collected. Build with ``for_trees``."""

    # What the policy hides is kept out of repr(), so a log line or a traceback cannot leak it.
    salt: bytes = field(repr=False)
    identity: Identity = field(repr=False)
    gpu_ids: frozenset[str] = field(default=frozenset(), repr=False)  # named in the fingerprints
    secrets: frozenset[str] = field(default=frozenset(), repr=False)  # never in any string

    @classmethod
    def for_trees(
        cls, *trees: Mapping[str, Any] | Fingerprint, salt: bytes | None = None,
        identity: Identity | None = None,
    ) -> Redactor:
        """The policy for output that shows ``trees`` (fingerprint JSON trees or Fingerprints):
        this machine's names and homes, and each tree's hostname, GPU ids and secret values."""
        identity = Identity.of_this_machine() if identity is None else identity
        data = [t.data if isinstance(t, Fingerprint) else t for t in trees]
        hostnames = {h for d in data if (h := _get(d, "os", "hostname")) and isinstance(h, str)}
        identity = replace(identity, hostnames=identity.hostnames | hostnames)
        gpu_ids = {i for d in data for i in _gpu_identifiers(d)}
        redactor = cls(machine_salt() if salt is None else salt, identity, frozenset(gpu_ids))
        hidden = [
            value for d in data if isinstance(env := _get(d, "env"), Mapping)
            for name, value in env.items() if redactor.is_secret(f"env.{name}", value)
        ]
        return redactor.with_secrets(hidden)

    def with_secrets(self, values: Iterable[Any]) -> Redactor:
        """This policy, also hiding each of ``values`` wherever it occurs (non-strings ignored)."""
        new = {v for v in values if isinstance(v, str) and v and v != REDACTED}
        if new <= self.secrets:
            return self
        return replace(self, secrets=self.secrets | new)

    def is_secret(self, path: str, value: Any) -> bool:
        """Whether ``value`` at the dotted fingerprint ``path`` is hidden whole: a variable whose
        name looks secret, or whose value contains a long random token. (URL userinfo in a value
        is masked by ``text``, keeping the rest of the URL.)"""
        if not path.startswith("env.") or not isinstance(value, str) or not value:
            return False
        return looks_secret_name(path[4:]) or has_token(value)

    def value(self, path: str, value: Any) -> Any:
        """The redacted form of ``value`` found at the dotted fingerprint ``path`` (a ``Change``
        carries one on each side). ``None`` (absent) stays ``None``."""
        if self.is_secret(path, value):
            return REDACTED
        return self._node(value)

    def tree(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A redacted copy of a fingerprint tree (any JSON tree; ``env`` is read as variables)."""
        out: dict[str, Any] = {}
        for key, node in data.items():
            if key == "env" and isinstance(node, Mapping):
                out[key] = {self.text(str(n)): self.value(f"env.{n}", v) for n, v in node.items()}
            else:
                out[self.text(str(key))] = self._node(node)
        return out

    def text(self, text: str) -> str:
        """``text`` with every secret, credential, identifier, home, host and user name hidden."""
        patterns = self._patterns
        if patterns["secrets"] is not None:
            text = patterns["secrets"].sub(lambda m: patterns["forms"][m.group(0)], text)
        text = mask_url_credentials(text)
        for identifier in sorted(self.gpu_ids, key=len, reverse=True):
            text = text.replace(identifier, hashed(identifier, self.salt))
        text = DEVICE_ID.sub(lambda m: hashed(m.group(0), self.salt), text)
        for home in patterns["homes"]:
            text = home.sub("~", text)
        text = _OTHER_HOME.sub("/home/[user]", text)
        text = _ROOT_HOME.sub("~root", text)
        for pattern, label in patterns["words"]:
            text = pattern.sub(label, text)
        return text

    def _node(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {self.text(str(k)): self._node(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._node(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    @cached_property
    def _patterns(self) -> dict[str, Any]:
        forms: dict[str, str] = {}  # how a secret may be written -> what replaces it
        for secret in self.secrets:
            # As written, and as Python's repr() and JSON escape it inside quotes.
            for form in {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]}:
                if len(secret) >= _SECRET_MIN_ANYWHERE:
                    forms[form] = REDACTED
                else:
                    forms.update({q + form + q: q + REDACTED + q for q in "'\""})
        ordered = sorted(forms, key=len, reverse=True)  # one pass, longest first: no re-matching
        users = self.identity.users - _UNSHARED_USERS
        return {
            "secrets": re.compile("|".join(map(re.escape, ordered))) if ordered else None,
            "forms": forms,
            "homes": [re.compile(rf"(?<![\w.-]){re.escape(h)}{_PATH_END}")
                      for h in self.identity.homes],
            "words": [
                (re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w-])"), label)
                for names, label in ((self.identity.hostnames, "[hostname]"), (users, "[user]"))
                for name in sorted(names, key=len, reverse=True)
            ],
        }


def like(reference: Fingerprint, reference_redacted: bool, other: Fingerprint) -> Fingerprint:
    """``other`` as ``reference`` is stored: redacted by the policy of both when ``reference``
    was recorded redacted (a shared bundle), so that redaction itself never shows as a change."""
    if not reference_redacted:
        return other
    return Fingerprint(Redactor.for_trees(reference, other).tree(other.data))


def redact(data: Mapping[str, Any], salt: bytes | None = None) -> dict[str, Any]:
    """``data`` redacted by the policy for that one tree on this machine (``envaudit report``)."""
    return Redactor.for_trees(data, salt=salt).tree(data)


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
        try:
            config_home = Path(xdg) if xdg else Path.home() / ".config"
        except RuntimeError:  # no HOME and no passwd entry (a container's arbitrary uid)
            raise EnvauditError(
                "cannot find a folder for the redaction salt (neither XDG_CONFIG_HOME nor HOME"
                " is set); set XDG_CONFIG_HOME to a writable folder, or pass --no-redact"
            ) from None
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


def _get(data: Mapping[str, Any], *path: str) -> Any:
    node: Any = data
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _gpu_identifiers(data: Mapping[str, Any]) -> Iterable[str]:
    devices = _get(data, "gpu", "devices")
    for device in devices if isinstance(devices, list) else []:
        for key in ("uuid", "serial"):
            value = device.get(key) if isinstance(device, Mapping) else None
            if isinstance(value, str) and value:
                yield value
