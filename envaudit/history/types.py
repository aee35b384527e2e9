"""``Run``: one row of the history, as data, and how a check, a record or a fleet report
becomes one.

A run keeps what a person asks of the past ("when was this golden last identical here, and what
changed since?"): the golden's identity (its manifest checksum and path), the fingerprint as
captured (it never leaves this machine through the history), the verdict and exit code, a compact
summary per array and the causes. It does not keep arrays or evidence text; those are in the
check's own JSON when a team wants them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from envaudit.compare.verdict import SEVERITY
from envaudit.fingerprint.types import Fingerprint
from envaudit.plain import plain

if TYPE_CHECKING:
    from envaudit.result import CheckResult
    from envaudit.store import GoldenBundle

SCHEMA = "envaudit.history/1"  # the JSON that ``history`` and ``history show`` write
Command = Literal["record", "check", "fleet check"]
COMMANDS: tuple[Command, ...] = ("record", "check", "fleet check")


@dataclass(frozen=True)
class ArraySummary:
    """One compared array, as much of it as a history needs."""

    name: str
    kind: str  # "stage" or "probe"
    mode: str  # the execution mode that computed it
    status: str  # the status compare/ decided ("identical", "rounding", "changed", ...)
    max_rel: float


@dataclass(frozen=True)
class CauseSummary:
    change: str  # "env.TF_ENABLE_ONEDNN_OPTS: unset -> '0'"
    confidence: str


@dataclass(frozen=True)
class Run:
    """One ``record``, ``check`` or ``fleet check``. ``id`` is 0 until the database numbers it."""

    id: int
    time: datetime  # when it was appended, in UTC
    command: Command
    golden_sha: str  # the bundle's manifest_sha256: which golden, whatever its path
    golden_path: str
    fingerprint_id: str  # a fleet check: every group's id, comma-separated
    verdict: str | None  # None for a record, and for a fleet check of fingerprints only
    exit_code: int
    arrays: tuple[ArraySummary, ...] = ()
    causes: tuple[CauseSummary, ...] = ()
    findings: tuple[str, ...] = ()  # a fleet check's findings
    timings: Mapping[str, float] = field(default_factory=dict)
    # The whole fingerprint as captured (None for a fleet check: its nodes' stay on the nodes).
    fingerprint: Fingerprint | None = field(default=None, compare=False)

    def to_dict(self, with_fingerprint: bool = True) -> dict[str, Any]:
        """This run as JSON-ready data; the whole fingerprint only when asked (a list of runs
        carries its id)."""
        data = {"id": self.id, "time": self.time.isoformat(), "command": self.command,
                "golden_sha": self.golden_sha, "golden_path": self.golden_path,
                "fingerprint_id": self.fingerprint_id, "verdict": self.verdict,
                "exit_code": self.exit_code, "arrays": plain(self.arrays),
                "causes": plain(self.causes), "findings": list(self.findings),
                "timings": dict(self.timings)}
        if with_fingerprint:
            data["fingerprint"] = None if self.fingerprint is None else dict(self.fingerprint.data)
        return data


def from_check(result: CheckResult, golden_sha: str, command: Command,
               at: datetime) -> Run:
    arrays = tuple(ArraySummary(a.name, a.kind, a.mode, a.status, float(a.max_rel))
                   for a in (*result.stages, *result.probes))
    return Run(0, at, command, golden_sha, result.golden_path, result.current_fingerprint_id,
               result.verdict, result.exit_code, arrays, _causes(result.causes), (),
               dict(result.timings), result.current_fingerprint)


def from_record(bundle: GoldenBundle, at: datetime) -> Run:
    workload = bundle.manifest.get("workload")
    timings = workload.get("timings", {}) if isinstance(workload, Mapping) else {}
    return Run(0, at, "record", str(bundle.manifest.get("manifest_sha256", "")), str(bundle.path),
               bundle.fingerprint.fingerprint_id, None, 0, (), (), (), dict(timings),
               bundle.fingerprint)


def from_fleet(report: Mapping[str, Any], golden_sha: str, at: datetime) -> Run:
    """A fleet report's ``to_dict()``: its verdict is the worst group verdict."""
    groups = [g for g in report.get("groups", ()) if isinstance(g, Mapping)]
    verdicts = [g["verdict"] for g in groups if g.get("verdict") in SEVERITY]
    verdict = max(verdicts, key=SEVERITY.index) if verdicts else None
    causes = [CauseSummary(str(c.get("change", "")), str(c.get("confidence", "")))
              for g in groups for c in g.get("causes", ()) if isinstance(c, Mapping)]
    golden = report.get("golden")
    golden_path = str(golden.get("path", "")) if isinstance(golden, Mapping) else ""
    seconds = report.get("seconds")
    return Run(0, at, "fleet check", golden_sha, golden_path,
               ",".join(dict.fromkeys(str(g.get("fingerprint_id", "")) for g in groups)),
               verdict, int(report.get("exit_code", 0)), (), tuple(dict.fromkeys(causes)),
               tuple(str(f) for f in report.get("findings", ())),
               {"total": float(seconds)} if isinstance(seconds, (int, float)) else {})


def _causes(causes: Any) -> tuple[CauseSummary, ...]:
    return tuple(CauseSummary(c.change, c.confidence) for c in causes)
