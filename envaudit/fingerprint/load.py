"""``load_fingerprint(path)``: a fingerprint JSON file, or the recording fingerprint of a golden
bundle folder (the ``"fingerprint"`` key of its ``manifest.json``, read through the store, which
verifies the whole bundle first: a corrupt or forged bundle is refused here as in a check).

Every way the input can be wrong raises ``EnvauditError`` with one line saying what and how to fix.
"""

from __future__ import annotations

import json
from pathlib import Path

from envaudit.errors import EnvauditError
from envaudit.fingerprint.model import Fingerprint

_HOW = (
    "pass a file written by 'envaudit fingerprint --format json -o FILE' or a golden bundle folder"
)


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
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EnvauditError(f"{path} is not a text file; {_HOW}") from None
    except OSError as exc:
        raise EnvauditError(f"cannot read {path}: {exc.strerror}; {_HOW}") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise EnvauditError(f"{path} is nested too deeply to be a fingerprint; {_HOW}") from None
    except ValueError as exc:
        raise EnvauditError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); {_HOW}"
        ) from None
