"""Fingerprint JSON (schema ``envaudit.fingerprint/N``): the fingerprint's own canonical form."""

from __future__ import annotations

from envaudit.fingerprint.types import Fingerprint


def render(fp: Fingerprint) -> str:
    return fp.to_json()
