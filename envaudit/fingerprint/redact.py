"""The redaction policy: one set of rules for everything that leaves the machine.

Reports, check outputs in every format, golden bundles and fleet reports are made to be shared;
``Redactor`` is what they pass through (``envaudit.redact_result`` applies it to a check result).
Build one with ``Redactor.for_trees(*fingerprints)`` from every fingerprint involved, then
``.tree(data)`` redacts a JSON tree and ``.text(s)`` any string. In every key and string value:
- secrets: in the ``env`` section, the value of every variable whose name looks secret, whose
  value contains a long random token, or that this version would not record at all (a
  fingerprint from elsewhere, or from an older envaudit that recorded Terraform's ``TF_VAR_*``),
  becomes ``[redacted]``, and each literal occurrence of such a value anywhere else (cause
  evidence quotes values) becomes ``[redacted]`` too; URL userinfo becomes
  ``scheme://[redacted]@host`` and tokens in a URL's path or query ``[redacted]`` in every
  string (rules in ``credentials``; bare tokens are looked for in variable values only, since hex
  digests and commit ids elsewhere are facts);
- hosts in variable values: every ``host:port`` (a name, an IPv4 or a bracketed IPv6 address;
  ``TF_CONFIG``'s cluster) becomes ``[host]:port``, wherever that value is quoted too;
- GPU UUIDs (``GPU-...``, ``MIG-...``) and serials become ``redacted-<hash>``, a SHA-256 salted
  with this installation's random salt (``salt``), stable on one machine, so two reports from
  one box still match and nobody else can reverse it;
- this user's home becomes ``~``; another user's ``/home/<name>`` and ``/Users/<name>`` (anywhere
  in a path) ``/home/[user]``, ``/data/<name>`` and ``/scratch/<name>`` (at the start of a path)
  ``/data/[user]`` and ``/scratch/[user]``; ``/root`` ``~root``;
- the ``os.hostname`` field becomes ``[hostname]`` whatever it holds; elsewhere the hostname of
  this machine and of every fingerprint given (and its first label, when it is a domain name)
  becomes ``[hostname]`` as a whole token with its domain suffix (``[hostname]`` for
  ``node-3.corp.example.com``), and this machine's user names ``[user]`` (not ``root``: every
  machine has it, hiding it hides nobody). A name shorter than NAME_MIN_CHARS or without a letter
  is replaced nowhere else: a forged hostname "1" must not rewrite every "1" of a report.
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from envaudit.fingerprint.credentials import (
    DEVICE_ID,
    REDACTED,
    has_token,
    looks_secret_name,
    mask_url_credentials,
    mask_url_tokens,
)
from envaudit.fingerprint.env_vars import is_recorded
from envaudit.fingerprint.guard import is_unavailable
from envaudit.fingerprint.salt import installation_salt
from envaudit.fingerprint.types import Fingerprint

REDACTED_FIELDS = (
    "hostname (with its domain), user, home and data folders, hosts in variables, GPU identifiers"
    " (salted hash), values of secret-named or unrecorded variables, URL credentials and tokens,"
    " random tokens in variables"
)
HOSTNAME = "[hostname]"
_OTHER_HOME = re.compile(r"/(?:home|Users)/[^/\s:;,'\"]+")
# Shared machines keep each user's data in a folder named after them at the top of these (the
# cluster's /data/<user>, /scratch/<user>). At the start of a path only: a package's own
# ".../data/ops" is not a user's folder.
_SHARED_HOME = re.compile(r"(?<![\w.~-])/(data|scratch)/(?!(?:home|Users)/)[^/\s:;,'\"]+")
_ROOT_HOME = re.compile(r"(?<![\w.~-])/root(?=/|$|[\s:;,'\"])")
_PATH_END = r"(?=/|$|[\s:;,'\"])"
# host:port in a variable's value (TF_CONFIG's cluster, NCCL_COMM_ID): an IPv4 address, a
# bracketed IPv6 address, or a name with a letter in it (so OpenMP's "{0:4}" and cuBLAS's
# ":4096:8" are not hosts). Not after "/", "_" or a word character: a path or an HCA name.
_HOST_PORT = re.compile(
    r"(?<![\w./:\[-])(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]"
    r"|(?=[A-Za-z0-9.-]*[A-Za-z])[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r"(?P<port>:\d{1,5})(?![\w.:])"
)
# A secret shorter than this is replaced only where it is quoted (as causes quote values): a
# 1-5 character value ("0", "true") also occurs everywhere as an ordinary word or number.
_SECRET_MIN_ANYWHERE = 6
# A host or user name shorter than this, or without a letter, is replaced only in its own field:
# "1", "ab" or "12" occur everywhere in a report as numbers and words.
NAME_MIN_CHARS = 3
_UNSHARED_USERS = frozenset({"root"})


def hide_hosts(value: str) -> str:
    """``value`` with every ``host:port`` in it written ``[host]:port``."""
    return _HOST_PORT.sub(lambda m: "[host]" + m["port"], value)


def _replaceable(name: str) -> bool:
    return len(name) >= NAME_MIN_CHARS and any(c.isalpha() for c in name)


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
    # (value, as shown): variable values with hosts in them, rewritten wherever they are quoted
    rewrites: frozenset[tuple[str, str]] = field(default=frozenset(), repr=False)

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
        redactor = cls(installation_salt() if salt is None else salt, identity,
                       frozenset(gpu_ids))
        return redactor.with_values(
            (f"env.{name}", value) for d in data if isinstance(env := _get(d, "env"), Mapping)
            and not is_unavailable(env) for name, value in env.items())

    def with_secrets(self, values: Iterable[Any]) -> Redactor:
        """This policy, also hiding each of ``values`` wherever it occurs (non-strings ignored)."""
        new = {v for v in values if isinstance(v, str) and v and v != REDACTED}
        if new <= self.secrets:
            return self
        return replace(self, secrets=self.secrets | new)

    def with_values(self, pairs: Iterable[tuple[str, Any]]) -> Redactor:
        """This policy, also hiding wherever they are quoted the values found at fingerprint paths
        (``(path, value)`` pairs) that it hides (``is_secret``) or rewrites (hosts in a
        variable)."""
        hidden: set[str] = set()
        rewrites: set[tuple[str, str]] = set()
        for path, value in pairs:
            if not isinstance(value, str) or not value or value == REDACTED:
                continue
            if self.is_secret(path, value):
                hidden.add(value)
            elif path.startswith("env.") and (shown := hide_hosts(value)) != value:
                rewrites.add((value, shown))
        redactor = self.with_secrets(hidden)
        if rewrites <= redactor.rewrites:
            return redactor
        return replace(redactor, rewrites=redactor.rewrites | rewrites)

    def is_secret(self, path: str, value: Any) -> bool:
        """Whether ``value`` at the dotted fingerprint ``path`` is hidden whole: a variable whose
        name looks secret, that this version would not record, or whose value contains a long
        random token. (URL userinfo and tokens in a value are masked by ``text``, keeping the
        rest of the URL.)"""
        if not path.startswith("env.") or not isinstance(value, str) or not value:
            return False
        name = path[4:]
        return looks_secret_name(name) or not is_recorded(name) or has_token(value)

    def value(self, path: str, value: Any) -> Any:
        """The redacted form of ``value`` found at the dotted fingerprint ``path`` (a ``Change``
        carries one on each side). ``None`` (absent) stays ``None``."""
        return self._node(value, path)

    def tree(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A redacted copy of a fingerprint tree (any JSON tree; ``env`` is read as variables)."""
        return {self.text(str(key)): self._node(node, str(key)) for key, node in data.items()}

    def text(self, text: str) -> str:
        """``text`` with every secret, credential, identifier, home, host and user name hidden."""
        patterns = self._patterns
        if patterns["secrets"] is not None:
            text = patterns["secrets"].sub(lambda m: patterns["forms"][m.group(0)], text)
        text = mask_url_tokens(mask_url_credentials(text))
        for identifier in sorted(self.gpu_ids, key=len, reverse=True):
            text = text.replace(identifier, hashed(identifier, self.salt))
        text = DEVICE_ID.sub(lambda m: hashed(m.group(0), self.salt), text)
        for home in patterns["homes"]:
            text = home.sub("~", text)
        text = _OTHER_HOME.sub("/home/[user]", text)
        text = _SHARED_HOME.sub(r"/\1/[user]", text)
        text = _ROOT_HOME.sub("~root", text)
        for pattern, label in patterns["words"]:
            text = pattern.sub(label, text)
        return text

    def _node(self, value: Any, path: str) -> Any:
        if is_unavailable(value):  # why a probe could not answer: text, never a variable
            return {k: self.text(v) if isinstance(v, str) else v for k, v in value.items()}
        if isinstance(value, Mapping):
            return {self.text(str(k)): self._node(v, f"{path}.{k}") for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._node(item, path) for item in value]
        if not isinstance(value, str):
            return value
        if self.is_secret(path, value):
            return REDACTED
        if path == "os.hostname" and value:
            return HOSTNAME  # whatever it is: too short or all digits to be replaced elsewhere
        if path.startswith("env."):
            value = hide_hosts(value)
        return self.text(value)

    @cached_property
    def _patterns(self) -> dict[str, Any]:
        forms: dict[str, str] = {}  # how a hidden value may be written -> what replaces it
        for secret in self.secrets:
            # As written, and as Python's repr() and JSON escape it inside quotes.
            for form in {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]}:
                if len(secret) >= _SECRET_MIN_ANYWHERE:
                    forms[form] = REDACTED
                else:
                    forms.update({q + form + q: q + REDACTED + q for q in "'\""})
        for value, shown in self.rewrites:
            if len(value) >= _SECRET_MIN_ANYWHERE:
                forms.update({value: shown, repr(value)[1:-1]: repr(shown)[1:-1],
                              json.dumps(value)[1:-1]: json.dumps(shown)[1:-1]})
        ordered = sorted(forms, key=len, reverse=True)  # one pass, longest first: no re-matching
        hostnames = {label for name in self.identity.hostnames
                     for label in (name, name.split(".")[0]) if _replaceable(label)}
        users = {u for u in self.identity.users - _UNSHARED_USERS if _replaceable(u)}
        # A hostname takes its domain suffix with it (labels that start with a letter, so a
        # version or a sentence's full stop stays).
        domain = r"(?:\.[A-Za-z][A-Za-z0-9-]*)*"
        return {
            "secrets": re.compile("|".join(map(re.escape, ordered))) if ordered else None,
            "forms": forms,
            "homes": [re.compile(rf"(?<![\w.-]){re.escape(h)}{_PATH_END}")
                      for h in self.identity.homes],
            "words": [
                (re.compile(rf"(?<![\w.-]){re.escape(name)}{suffix}(?![\w-])"), label)
                for names, label, suffix in ((hostnames, HOSTNAME, domain), (users, "[user]", ""))
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
