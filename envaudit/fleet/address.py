"""Where the fleet's scheduler is and how to talk to it: the address and, for ``tls://``, the
client's TLS material. Every mistake here is one ``EnvauditError`` line (exit 2), checked before
Dask is asked to connect, so that Dask's own messages (``TypeError: TLS expects a
ssl_context``, an abstract UCX connector) never surface as an internal error.

Trust model of a fleet (docs/security.md): whoever can connect to the scheduler can
run code on every worker (that is what Dask is for), so a shared fleet's scheduler should accept
TLS clients with certificates only. The client trusts the scheduler and the nodes for nothing but
the content of their answers: an answer is JSON data, never a pickle (``wire``), so a hostile
scheduler or node can lie about its results or stop a run, but cannot run code here.

Supported: ``tcp://HOST:PORT`` (or ``HOST:PORT``) and ``tls://HOST:PORT`` with a CA file, the
client's certificate and its key (options, else Dask's ``distributed.comm.tls.ca-file`` and
``distributed.comm.tls.client.cert`` / ``.key`` settings). Dask's TLS is mutual: the scheduler
checks the client's certificate against its CA, the client checks the scheduler's against the
given CA (host names are not checked: Dask's contexts do not).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from typing import Any

from envaudit.errors import EnvauditError

SCHEMES = ("tcp", "tls")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]{2,45}\]")
_EXPECTED = "expected tcp://HOST:PORT or tls://HOST:PORT"
# The names users see in messages, in the order options and Dask's settings are tried.
_OPTIONS = {"ca_file": ("--tls-ca-file", "distributed.comm.tls.ca-file"),
            "cert": ("--tls-cert", "distributed.comm.tls.client.cert"),
            "key": ("--tls-key", "distributed.comm.tls.client.key")}


@dataclass(frozen=True)
class TlsFiles:
    """The client's TLS material as given on the command line (None: not given)."""

    ca_file: str | None = None
    cert: str | None = None
    key: str | None = None

    @property
    def given(self) -> bool:
        return any((self.ca_file, self.cert, self.key))


def scheduler_address(address: str) -> str:
    """``address`` as Dask spells it (``tcp://`` added when no scheme is given), or the one line
    that says what is wrong with it."""
    shown = repr(address[:200])
    scheme, sep, location = address.partition("://")
    if not sep:
        scheme, location = "tcp", address
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise EnvauditError(f"the scheduler address {shown} uses {scheme}://, which envaudit "
                            f"fleet does not support; {_EXPECTED}")
    if location.startswith("["):
        host, _, port = location.partition("]:")
        host += "]"
        ok_host = bool(_IPV6.fullmatch(host))
    else:
        host, _, port = location.rpartition(":")
        ok_host = bool(_HOST.fullmatch(host))
        if not ok_host and host.count(":"):
            raise EnvauditError(f"the scheduler address {shown} is not valid: an IPv6 address "
                                f"needs brackets, like tcp://[::1]:8786")
    if not ok_host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EnvauditError(f"the scheduler address {shown} is not valid; {_EXPECTED} "
                            "(a port from 1 to 65535)")
    return f"{scheme}://{host}:{int(port)}"


def security(address: str, tls: TlsFiles) -> Any:
    """The ``distributed.security.Security`` for ``address`` (None for ``tcp://``); TLS material
    that is missing, unreadable or not a certificate is one line."""
    if not address.startswith("tls://"):
        if tls.given:
            raise EnvauditError("--tls-ca-file, --tls-cert and --tls-key need a tls:// scheduler "
                                f"address (got {address})")
        return None
    import dask
    from distributed.security import Security

    files = {field: getattr(tls, field) or dask.config.get(setting, None)
             for field, (_, setting) in _OPTIONS.items()}
    missing = [_OPTIONS[f][0] for f in ("ca_file", "cert") if not files[f]]
    if missing:
        raise EnvauditError(f"a tls:// scheduler needs {' and '.join(missing)} (the CA that "
                            "signed the scheduler's certificate, and this client's certificate;"
                            " --tls-key when the key is in its own file), or Dask's "
                            "distributed.comm.tls.ca-file and distributed.comm.tls.client.cert "
                            "settings")
    for field, path in files.items():
        if path:
            _readable_file(str(path), _OPTIONS[field][0])
    sec = Security(tls_ca_file=files["ca_file"], tls_client_cert=files["cert"],
                   tls_client_key=files["key"], require_encryption=True)
    try:
        sec.get_connection_args("client")  # loads the files into an SSL context now
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise EnvauditError(f"cannot use the TLS files for the scheduler ({exc}); give the CA "
                            "file, a PEM certificate and its private key") from None
    return sec


def _readable_file(path: str, option: str) -> None:
    try:
        info = os.stat(path)
    except OSError as exc:
        raise EnvauditError(f"{option} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise EnvauditError(f"{option} {path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise EnvauditError(f"{option} {path}: not readable")
