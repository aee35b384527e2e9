"""Dask distributed: connect, pick where to run, submit, wait with a deadline, re-run suspects.

The only module that imports Dask, inside its functions (an optional dependency: without it, one
``EnvauditError`` that says ``pip install 'envaudit[fleet]'``). Constraints:
- One run per distinct host (worker processes on one host share its environment and devices;
  dedupe by the host of the worker's address), and on a host with GPUs one run per GPU (or MIG
  instance) through CUDA_VISIBLE_DEVICES set to its UUID (``node.visible_gpus``). A
  ``--local N`` cluster is a try on one machine: each worker is a node.
- Every task is pinned to its worker (``workers=[address], allow_other_workers=False``) and
  impure (``pure=False``: a re-run is a new run, never a cached result).
- Nothing a node does becomes an exception here (``on_error="return"`` semantics): a task that
  errors, a worker that leaves the cluster mid-run, a task past the deadline are each that node's
  ``error``; the others still report. The whole wait is bounded by a deadline.
- Which workers exist is asked of the scheduler itself each time (``workers``), never read from
  the client's cached ``scheduler_info()``: Dask refreshes that cache every 2 s with a summary that
  lists no workers, so a read that follows such a refresh sees a healthy cluster as empty (every
  node "left the cluster" at once; more likely the busier the machine).
- A ``--local`` cluster is started by ``local``: measured, waited for, retried once with a reason.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from envaudit.errors import EnvauditError
from envaudit.fleet import local as local_cluster
from envaudit.fleet import node, wire
from envaudit.fleet.address import TlsFiles, scheduler_address, security
from envaudit.fleet.report import NodePlace

INSTALL = "envaudit fleet needs Dask distributed: pip install 'envaudit[fleet]'"
CONNECT_TIMEOUT_S = 15.0
# Slack on top of a node's own timeout: transfer of the bundle and result, scheduling.
DEADLINE_MARGIN_S = 30.0
POLL_S = 0.2  # how often pending runs and the worker list are looked at
Progress = Callable[[str], None]
Outcome = tuple[NodePlace, Mapping[str, Any]]


def require_dask() -> Any:
    """The ``distributed`` module, or the one error that says how to install it."""
    try:
        import distributed
    except ImportError:
        raise EnvauditError(INSTALL) from None
    return distributed


@contextlib.contextmanager
def connect(scheduler: str | None, local: int | None, tls: TlsFiles | None = None,
            progress: Progress = lambda _: None) -> Iterator[Any]:
    """A Dask client of the scheduler at ``scheduler`` (``tcp://`` or ``tls://``), or of a
    LocalCluster of ``local`` single-thread workers started (threads in this process: each run
    is a subprocess anyway; ``local.start``). A remote scheduler's client accepts JSON answers
    only, and no pickle reaches code while it is open (``wire``)."""
    tls = tls or TlsFiles()
    if local is not None and tls.given:
        raise EnvauditError("--tls-ca-file, --tls-cert and --tls-key apply to --scheduler "
                            "tls://ADDRESS, not to --local")
    address = scheduler_address(scheduler) if local is None else ""
    distributed = require_dask()
    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)
    if local is not None:
        with local_cluster.start(distributed, local, progress) as client:
            yield client
        return
    sec = security(address, tls)
    # A refused pickle is a node's error in the report; Dask's own log of it is not for users.
    logging.getLogger("distributed.protocol.core").setLevel(logging.CRITICAL + 1)
    with wire.refuse_pickles():
        try:
            client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S, security=sec,
                                        deserializers=list(wire.DESERIALIZERS))
        except (OSError, TimeoutError, ValueError) as exc:
            raise EnvauditError(f"cannot reach the Dask scheduler at {address}: {exc}; start "
                                "one with 'dask scheduler' (and 'dask worker ADDRESS' on each "
                                "node) or try --local N") from None
        with client:
            # A node's print() and warn() events would reach this terminal (and a report on
            # stdout) unescaped, and a warning's category arrives pickled: not shown.
            for topic in ("print", "warn"):
                client.unsubscribe_topic(topic)
            yield client


def workers(client: Any) -> dict[str, Mapping[str, Any]]:
    """The workers the scheduler lists now (address -> its identity), asked of the scheduler.
    ``identity()`` with no argument lists every worker in every Dask version; the client's
    periodic refresh asks for none, which is why its cache is not read here."""
    identity = client.sync(client.scheduler.identity)
    listed = identity.get("workers") if isinstance(identity, Mapping) else None
    return dict(listed) if isinstance(listed, Mapping) else {}


def places(client: Any, per_host: bool, timeout: float, progress: Progress) -> tuple[
        list[NodePlace], list[Outcome]]:
    """Where to run: one place per host (every worker when not ``per_host``), per GPU where the
    host has GPUs; and the hosts that could not even say so, as outcomes with their error."""
    listed = workers(client)
    if not listed:
        raise EnvauditError("the Dask scheduler has no workers; start 'dask worker ADDRESS' on "
                            "each node")
    chosen: dict[str, str] = {}
    for address in sorted(listed):
        host = str(listed[address].get("host") or address)
        # A local cluster's workers share one host; each is told apart by its name.
        key = host if per_host else f"{host}#{listed[address].get('name', len(chosen))}"
        chosen.setdefault(key, address)
    hosts = [NodePlace(host=key, worker=address, device=None) for key, address in chosen.items()]
    futures = {client.submit(wire.as_json, node.visible_gpus, workers=[p.worker],
                             allow_other_workers=False, pure=False): p for p in hosts}
    found, failed = [], []
    for place, answer in wait_all(client, futures, time.monotonic() + timeout, lambda _: None):
        gpus = _gpus(answer)
        if gpus is None:
            failed.append((place, answer))
            continue
        found += [NodePlace(place.host, place.worker, d, label) for d, label in gpus] or [place]
        notes = answer.get("notes") if isinstance(answer, Mapping) else None
        for note in notes if isinstance(notes, list) else []:
            if isinstance(note, str):
                progress(f"{place.host}: {note[:500]}")  # a node's text: bounded
    progress(f"{len(found)} node(s) on {len(chosen)} host(s)")
    return found, failed


def _gpus(answer: Any) -> list[tuple[str, str]] | None:
    """``(CUDA_VISIBLE_DEVICES value, label)`` of each GPU a node listed (``node.visible_gpus``),
    or None when the answer is not that. A plain string is a node of an older envaudit, which
    listed the values alone."""
    gpus = answer.get("gpus") if isinstance(answer, Mapping) else None
    if not isinstance(gpus, list):
        return None
    listed = []
    for gpu in gpus:
        if isinstance(gpu, str) and gpu:
            listed.append((gpu, gpu))
        elif isinstance(gpu, Mapping) and all(isinstance(gpu.get(k), str) and gpu.get(k)
                                             for k in ("device", "label")):
            listed.append((gpu["device"], gpu["label"]))
        else:
            return None
    return listed


def run_checks(client: Any, where: Sequence[NodePlace], bundle: Mapping[str, bytes], *,
               timeout: float, redact: bool, modes: Sequence[str] | None,
               progress: Progress) -> list[Outcome]:
    """One ``node.run_check`` at each place; an outcome for every place, in ``where``'s order."""
    return _run(client, where, node.run_check, dict(bundle=bundle, timeout=timeout, redact=redact,
                                                    modes=modes), timeout, progress)


def run_fingerprints(client: Any, where: Sequence[NodePlace], *, redact: bool,
                     progress: Progress) -> list[Outcome]:
    return _run(client, where, node.run_fingerprint, dict(redact=redact),
                node.FINGERPRINT_TIMEOUT, progress)


def _run(client: Any, where: Sequence[NodePlace], function: Callable[..., Any],
         kwargs: Mapping[str, Any], timeout: float, progress: Progress) -> list[Outcome]:
    """``function`` at each place of ``where`` (a place may repeat: each repetition is its own
    run); the outcomes in ``where``'s order."""
    if where and "bundle" in kwargs:
        # The golden goes to each worker once, as data, not inside every task's arguments (a
        # user model's golden is tens of MiB); each task receives it resolved.
        [shared] = client.scatter([kwargs["bundle"]], workers=sorted({p.worker for p in where}),
                                  broadcast=True, hash=False)
        kwargs = {**kwargs, "bundle": shared}
    futures = {}
    for place in where:
        # wire.as_json: the node answers in JSON bytes, whatever ``function`` does.
        futures[client.submit(wire.as_json, function, workers=[place.worker],
                              allow_other_workers=False, pure=False, device=place.device,
                              **kwargs)] = place
    # Runs queued behind each other on one worker (several GPUs, re-runs) each get their time.
    queued = max(sum(1 for p in where if p.worker == w) for w in {p.worker for p in where}) \
        if where else 1
    deadline = time.monotonic() + queued * timeout + DEADLINE_MARGIN_S
    answers: dict[NodePlace, list[Mapping[str, Any]]] = {}
    for place, answer in wait_all(client, futures, deadline, progress):
        answers.setdefault(place, []).append(answer)
    return [(place, answers[place].pop(0)) for place in where]


def wait_all(client: Any, futures: Mapping[Any, NodePlace], deadline: float,
             progress: Progress) -> Iterator[Outcome]:
    """Each future's place and answer (a node's dict, or ``{"error": why}``) as it finishes; a
    future whose worker leaves the cluster or that is not done by ``deadline`` is an error."""
    pending = dict(futures)
    while pending:
        for future, place in list(pending.items()):
            if future.done():
                del pending[future]
                answer = _answer(future)
                progress(_progress_line(place, answer))
                yield place, answer
        for future, why in _lost(client, pending, deadline).items():
            place = pending.pop(future)
            future.cancel()
            answer = {"error": why}
            progress(_progress_line(place, answer))
            yield place, answer
        if pending:
            time.sleep(POLL_S)


def rerun(client: Any, suspects: Sequence[NodePlace], times: int, bundle: Mapping[str, bytes],
          *, timeout: float, redact: bool, modes: Sequence[str] | None,
          progress: Progress) -> dict[NodePlace, list[Mapping[str, Any]]]:
    """Each suspect's check run ``times`` more times on its own worker (and GPU)."""
    where = [place for place in suspects for _ in range(times)]
    runs: dict[NodePlace, list[Mapping[str, Any]]] = {place: [] for place in suspects}
    outcomes = _run(client, where, node.run_check, dict(bundle=bundle, timeout=timeout,
                                                        redact=redact, modes=modes),
                    timeout, progress)
    for place, answer in outcomes:
        runs[place].append(answer)
    return runs


def _lost(client: Any, pending: Mapping[Any, NodePlace], deadline: float) -> dict[Any, str]:
    if not pending:
        return {}
    if time.monotonic() > deadline:
        return {f: "did not finish before the fleet run's deadline (--timeout)" for f in pending}
    try:
        alive = set(workers(client))
    except Exception as exc:  # the scheduler itself is gone: every pending run is lost
        return {f: f"the scheduler stopped answering ({type(exc).__name__})" for f in pending}
    # done() again: a run that finished just before its worker left still counts.
    return {f: "its worker left the cluster during the run (killed, crashed or lost)"
            for f, p in pending.items() if p.worker not in alive and not f.done()}


def _answer(future: Any) -> Mapping[str, Any]:
    """What the node answered, as a dict; a refused or failed answer is an ``error``. Nothing a
    node sends is unpickled (``wire``): a node's exception is never shown, only that it came."""
    try:
        if future.status == "finished":
            return wire.decode(future.result(timeout=DEADLINE_MARGIN_S))
        if future.status == "error":
            return {"error": "the node raised an exception instead of answering in JSON "
                             "(another envaudit version there, or a hostile worker?); it was "
                             "not unpickled"}
        return {"error": f"the run ended as {future.status} (its worker was lost?)"}
    except TypeError:
        # Dask refusing a payload that is not msgpack, or wire.RefusedPickle (a TypeError too).
        # Dask's message would quote the serializer name the node chose: not repeated.
        return {"error": "the node's answer was not JSON bytes (a pickled object?); refused, "
                         "not unpickled"}
    except Exception as exc:  # the result could not be fetched: the worker went away after it
        return {"error": f"the result could not be fetched: {type(exc).__name__}: {exc}"}


def _progress_line(place: NodePlace, answer: Mapping[str, Any]) -> str:
    error = answer.get("error")
    if error:
        return f"{place.label}: error: {error}"
    seconds = answer.get("seconds")
    took = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
    return f"{place.label}: done{took}"
