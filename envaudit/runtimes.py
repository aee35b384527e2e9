"""What converted and ran each converted mode (tflite, onnx), as a bundle records it and a check
compares it.

A converted mode's numbers come from two programs besides the model: the converter (TensorFlow's
TFLite converter, tf2onnx), which writes the model the device runs, and the runtime that runs it
(LiteRT's interpreter with its kernels and threads, ONNX Runtime with its execution providers).
Each run records them (``workload/tflite.py``, ``workload/onnx_mode.py``), with the converted
model's SHA-256: a check that finds another hash knows the converter wrote another model -- a
converter change, said as such -- and one that finds the same hash knows the difference, if any,
is the runtime's.

Constraints: plain data, standard library only (the store validates a manifest's ``runtimes``
with ``manifest_problem`` before anything is imported). A bundle is someone else's data: these
records are shown as text and compared, never used to choose code, a path or a setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_TEXT = re.compile(r"[\w .,:()+=/@-]{0,200}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Every field a record may have, and what its value must be.
FIELDS: dict[str, str] = {
    "converter": "text", "interpreter": "text", "kernels": "text", "threads": "count",
    "optimization": "text", "select_tf_ops": "flag", "flatbuffer_sha256": "sha256",
    "graph_sha256": "sha256", "flatbuffer_bytes": "count", "conversion_s": "seconds",
    "cached": "flag", "providers": "text",
}
# What a check compares between the golden's record and its own (the rest is how it went).
COMPARED = ("converter", "interpreter", "kernels", "threads", "optimization", "select_tf_ops",
            "flatbuffer_sha256", "graph_sha256", "providers")
# How the converted model is identified: a TFLite flatbuffer by its bytes (TensorFlow's converter
# writes the same bytes every time); an ONNX model by what its graph computes (tf2onnx names and
# orders nodes differently in each process, ``workload/onnx_mode.graph_digest``).
IDENTITIES = (("flatbuffer_sha256", "byte for byte"),
              ("graph_sha256", "the same graph: operators, weights and wiring"))


def _valid(kind: str, value: Any) -> bool:
    if kind == "text":
        return isinstance(value, str) and bool(_TEXT.fullmatch(value))
    if kind == "sha256":
        return isinstance(value, str) and bool(_SHA256.fullmatch(value))
    if kind == "flag":
        return isinstance(value, bool)
    if kind == "count":
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**40
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e6


def manifest_problem(runtimes: Any, modes: list[str]) -> str | None:
    """What is wrong with a manifest's ``runtimes`` (mode -> record), or None."""
    if not isinstance(runtimes, dict) or not all(m in modes for m in runtimes):
        return "'runtimes' must map recorded modes to what converted and ran them"
    for mode, record in runtimes.items():
        if not isinstance(record, dict) or not record:
            return f"'runtimes.{mode}' must be a record of what converted and ran it"
        for key, value in record.items():
            kind = FIELDS.get(key)
            if kind is None or not _valid(kind, value):
                return f"'runtimes.{mode}.{key}' is not a field this envaudit knows, or malformed"
    return None


def threads_words(threads: Any) -> str:
    return "default threads" if not threads else f"{threads} thread{'s' if threads != 1 else ''}"


def describe(record: Mapping[str, Any]) -> str:
    """A record in words: what converted it, what ran it, how."""
    parts = [f"converted by {record['converter']}" if "converter" in record else None,
             f"run by {record['interpreter']}" if "interpreter" in record else None]
    if "kernels" in record:
        parts.append(f"{record['kernels']} kernels, {threads_words(record.get('threads'))}")
    if "providers" in record:
        parts.append(f"providers {record['providers']}")
    if record.get("select_tf_ops"):
        parts.append("with select TensorFlow ops")
    for key, _same in IDENTITIES:
        if key in record:
            what = "model" if key == "flatbuffer_sha256" else "graph"
            parts.append(f"{what} sha256 {record[key][:12]}"
                         f" ({record.get('flatbuffer_bytes', 0) / 1024:.0f} KiB)")
    return ", ".join(p for p in parts if p)


@dataclass(frozen=True)
class RuntimeCheck:
    """One converted mode's converter and runtime, the golden's against this run's."""

    mode: str
    golden: Mapping[str, Any]  # empty: the golden did not record one (an older bundle)
    current: Mapping[str, Any]  # empty: the mode did not run here
    # what follows from them (below), kept as data for the JSON
    changed: tuple[str, ...] = field(init=False)
    same_model: bool | None = field(init=False)
    line: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "changed", self._changed())
        object.__setattr__(self, "same_model", self._same_model())
        object.__setattr__(self, "line", self._line())

    def _changed(self) -> tuple[str, ...]:
        """The compared fields whose values differ (none when either side is unknown)."""
        if not self.golden or not self.current:
            return ()
        return tuple(k for k in COMPARED
                     if (k in self.golden or k in self.current)
                     and self.golden.get(k) != self.current.get(k))

    def _identity(self) -> tuple[str, str] | None:
        """The key both sides identify the converted model by, and what its sameness means."""
        return next(((key, same) for key, same in IDENTITIES
                     if key in self.golden and key in self.current), None)

    def _same_model(self) -> bool | None:
        """Whether the converter wrote the same model (None: not known)."""
        identity = self._identity()
        return None if identity is None else \
            self.golden[identity[0]] == self.current[identity[0]]

    def _line(self) -> str:
        """One line: the converted model and runtime here, and what changed from the golden's."""
        if not self.current:
            return f"{self.mode}: did not run here"
        here = describe(self.current)
        if not self.golden:
            return f"{self.mode}: {here} (the golden recorded no runtime to compare)"
        identity = self._identity()
        model = ""
        if identity is not None and self._same_model():
            model = f"the converter wrote the golden's model, {identity[1]}"
        elif identity is not None:
            key = identity[0]
            model = (f"the converter wrote another model than the golden's (sha256"
                     f" {self.golden[key][:12]} -> {self.current[key][:12]}): a conversion"
                     " change")
        others = [k for k in self._changed() if k not in dict(IDENTITIES)]
        moved = "; ".join(f"{k}: {self.golden.get(k)!r} -> {self.current.get(k)!r}"
                          for k in others)
        said = "; ".join(p for p in (model, moved and f"changed: {moved}") if p)
        return f"{self.mode}: {here}" + (f"; {said}" if said else "")


def checks(golden: Mapping[str, Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]],
           modes: list[str] | tuple[str, ...]) -> tuple[RuntimeCheck, ...]:
    """A ``RuntimeCheck`` for every checked mode either side recorded a runtime for."""
    return tuple(RuntimeCheck(m, dict(golden.get(m, {})), dict(current.get(m, {})))
                 for m in modes if m in golden or m in current)
