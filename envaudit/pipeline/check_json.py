"""``envaudit compare A.json B.json``: two check JSONs compared by what they hold.

A check JSON (``envaudit check --format json``, docs/json.md) holds each array's SHA-256, not the
array. So two of them tell which arrays are bit-identical between the two runs, and the first
array that differs in pipeline order (``compare/digests.py``). Each also gives its own verdict
against its golden. They do not tell by how much an array differs, so the verdict is decided as
``DigestComparison.verdict`` explains. The environment changes between the two runs are known
only when both checked the same golden: each JSON lists what changed against that golden, so the
change from A's run to B's can be read from the two lists (``changes_between``). A check JSON
holds no whole fingerprint, only its id.

A check JSON is someone else's file. It is read through ``untrusted`` (a regular file of bounded
size, nested to a bounded depth). Every field used is type-checked, and only those fields are read.
Anything else is refused with one line: a bundle's manifest, a fingerprint, the output of
``envaudit compare`` itself, wrong types, an unknown mode.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from envaudit import modes as registry
from envaudit import untrusted
from envaudit.compare.digests import by_digest
from envaudit.compare.types import VERDICTS, DigestComparison, Verdict
from envaudit.errors import EnvauditError
from envaudit.fingerprint.types import CATEGORIES, ORIGINS, Change
from envaudit.result import SCHEMA, CheckResult, OfflineComparison
from envaudit.workload.types import unkeyed

# A canary check JSON is about 300 KB; a user model with thousands of layers stays far below.
MAX_BYTES = 64 << 20
_HOW = "pass a file written by 'envaudit check --format json -o FILE'"
_DIGEST = re.compile(r"[0-9a-f]{32,64}")  # ``tensors.digest``: a short SHA-256
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,1000}")  # an array's name: printable, bounded
_ID = re.compile(r"[A-Za-z0-9_.:-]{0,200}")
_PATH = re.compile(r".{1,4096}", re.DOTALL)  # shown, never opened: any characters, bounded


@dataclass(frozen=True)
class CheckRecord:
    """What ``envaudit compare`` reads of one check JSON, every field checked."""

    path: str  # the JSON file
    verdict: Verdict  # against its own golden
    workload: str  # "canary" or "user-model"
    model_sha256: str | None  # the user's model, where it was one
    golden_path: str
    golden_sha256: str  # which golden it checked ("" where the JSON does not say)
    fingerprint_id: str  # its own run's
    changes: tuple[Change, ...]  # against its golden
    digests: Mapping[str, str]  # ``keyed_arrays`` key -> ``tensors.digest`` of the array


def compare_checks(a: str, b: str, *, strict: bool) -> CheckResult:
    """Check JSON A (the golden run) against check JSON B, by digest."""
    from envaudit.pipeline.compose import digest_result

    started = time.perf_counter()
    first, second = read_check(a), read_check(b)
    if (first.workload, first.model_sha256) != (second.workload, second.model_sha256):
        raise EnvauditError(f"A and B cannot be compared: {_subject(first)} was checked in A,"
                            f" {_subject(second)} in B; compare two checks of the same workload")
    same = bool(first.golden_sha256) and first.golden_sha256 == second.golden_sha256
    compared = by_digest(first.digests, second.digests, golden_verdict=first.verdict,
                         current_verdict=second.verdict, same_golden=same)
    changes = changes_between(first, second) if same else None
    left_out = (*_left_out(compared.only_golden, "A"), *_left_out(compared.only_current, "B"))
    offline = OfflineComparison(inputs="check_json", current_path=second.path,
                                left_out=left_out,
                                said=_said(first, second, compared, changes is not None,
                                           left_out),
                                fingerprints_compared=changes is not None, digests=compared)
    return digest_result(first, second, compared, changes or (), offline, strict=strict,
                         seconds=time.perf_counter() - started)


def _said(a: CheckRecord, b: CheckRecord, compared: DigestComparison, changes_known: bool,
          left_out: tuple[str, ...]) -> tuple[str, ...]:
    """What two check JSONs could and could not tell, one sentence each."""
    said = [f"A is check JSON {a.path}, B is check JSON {b.path}: the arrays their runs"
            " computed are compared by digest (equal digests, equal bits)"]
    if compared.same_golden:
        said.append(f"both checked the same golden ({a.golden_path}): A's check found"
                    f" {_words(a.verdict)}, B's {_words(b.verdict)}")
    else:
        said.append(f"A and B checked different goldens (A {a.golden_path}, B {b.golden_path}):"
                    f" A's check found {_words(a.verdict)} against its golden, B's"
                    f" {_words(b.verdict)} against its own")
    if compared.differing and not compared.magnitude_known:
        said.append(_how_much(compared, a, b))
    if compared.differing:
        said.append("not replayed and no cause ranked: digests show where the two runs differ,"
                    " not how")
    if not changes_known:
        same = (" (both had the same numerics-relevant fingerprint)"
                if a.fingerprint_id == b.fingerprint_id else "")
        said.append(f"the environment changes between the two runs are not known{same}: a check"
                    f" JSON holds its run's fingerprint id only (A {a.fingerprint_id}, B"
                    f" {b.fingerprint_id}), and only two checks of one golden say what changed"
                    " between them; compare the two fingerprints with 'envaudit diff'")
    if left_out:
        said.append(f"not compared (only one check computed them): {'; '.join(left_out)}")
    return tuple(said)


def _how_much(compared: DigestComparison, a: CheckRecord, b: CheckRecord) -> str:
    """Where the size of a difference can be found, when digests cannot give it."""
    if compared.same_golden and b.verdict == "identical" and not compared.only_current:
        return (f"differs; B's check was bit-identical to the golden both checked, so A's own"
                f" check measured the same difference the other way round ({_words(a.verdict)});"
                " compare them in the other order for its verdict")
    return ("differs; by how much needs the arrays, not their digests: record a golden bundle in"
            " each environment ('envaudit record') and compare the two bundles")


def _left_out(keys: tuple[str, ...], side: str) -> list[str]:
    """The arrays only one side computed, a phrase per mode (and one for the probes)."""
    stages, probes = unkeyed(dict.fromkeys(keys, ""))
    said = [f"{len(arrays)} array{'' if len(arrays) == 1 else 's'} of {mode} mode (only {side})"
            for mode, arrays in stages.items()]
    return said + ([f"{len(probes)} probe(s) (only {side})"] if probes else [])


def _words(verdict: str) -> str:
    return verdict.replace("_", " ")


def changes_between(a: CheckRecord, b: CheckRecord) -> tuple[Change, ...]:
    """The fingerprint changes from A's run to B's, read from what each changed against the one
    golden both checked: a field A's JSON does not list had the golden's value in A's run (which
    B's JSON gives where B changed it), and the same the other way round."""
    mine = {c.path: c for c in a.changes}
    theirs = {c.path: c for c in b.changes}
    between = []
    for path in sorted(set(mine) | set(theirs)):
        before = mine[path].current if path in mine else theirs[path].golden
        after = theirs[path].current if path in theirs else mine[path].golden
        if before != after:
            between.append(replace(theirs.get(path) or mine[path], golden=before, current=after))
    return tuple(between)


def read_check(path: str) -> CheckRecord:
    """The check JSON at ``path``, or one line of refusal saying what it is instead."""
    try:
        data = untrusted.read_json(Path(path), MAX_BYTES)
    except untrusted.Refused as exc:
        raise EnvauditError(f"{path} {exc}; {_HOW}") from None
    except OSError as exc:
        raise EnvauditError(f"{path} cannot be read ({exc.strerror or exc}); {_HOW}") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if not isinstance(schema, str) or schema != SCHEMA:
        raise EnvauditError(f"{path} is {_what(data)}, not a check JSON ({SCHEMA}); {_HOW}")
    if "offline" in data:
        raise EnvauditError(f"{path} is the output of 'envaudit compare', not of a check; {_HOW}")
    try:
        return _record(path, data)
    except KeyError as exc:
        raise EnvauditError(f"{path} is not a check JSON envaudit can read (it has no"
                            f" {str(exc.args[0])[:40]!r}); {_HOW}") from None
    except (TypeError, ValueError) as exc:
        raise EnvauditError(f"{path} is not a check JSON envaudit can read ({exc}); {_HOW}"
                            ) from None


def _record(path: str, data: Mapping[str, Any]) -> CheckRecord:
    golden = _typed(data, "golden", dict)
    model = data.get("model")
    sha = _typed(model, "sha256", str) if isinstance(model, dict) else None
    return CheckRecord(
        path=path, verdict=_choice(data, "verdict", VERDICTS),
        workload=_choice(data, "workload", ("canary", "user-model")), model_sha256=sha,
        golden_path=_matching(golden, "path", _PATH),
        golden_sha256=_matching(data, "golden_sha256", re.compile(r"([0-9a-f]{64})?")),
        fingerprint_id=_matching(data, "current_fingerprint_id", _ID),
        changes=tuple(_change(c) for c in _typed(data, "fingerprint_changes", list)),
        digests=_digests(_typed(data, "array_digests", dict)))


def _digests(digests: Mapping[str, Any]) -> dict[str, str]:
    """Every key a ``keyed_arrays`` key of a mode this envaudit knows, every value an array
    digest (``tensors.digest``)."""
    for key, value in digests.items():
        kind, _, rest = key.partition("/")
        mode, _, name = rest.partition("/")
        if kind == "stage" and mode not in registry.names():
            raise ValueError(f"array_digests names mode {mode[:40]!r}, which this envaudit does"
                             " not know")
        if kind not in ("stage", "probe") or not _NAME.fullmatch(name if kind == "stage"
                                                                 else rest):
            raise ValueError(f"array_digests has a key that names no array: {key[:60]!r}")
        if not isinstance(value, str) or not _DIGEST.fullmatch(value):
            raise ValueError(f"array_digests[{key[:60]!r}] is not an array digest")
    return dict(digests)


def _change(entry: Any) -> Change:
    if not isinstance(entry, dict):
        raise TypeError("a fingerprint change is not an object")
    return Change(path=_matching(entry, "path", _NAME), golden=entry.get("golden"),
                  current=entry.get("current"), category=_choice(entry, "category", CATEGORIES),
                  numerics=_typed(entry, "numerics", bool),
                  origin=_choice(entry, "origin", ORIGINS),
                  minutia=_typed(entry, "minutia", bool))


def _typed(data: Mapping[str, Any], key: str, kind: type) -> Any:
    value = data[key]
    if not isinstance(value, kind):
        raise TypeError(f"{key} is not a {kind.__name__}")
    return value


def _choice(data: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> Any:
    value = data[key]
    if value not in allowed:
        raise ValueError(f"{key} is not one of {', '.join(allowed)}")
    return value


def _matching(data: Mapping[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    value = _typed(data, key, str)
    if not pattern.fullmatch(value):
        raise ValueError(f"{key} is not what a check writes there")
    return value


def _what(data: Any) -> str:
    """What a JSON that is no check JSON looks like it is, in a few words."""
    schema = data.get("schema") if isinstance(data, dict) else None
    if isinstance(schema, str) and schema.startswith("envaudit.golden/"):
        return "a golden bundle's manifest (pass the bundle's folder, with another bundle)"
    if isinstance(schema, str) and schema.startswith("envaudit.fingerprint/"):
        return "a fingerprint (compare fingerprints with 'envaudit diff')"
    if isinstance(schema, str) and schema.startswith("envaudit.check/"):
        return f"a check JSON of another schema ({schema[:40]!r})"
    return "a JSON document of another kind"


def _subject(record: CheckRecord) -> str:
    if record.model_sha256 is None:
        return "envaudit's canary workload"
    return f"the model with sha256 {record.model_sha256[:16]}"
