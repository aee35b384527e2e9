"""What crosses the wire between a fleet node and this machine: JSON bytes, never a pickle.

A node's answer was written by a stranger (docs/design.md, "Trust model"), and Dask unpickles by
default: a task's result, a task's exception (``distributed.core.clean_exception``), the type of
a result (``key-in-memory``), a warning's category, any ``__Pickled__`` part of a message. Any of
them can run code in the client. So, with Dask 2026.8 verified by tests/test_fleet_trust.py:

- a task never returns or raises a Python object: ``as_json`` runs the node's function, catches
  everything, and returns UTF-8 JSON bytes (``decode`` reads them back, bounded and type-checked);
- the client asks Dask for msgpack only (``DESERIALIZERS``), so a result serialized with pickle
  (or Dask's own family, whose header carries a pickled type) is refused when it is fetched;
- that restriction does not cover the scheduler's report stream (exceptions, result types,
  warnings travel there as pickles and Dask unpickles them), so while a client of a remote
  scheduler is open, ``refuse_pickles`` makes ``pickle.loads`` in this process accept plain data
  only: a pickle that names any global other than a few built-in data types raises
  ``RefusedPickle`` before anything is constructed. Every unpickling in Dask's client path goes
  through ``pickle.loads``; ``refuse_pickles`` checks that it does before it lets a client
  connect, so a Dask that unpickles elsewhere fails closed.

Constraints: Dask is imported only by the guard's self-check (``as_json`` runs on workers,
``decode`` anywhere);
``refuse_pickles`` is process-wide while it is active (Dask's client runs on its own thread), so
it is used only for a remote scheduler: ``--local`` workers are threads of this process.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

# Dask's serialization families the client accepts for a fetched result. msgpack builds only
# plain data; "pickle" and "dask" (whose header holds a pickled type) are refused.
DESERIALIZERS = ("msgpack",)
# Largest answer accepted from a node: a check JSON (capped at 4 MiB on the node), a fingerprint
# and a stderr tail fit with room to spare.
MAX_ANSWER_BYTES = 16 << 20
# Globals a pickle may name while pickles are refused: constructors of plain data, nothing that
# imports, calls out or reads a file. Dask needs ``bytes`` (the pickled type of a bytes payload).
_PLAIN = frozenset({("builtins", "bytes"), ("builtins", "bytearray"), ("builtins", "str"),
                    ("builtins", "int"), ("builtins", "float"), ("builtins", "complex"),
                    ("builtins", "frozenset"), ("builtins", "set"), ("builtins", "slice"),
                    ("builtins", "range")})


class RefusedPickle(pickle.UnpicklingError, TypeError):
    """A pickle from the wire named code. A TypeError too: where Dask expects a bad pickle (a
    traceback it cannot read) it catches TypeError and goes on, so a refusal does not stall it."""


def as_json(function: Callable[..., Any], /, **kwargs: Any) -> bytes:
    """``function(**kwargs)`` as JSON bytes; runs ON the worker. Whatever it raises (even
    SystemExit) is an ``{"error": ...}`` answer, never an exception that Dask would pickle."""
    try:
        value = function(**kwargs)
        return json.dumps(value, allow_nan=False).encode()
    except BaseException as exc:  # noqa: BLE001 - a node's failure is data, not a pickle
        return json.dumps({"error": f"the node could not answer: {type(exc).__name__}: "
                                    f"{str(exc)[:500]}"}).encode()


def decode(payload: Any) -> dict[str, Any]:
    """A node's answer (``as_json``'s bytes) as a dict; what is not one is an ``error`` answer
    that says what arrived, never an exception."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        return {"error": "the node's answer is not JSON bytes (a pickled object?); refused, "
                         f"not unpickled (got {type(payload).__name__})"}
    if len(payload) > MAX_ANSWER_BYTES:
        return {"error": f"the node's answer is larger than {MAX_ANSWER_BYTES >> 20} MiB"}
    try:
        value = json.loads(bytes(payload))
    except (ValueError, RecursionError):
        return {"error": "the node's answer is not JSON"}
    if not isinstance(value, Mapping):
        return {"error": "the node's answer is not a JSON object"}
    return dict(value)


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PLAIN:
            return super().find_class(module, name)
        raise RefusedPickle(f"a pickle from the network names {module}.{name:.80}; refused")


def _plain_loads(data: Any, /, *, fix_imports: bool = True, encoding: str = "ASCII",
                 errors: str = "strict", buffers: Any = ()) -> Any:
    return _PlainUnpickler(io.BytesIO(bytes(data)), fix_imports=fix_imports, encoding=encoding,
                           errors=errors, buffers=buffers).load()


_lock = threading.Lock()
_active = 0
_original_loads = pickle.loads


@contextlib.contextmanager
def refuse_pickles() -> Iterator[None]:
    """While open, ``pickle.loads`` in this process builds plain data only (nested uses count)."""
    global _active
    with _lock:
        if _active == 0:
            pickle.loads = _plain_loads
        _active += 1
    try:
        _verify_dask_is_covered()
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                pickle.loads = _original_loads


class _Probe:
    """A class the guard must refuse when Dask unpickles it (module-level so it pickles)."""


class _ProbeError(Exception):
    """An exception the guard must refuse when Dask unpickles a node's exception."""


def _verify_dask_is_covered() -> None:
    """Fail closed: Dask's unpickling entry points must reach the guard (a Dask version that
    binds ``pickle.loads`` elsewhere would bypass it)."""
    from distributed.core import clean_exception
    from distributed.protocol import pickle as dask_pickle

    from envaudit.errors import EnvauditError

    try:
        dask_pickle.loads(pickle.dumps(_Probe()))
    except RefusedPickle:
        pass
    else:
        raise EnvauditError("this version of Dask unpickles outside envaudit's guard, so a node "
                            "could run code here; use the Dask version envaudit supports "
                            "(pip install 'envaudit[fleet]')")
    # A node's exception reaches the client as pickled bytes that Dask unpickles itself.
    _, exc, _ = clean_exception(pickle.dumps(_ProbeError("probe")))
    if isinstance(exc, _ProbeError):
        raise EnvauditError("this version of Dask unpickles a node's exception outside "
                            "envaudit's guard; use the Dask version envaudit supports")
