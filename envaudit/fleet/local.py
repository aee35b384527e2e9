"""``--local N``: a Dask cluster of N single-thread workers in this process, up and answering
before anything is sent to it, also on a busy machine.

Constraints: the workers are threads of this process (``processes=False``; each run is a
subprocess anyway), so a start costs no interpreter start-up, but on a loaded machine it may still
take seconds. A start is judged by what it measured, not by a fixed guess: the cluster is
constructed (its scheduler and workers started and registered), that time is measured, and then
every worker must be seen running by the scheduler within ``START_FACTOR`` times that (never less
than ``START_FLOOR_S``). A start that fails or does not come up is closed and tried once more,
with its reason given to ``progress``; a second failure is one ``EnvauditError`` that gives the
reasons. Nothing of the cluster listens beyond loopback. Only ``cluster`` calls this module,
with Dask already imported.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from envaudit.errors import EnvauditError

# A worker that the scheduler lists as running answers; one not seen within this many times the
# measured start, on the same machine under the same load, is stuck rather than slow.
START_FACTOR = 10.0
# ... and never less than this: a start measured at 50 ms says little about the next second.
START_FLOOR_S = 20.0
TRIES = 2
# Dask starts an HTTP server (health, metrics) on the scheduler and on each worker even without a
# dashboard: by default on every interface, the scheduler's on port 8787, so a second cluster on
# the machine warned "Port 8787 is already in use" into envaudit's stderr. Loopback, any port.
LOOPBACK_ANY_PORT = "127.0.0.1:0"
Progress = Callable[[str], None]


@contextlib.contextmanager
def start(distributed: Any, workers: int, progress: Progress) -> Iterator[Any]:
    """A client of a fresh local cluster of ``workers`` workers, every one running; both closed
    on exit. Raises ``EnvauditError`` (with the reasons) when every start fails."""
    reasons: list[str] = []
    for attempt in range(1, TRIES + 1):
        with contextlib.ExitStack() as stack:  # closes a failed start before the next one
            outcome = _up(distributed, workers, stack)
            if isinstance(outcome, str):
                reasons.append(outcome)
                if attempt < TRIES:
                    progress(f"the local cluster did not start ({outcome}); starting it again")
                continue
            client, seconds = outcome
            progress(f"local cluster of {workers} worker(s) up in {seconds:.1f} s")
            yield client
            return
    why = f"each of {TRIES} tries: {reasons[0]}" if len(set(reasons)) == 1 else \
        f"{TRIES} tries: {'; then '.join(reasons)}"
    raise EnvauditError(f"a local Dask cluster of {workers} worker(s) did not start ({why}); "
                        "fix what that names, or try fewer workers, a less busy machine, or "
                        "--scheduler ADDRESS")


def _up(distributed: Any, workers: int, stack: contextlib.ExitStack) -> str | tuple[Any, float]:
    """(client, seconds the start took), or why the cluster is not up. What was started is
    entered on ``stack``, which closes it."""
    began = time.monotonic()
    try:
        cluster = stack.enter_context(distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=False, dashboard_address=None,
            scheduler_kwargs={"dashboard_address": LOOPBACK_ANY_PORT},
            worker_dashboard_address=LOOPBACK_ANY_PORT))
        client = stack.enter_context(distributed.Client(cluster))
    except Exception as exc:  # Dask's start failed (a folder, a port, memory): a reason, retried
        return _reason(exc, time.monotonic() - began)
    started = time.monotonic() - began
    wait = max(START_FLOOR_S, START_FACTOR * started)
    try:
        client.wait_for_workers(workers, timeout=wait)
    except TimeoutError:
        return (f"{_running(client)} of {workers} worker(s) running {wait:.0f} s after a start "
                f"that took {started:.1f} s")
    except Exception as exc:  # the scheduler went away while being asked
        return _reason(exc, time.monotonic() - began)
    return client, time.monotonic() - began


def _running(client: Any) -> str:
    """How many workers the scheduler lists as running, asked of the scheduler itself."""
    try:
        listed = client.sync(client.scheduler.identity).get("workers") or {}
    except Exception:  # the count is a detail of the reason, not worth a second failure
        return "?"
    return str(sum(1 for w in listed.values() if w.get("status") == "running"))


def _reason(exc: BaseException, seconds: float) -> str:
    text = " ".join(str(exc).split())[:300] or "no message"
    return f"{type(exc).__name__} after {seconds:.1f} s: {text}"
