"""A ranked explanation of a difference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from envaudit.fingerprint.types import Change
from envaudit.plain import plain

# Strongest first: "confirmed" only after a re-run with the change put back gave golden bits;
# "ruled_out" only after putting it back (a rebuilt environment) changed nothing.
Confidence = Literal["confirmed", "likely", "possible", "ruled_out"]
CONFIDENCES: tuple[Confidence, ...] = get_args(Confidence)
# Whether putting a cause back was tried, decided once by the confirmation plan (``confirm.py``):
# "tested" (a re-run or an environment bisection put it back), "untested" (one could: the check
# ran with --no-confirm, or without --bisect for a package), "untestable" (nothing this machine
# can do puts it back: another CPU, GPU or value it may not set), "not_needed" (another cause,
# put back alone, already gave the golden bits), "" (not decided: nothing was planned).
TrialState = Literal["tested", "untested", "untestable", "not_needed", ""]
# How a cause's confidence reads where the trial qualifies it (``Cause.label``).
TRIAL_WORDS: dict[str, str] = {"untested": "not yet confirmed",
                               "untestable": "cannot be confirmed here",
                               "not_needed": "not re-run"}


# What a sentence of evidence is, as data: "finding" (what was observed or tried) or "no_rerun"
# (that no re-run of this process can put the change back: a placeholder that an environment
# bisection replaces with what rebuilding the environment showed, ``bisect.apply_bisection``).
EvidenceKind = Literal["finding", "no_rerun"]


class Evidence(str):
    """A sentence of evidence that carries its kind. To every reader (renderers, JSON, equality)
    it is the sentence itself, so outputs do not change; code that sorts evidence reads ``kind``,
    never the words. A plain ``str`` in ``Cause.evidence`` is a finding (``kind_of``)."""

    kind: EvidenceKind

    def __new__(cls, text: str, kind: EvidenceKind = "finding") -> Evidence:
        sentence = super().__new__(cls, text)
        sentence.kind = kind
        return sentence


def kind_of(evidence: str) -> EvidenceKind:
    """The kind of a sentence of evidence: its own, else "finding"."""
    return evidence.kind if isinstance(evidence, Evidence) else "finding"


def confidence_label(confidence: str, trial: str) -> str:
    """"likely, not yet confirmed": a confidence with what its trial says, where it qualifies."""
    words = TRIAL_WORDS.get(trial) if confidence in ("likely", "possible") else None
    return f"{confidence}, {words}" if words else confidence


@dataclass(frozen=True)
class Cause:
    """A candidate cause; ``confirmed`` only after a re-run with it put back gave golden bits."""

    change: str  # what changed, e.g. "env.TF_ENABLE_ONEDNN_OPTS: unset -> '0'"
    confidence: Confidence
    evidence: tuple[str, ...]  # sentences a person can check
    path: str | None = None  # the fingerprint path it concerns, if any
    related: tuple[str, ...] = ()  # other changed paths of the same origin (one upgrade, one CPU)
    trial: TrialState = ""  # whether putting it back was tried (see ``TrialState``)

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(p for p in (self.path, *self.related) if p)

    @property
    def label(self) -> str:
        """The confidence as every output shows it: "likely, not yet confirmed" where a re-run
        could decide but did not run; a confirmed or ruled-out cause needs no qualifier."""
        return confidence_label(self.confidence, self.trial)

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class Unreachable:
    """A change that cannot have moved what moved (it reaches another kind of device)."""

    change: str  # as a cause would show it
    path: str
    reason: str  # "cannot affect: ran on CPU (the arrays that moved were computed on CPU:0 ...)"

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


def describe(change: Change) -> str:
    """A change as a cause names it: ``env.X: unset -> '0'``."""
    def show(value: object) -> str:
        return "unset" if value is None else repr(value) if isinstance(value, str) else str(value)

    return f"{change.path}: {show(change.golden)} -> {show(change.current)}"
