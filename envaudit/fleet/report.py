"""What the nodes returned, judged: ``FleetReport`` (groups by fingerprint, config drift, each
group's verdict and causes, the peer check, the exit code). Pure data; no Dask, no printing.

Every node's answer was written by a stranger (docs/design.md, "Trust model"): its JSON is parsed
here with every field envaudit reads type-checked, and an answer that is not what envaudit writes
makes that node an error, never an exception and never a verdict. Nothing in it picks code or a
path. Peers (nodes of one fingerprint group) run a deterministic workload in one environment, so
they must agree bit for bit: a node whose ``array_digests`` differ from its group's majority is a
suspected hardware fault, re-run on the same node (``classify``): ``persistent`` when a re-run
deviates again, ``transient`` when every re-run agrees with the majority.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from envaudit.attribute.types import TRIAL_WORDS, confidence_label
from envaudit.compare.types import FINDINGS
from envaudit.compare.verdict import SEVERITY, VERDICTS
from envaudit.errors import EnvauditError
from envaudit.fingerprint.diff import diff
from envaudit.fingerprint.types import Change, Fingerprint

SCHEMA = "envaudit.fleet/1"
Command = Literal["check", "fingerprint"]
FaultClass = Literal["persistent", "transient", "unknown"]
Finding = Literal["drift", "precision_loss", "config_drift", "suspected_fault", "node_error"]
# Verdicts that are findings, as for ``envaudit check`` (identical and equivalent are not).
FINDING_VERDICTS = FINDINGS  # a node's verdict that is a finding, as for one check
_FINGERPRINT_ID = re.compile(r"fp-[0-9a-f]{16}")
_DIGEST = re.compile(r"[0-9a-f]{8,64}")
_CONFIDENCES = ("confirmed", "likely", "possible", "ruled_out")
_TEXT_LIMIT = 2000  # longest free text kept from a node (headline, cause, error)


@dataclass(frozen=True)
class NodePlace:
    """Where one run happens: a host (one per host), the worker that runs it, the GPU or None."""

    host: str
    worker: str
    device: str | None = None  # what the run sets CUDA_VISIBLE_DEVICES to: a UUID, as a rule
    gpu: str | None = None  # the device as people know it: nvidia-smi's index, a MIG instance

    @property
    def shown_device(self) -> str | None:
        return self.gpu or self.device

    @property
    def label(self) -> str:
        return self.host if self.device is None else f"{self.host} GPU {self.shown_device}"


@dataclass(frozen=True)
class NodeCause:
    change: str
    confidence: str
    path: str | None
    trial: str = ""  # whether the node put it back (``attribute.model.TrialState``)

    @property
    def label(self) -> str:
        """As the node's own check shows it: "likely, cannot be confirmed here"."""
        return confidence_label(self.confidence, self.trial)


@dataclass(frozen=True)
class SuspectedFault:
    """A node whose bits differ from its fingerprint group's majority, and its re-runs."""

    arrays: tuple[str, ...]  # arrays whose digest differs from the majority's
    reruns: tuple[bool, ...]  # per re-run that ran: whether it deviated again
    rerun_errors: tuple[str, ...]
    classification: FaultClass


@dataclass(frozen=True)
class FleetNode:
    host: str
    worker: str
    device: str | None
    seconds: float
    error: str | None = None
    fingerprint_id: str | None = None
    verdict: str | None = None
    headline: str = ""
    first_divergence: str | None = None
    causes: tuple[NodeCause, ...] = ()
    suspect: SuspectedFault | None = None
    stderr: str = field(default="", metadata={"json": False})
    array_digests: Mapping[str, str] = field(default_factory=dict, metadata={"json": False})
    fingerprint: Fingerprint | None = field(default=None, metadata={"json": False})
    # What the run set CUDA_VISIBLE_DEVICES to (a GPU's or MIG instance's UUID): a re-run selects
    # the same device by it; never in the report (``device`` is how people know the device).
    selector: str | None = field(default=None, metadata={"json": False})

    @property
    def place(self) -> NodePlace:
        return NodePlace(self.host, self.worker, self.selector or self.device, self.device)

    @property
    def label(self) -> str:
        return self.place.label


@dataclass(frozen=True)
class FleetGroup:
    fingerprint_id: str
    nodes: tuple[str, ...]  # node labels
    verdict: str | None  # the verdict of the group's agreeing nodes (None: fingerprints only)
    causes: tuple[NodeCause, ...]
    changes: tuple[Change, ...]  # fingerprint diff from the reference group (config drift)
    reference: bool  # the group the others are diffed against
    suspects: tuple[str, ...]  # labels of nodes whose bits differ from the group's majority


@dataclass(frozen=True)
class FleetReport:
    command: Command
    golden_path: str
    golden_fingerprint_id: str
    nodes: tuple[FleetNode, ...]
    groups: tuple[FleetGroup, ...]
    findings: tuple[Finding, ...]
    exit_code: int
    headline: str
    rerun: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "command": self.command, "exit_code": self.exit_code,
                "headline": self.headline, "findings": list(self.findings),
                "golden": {"path": self.golden_path,
                           "fingerprint_id": self.golden_fingerprint_id},
                "groups": [_plain(g) for g in self.groups],
                "nodes": [_plain(n) for n in self.nodes],
                "rerun": self.rerun, "seconds": round(self.seconds, 3)}


# --- parsing a node's answer --------------------------------------------------------------


def parse_node(place: NodePlace, answer: Mapping[str, Any], command: Command) -> FleetNode:
    """``answer`` (a node's dict, or ``{"error": ...}``) as a ``FleetNode``; an answer that is
    not what envaudit writes is that node's error."""
    seconds = answer.get("seconds") if isinstance(answer, Mapping) else None
    seconds = float(seconds) if isinstance(seconds, (int, float)) and seconds >= 0 else 0.0
    base = FleetNode(place.host, place.worker, place.shown_device, seconds,
                     selector=place.device)
    error = answer.get("error") if isinstance(answer, Mapping) else "not a result"
    stderr = answer.get("stderr") if isinstance(answer, Mapping) else ""
    stderr = _clip(stderr) if isinstance(stderr, str) else ""
    if error:
        return _replace(base, error=_clip(str(error)), stderr=stderr)
    try:
        fingerprint = _fingerprint(answer.get("fingerprint"))
        if command == "fingerprint":
            if fingerprint is None:
                raise ValueError("no fingerprint")
            return _replace(base, fingerprint=fingerprint,
                            fingerprint_id=fingerprint.fingerprint_id, stderr=stderr)
        fields = _check_fields(answer.get("check"))
    except (ValueError, TypeError, EnvauditError, RecursionError) as exc:
        return _replace(base, error=_clip(f"the node's answer is not envaudit's: {exc}"),
                        stderr=stderr)
    return _replace(base, fingerprint=fingerprint, stderr=stderr, **fields)


def _check_fields(text: Any) -> dict[str, Any]:
    if not isinstance(text, str):
        raise ValueError("no check output")
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("schema") != "envaudit.check/2":
        raise ValueError("not check JSON of schema envaudit.check/2")
    verdict, fp_id = data.get("verdict"), data.get("current_fingerprint_id")
    if verdict not in VERDICTS:
        raise ValueError("unknown verdict")
    if not isinstance(fp_id, str) or not _FINGERPRINT_ID.fullmatch(fp_id):
        raise ValueError("no current_fingerprint_id")
    digests = data.get("array_digests")
    if not isinstance(digests, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and _DIGEST.fullmatch(v)
            for k, v in digests.items()):
        raise ValueError("array_digests is not a map of array names to digests")
    fd = data.get("first_divergence")
    if fd is not None and not (isinstance(fd, dict) and isinstance(fd.get("stage"), str)):
        raise ValueError("first_divergence has no stage")
    causes = data.get("causes")
    if not isinstance(causes, list):
        raise ValueError("causes is not a list")
    parsed = []
    for cause in causes:
        if not isinstance(cause, dict) or not isinstance(cause.get("change"), str) or \
                cause.get("confidence") not in _CONFIDENCES or \
                not isinstance(cause.get("path"), (str, type(None))):
            raise ValueError("a cause is not {change, confidence, path}")
        trial = cause.get("trial", "")
        parsed.append(NodeCause(_clip(cause["change"]), cause["confidence"],
                                None if cause["path"] is None else _clip(cause["path"]),
                                trial if trial in TRIAL_WORDS else ""))
    headline = data.get("headline")
    return dict(verdict=verdict, fingerprint_id=fp_id, array_digests=dict(digests),
                first_divergence=None if fd is None else _clip(fd["stage"]),
                causes=tuple(parsed), headline=_clip(headline) if isinstance(headline, str)
                else "")


def _fingerprint(text: Any) -> Fingerprint | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError("the fingerprint is not JSON text")
    return Fingerprint.from_json(text, "the node's fingerprint")


# --- judging ------------------------------------------------------------------------------


def deviations(nodes: Sequence[FleetNode]) -> dict[str, tuple[str, ...]]:
    """Per node label, the arrays whose bits differ from the majority of its fingerprint group
    (only nodes that differ; a group of one, or without a strict majority, has none)."""
    out: dict[str, tuple[str, ...]] = {}
    for members in _by_group(nodes).values():
        majority = majority_digests(members)
        for n in members:
            differ = _differing(n.array_digests, majority)
            if differ:
                out[n.label] = differ
    return out


def majority_digests(members: Sequence[FleetNode]) -> dict[str, str]:
    """Per array, the digest more than half of ``members`` computed (arrays without one left
    out: with no strict majority, no node can be called the odd one)."""
    ran = [n for n in members if n.error is None and n.array_digests]
    if len(ran) < 2:
        return {}
    names = {k for n in ran for k in n.array_digests}
    majority = {}
    for name in sorted(names):
        digest, count = Counter(n.array_digests.get(name) for n in ran).most_common(1)[0]
        if digest is not None and count * 2 > len(ran):
            majority[name] = digest
    return majority


def classify(reruns: Sequence[Mapping[str, str] | None], majority: Mapping[str, str]) -> tuple[
        tuple[bool, ...], FaultClass]:
    """Each re-run that ran (its digests, None when it failed): whether it deviated again; and
    the class: persistent when one did, transient when all ran and none did, else unknown."""
    ran = tuple(bool(_differing(r, majority)) for r in reruns if r is not None)
    if any(ran):
        return ran, "persistent"
    if ran and len(ran) == len(reruns):
        return ran, "transient"
    return ran, "unknown"


def build_report(command: Command, nodes: Sequence[FleetNode], golden_path: str,
                 golden_fingerprint_id: str, rerun: int, seconds: float) -> FleetReport:
    """The fleet report from parsed nodes (suspects already classified)."""
    groups_by_id = _by_group(nodes)
    reference = _reference(groups_by_id, golden_fingerprint_id)
    ref_fp = _group_fingerprint(groups_by_id.get(reference, []))
    groups = []
    for fp_id, members in groups_by_id.items():
        fp = _group_fingerprint(members)
        changes = diff(ref_fp, fp) if ref_fp is not None and fp is not None and \
            fp_id != reference else ()
        agreeing = [n for n in members if n.suspect is None] or list(members)
        verdict = max((n.verdict for n in agreeing if n.verdict), key=SEVERITY.index,
                      default=None)
        causes = tuple(dict.fromkeys(c for n in agreeing for c in n.causes))
        groups.append(FleetGroup(fp_id, tuple(n.label for n in members), verdict, causes,
                                 tuple(changes), fp_id == reference,
                                 tuple(n.label for n in members if n.suspect is not None)))
    groups.sort(key=lambda g: (not g.reference, -len(g.nodes), g.fingerprint_id))
    findings = _findings(nodes, groups)
    ran = [n for n in nodes if n.error is None]
    exit_code = 2 if not ran else (1 if findings else 0)
    return FleetReport(command, golden_path, golden_fingerprint_id, tuple(nodes), tuple(groups),
                       findings, exit_code, _headline(nodes, groups, findings), rerun, seconds)


def _findings(nodes: Sequence[FleetNode], groups: Sequence[FleetGroup]) -> tuple[Finding, ...]:
    found: list[Finding] = [v for v in FINDING_VERDICTS  # type: ignore[misc]
                            if any(g.verdict == v for g in groups)]
    if len(groups) > 1:
        found.append("config_drift")
    if any(n.suspect is not None for n in nodes):
        found.append("suspected_fault")
    if any(n.error is not None for n in nodes):
        found.append("node_error")
    return tuple(found)


def _headline(nodes: Sequence[FleetNode], groups: Sequence[FleetGroup],
              findings: Sequence[Finding]) -> str:
    ran = sum(1 for n in nodes if n.error is None)
    failed = len(nodes) - ran
    if not ran:
        return f"No node could run ({failed} failed)."
    parts = [f"{ran} of {len(nodes)} node(s) ran, in {len(groups)} fingerprint group(s)"]
    if "config_drift" in findings:
        parts.append("config drift between the groups")
    moved = sorted({g.verdict for g in groups if g.verdict in FINDING_VERDICTS})
    if moved:
        parts.append("verdict " + " and ".join(v.replace("_", " ") for v in moved))
    suspects = sum(1 for n in nodes if n.suspect is not None)
    if suspects:
        parts.append(f"{suspects} suspected hardware fault(s)")
    if failed:
        parts.append(f"{failed} node(s) failed")
    return "; ".join(parts) + "."


def _by_group(nodes: Sequence[FleetNode]) -> dict[str, list[FleetNode]]:
    groups: dict[str, list[FleetNode]] = {}
    for n in nodes:
        if n.error is None and n.fingerprint_id:
            groups.setdefault(n.fingerprint_id, []).append(n)
    return groups


def _reference(groups: Mapping[str, Sequence[FleetNode]], golden_id: str) -> str | None:
    """The golden's own group when a node has its fingerprint, else the largest group."""
    if golden_id in groups:
        return golden_id
    return min(groups, key=lambda g: (-len(groups[g]), g), default=None)


def _group_fingerprint(members: Sequence[FleetNode]) -> Fingerprint | None:
    return next((n.fingerprint for n in members if n.fingerprint is not None), None)


def _differing(digests: Mapping[str, str], majority: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(k for k, v in majority.items() if digests.get(k) != v)


def _clip(text: str) -> str:
    return text[:_TEXT_LIMIT]


def _replace(node: FleetNode, **changes: Any) -> FleetNode:
    import dataclasses

    return dataclasses.replace(node, **changes)


def _plain(value: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
               if f.metadata.get("json", True)}
        if isinstance(value, FleetNode):
            out["label"] = value.label
        return out
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
