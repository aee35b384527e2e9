"""``load_fingerprint(path)``: a fingerprint JSON file, or the recording fingerprint of a golden
bundle folder (the ``"fingerprint"`` key of its ``manifest.json``, read through the store, which
verifies the whole bundle first: a corrupt or forged bundle is refused here as in a check).

Every way the input can be wrong raises ``EnvauditError`` with one line saying what and how to fix.
A fingerprint file is someone else's data: it is read through ``envaudit.untrusted`` (a regular
file, or a link to one, of at most ``MAX_BYTES``; JSON nested at most ``untrusted.MAX_DEPTH``
deep), so a FIFO, ``/dev/zero`` or a file of gigabytes is one line of refusal, never a hang.
"""

from __future__ import annotations

from pathlib import Path

from envaudit import untrusted
from envaudit.errors import EnvauditError
from envaudit.fingerprint.types import Fingerprint

_HOW = (
    "pass a file written by 'envaudit fingerprint --format json -o FILE' or a golden bundle folder"
)
# A fingerprint is about 10 KB; a machine with thousands of packages stays under 1 MB.
MAX_BYTES = 16 << 20


def load_fingerprint(path: str) -> Fingerprint:
    return _load(path)[0]


def load_pair(golden: str, current: str) -> tuple[Fingerprint, Fingerprint]:
    """Two fingerprints to diff. Where one side is a bundle recorded redacted, the other side is
    redacted the same way, so that redaction itself is never a change."""
    a, a_redacted = _load(golden)
    b, b_redacted = _load(current)
    from envaudit.fingerprint.redact import like

    return like(b, b_redacted and not a_redacted, a), like(a, a_redacted and not b_redacted, b)


def _load(path: str) -> tuple[Fingerprint, bool]:
    """The fingerprint at ``path`` and whether it was stored redacted (a redacted bundle)."""
    target = Path(path)
    if target.is_dir():
        if not (target / "manifest.json").is_file():
            raise EnvauditError(f"{path} is a folder without manifest.json; {_HOW}")
        from envaudit.store import load_bundle  # a bundle is verified whole, or refused

        bundle = load_bundle(target)
        return bundle.fingerprint, bool(bundle.manifest.get("redacted"))
    if not target.exists():
        raise EnvauditError(f"{path} does not exist; {_HOW}")
    return Fingerprint.from_dict(_read_json(target), path), False


def _read_json(path: Path) -> object:
    try:
        return untrusted.read_json(path, MAX_BYTES)
    except untrusted.Refused as exc:
        raise EnvauditError(f"{path} {exc}; {_HOW}") from None
    except OSError as exc:
        raise EnvauditError(f"cannot read {path}: {exc.strerror or exc}; {_HOW}") from None
