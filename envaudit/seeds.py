"""Which random seeds a training run had, and which random ops ran without one: the answer to
"did I seed everything?" as data, for ``envaudit.training``.

A seed source is Python's ``random``, NumPy's global generator, TensorFlow's global seed or
Keras' (``keras.utils.set_random_seed`` sets all four). Only TensorFlow and Keras remember
whether a seed was set; Python and NumPy seed themselves from the operating system at start, and
a seeded state cannot be told from an unseeded one -- except by matching the state a known seed
gives. So a source is ``set`` (with its seed), ``not_set``, or ``unknown`` with the reason, never
a guess; and whether the run drew from it at all (its state before and after) is measured.

A random op is unseeded when neither its own seed nor the global seed was set (TensorFlow then
writes ``seed=0, seed2=0`` into the op, and it draws from the operating system). Only ops in a
graph can be read: a ``tf.function`` step's traced graphs and a ``tf.data`` pipeline's graph.
What could not be read is said (``not_scanned``). Standard library only; the TensorFlow side
that fills these is ``workload/custom_training.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from envaudit.plain import plain

SeedStatus = Literal["set", "not_set", "unknown"]
SOURCES = ("python", "numpy", "tensorflow", "keras")


@dataclass(frozen=True)
class SeedState:
    """One seed source as the run found it."""

    source: str  # one of SOURCES
    status: SeedStatus
    seed: int | None  # the seed, when known
    used: bool | None  # whether the run drew from it (None: cannot be told)
    how: str  # how the status was told, or why it cannot be

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class UnseededOp:
    """A random op that had neither its own seed nor a global seed."""

    op: str  # TensorFlow's op type, e.g. RandomUniform
    name: str  # the node's name in its graph
    where: str  # "step" (the step's traced graph) or "dataset" (the input pipeline)
    function: str | None  # the graph function that holds it (a dataset's map function, ...)

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True)
class SeedReport:
    """The seeds a run had and the random ops that ran unseeded."""

    seeds: tuple[SeedState, ...]
    unseeded_ops: tuple[UnseededOp, ...]
    seeded_ops: int  # random ops read that had a seed
    scanned: tuple[str, ...]  # the graphs read for random ops
    not_scanned: tuple[str, ...]  # what could not be read, and why

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    def seed(self, source: str) -> SeedState:
        return next(s for s in self.seeds if s.source == source)

    @property
    def unseeded_sources(self) -> tuple[str, ...]:
        """The sources the run drew from (or may have) without a known seed."""
        return tuple(s.source for s in self.seeds if s.status != "set" and s.used is not False)

    @classmethod
    def from_dict(cls, data: Any) -> SeedReport:
        """A report read back from JSON (``ValueError`` for anything not written by
        ``to_dict``)."""
        fields = ("seeds", "unseeded_ops", "seeded_ops", "scanned", "not_scanned")
        body = _exact(data, fields, "seeds")
        return cls(tuple(_seed_state(s) for s in _list(body["seeds"])),
                   tuple(_unseeded_op(o) for o in _list(body["unseeded_ops"])),
                   _int(body["seeded_ops"]), _texts(body["scanned"]),
                   _texts(body["not_scanned"]))


def _exact(data: Any, keys: tuple[str, ...], what: str) -> Mapping[str, Any]:
    if not isinstance(data, dict) or sorted(data) != sorted(keys):
        raise ValueError(f"'{what}' must hold exactly {', '.join(keys)}")
    return data


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("a list was expected")
    return value


def _int(value: Any, none: bool = False) -> Any:
    if (value is None and none) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError("a whole number was expected")


def _text(value: Any, none: bool = False) -> Any:
    if (value is None and none) or isinstance(value, str):
        return value
    raise ValueError("text was expected")


def _texts(value: Any) -> tuple[str, ...]:
    return tuple(_text(v) for v in _list(value))


def _seed_state(data: Any) -> SeedState:
    body = _exact(data, ("source", "status", "seed", "used", "how"), "seed")
    if body["source"] not in SOURCES or body["status"] not in get_args(SeedStatus):
        raise ValueError("a seed's source or status is not one envaudit writes")
    if body["used"] not in (True, False, None):
        raise ValueError("a seed's 'used' must be true, false or null")
    return SeedState(body["source"], body["status"], _int(body["seed"], none=True), body["used"],
                     _text(body["how"]))


def _unseeded_op(data: Any) -> UnseededOp:
    body = _exact(data, ("op", "name", "where", "function"), "unseeded op")
    return UnseededOp(_text(body["op"]), _text(body["name"]), _text(body["where"]),
                      _text(body["function"], none=True))
