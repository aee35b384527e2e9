"""The one place that composes a fleet run: golden bytes -> Dask -> nodes -> re-runs -> report.

``fleet_check`` and ``fleet_fingerprint`` print nothing and return a ``FleetReport``; the CLI
renders it. The golden is verified here before anything is sent (a corrupt bundle is exit 2 on
this machine, not an error on every node) and again on each node by its own check.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

from envaudit.fleet import cluster
from envaudit.fleet.address import TlsFiles, scheduler_address
from envaudit.fleet.report import (
    FleetNode,
    FleetReport,
    SuspectedFault,
    build_report,
    classify,
    deviations,
    majority_digests,
    parse_node,
)
from envaudit.store import bundle_bytes, resolve_golden

Progress = Callable[[str], None]


def fleet_check(*, scheduler: str | None = None, local: int | None = None,
                golden: str | None = None, timeout: float = 600.0, rerun: int = 2,
                redact: bool = True, modes: Sequence[str] | None = None,
                tls: TlsFiles | None = None, progress: Progress = lambda _: None) -> FleetReport:
    """``envaudit check`` on every node of the cluster, judged as one fleet (docs/fleet.md);
    ``tls``: the client's CA file, certificate and key for a ``tls://`` scheduler."""
    start = time.monotonic()
    if scheduler is not None:
        scheduler_address(scheduler)  # a mistyped address is said before the golden is read
    cluster.require_dask()
    path = resolve_golden(golden)
    bundle = bundle_bytes(path)
    golden_id = str(json.loads(bundle["manifest.json"])["fingerprint"]["fingerprint_id"])
    with cluster.connect(scheduler, local, tls, progress) as client:
        where, unreachable = cluster.places(client, per_host=local is None, timeout=timeout,
                                            progress=progress)
        outcomes = cluster.run_checks(client, where, bundle, timeout=timeout, redact=redact,
                                      modes=modes, progress=progress)
        nodes = [parse_node(p, a, "check") for p, a in [*unreachable, *outcomes]]
        suspects = deviations(nodes)
        runs = {}
        if suspects and rerun:
            places = {n.label: n for n in nodes}
            progress(f"re-running {len(suspects)} suspect(s) {rerun} time(s)")
            runs = cluster.rerun(client, [_place(places[s]) for s in suspects], rerun, bundle,
                                 timeout=timeout, redact=redact, modes=modes, progress=progress)
    nodes = [_judged(n, nodes, suspects, runs) for n in nodes]
    return build_report("check", nodes, str(path), golden_id, rerun, time.monotonic() - start)


def fleet_fingerprint(*, scheduler: str | None = None, local: int | None = None,
                      redact: bool = True, tls: TlsFiles | None = None,
                      progress: Progress = lambda _: None) -> FleetReport:
    """Every node's fingerprint, grouped (config drift), without running the workload."""
    start = time.monotonic()
    with cluster.connect(scheduler, local, tls, progress) as client:
        where, unreachable = cluster.places(client, per_host=local is None,
                                            timeout=cluster.DEADLINE_MARGIN_S, progress=progress)
        outcomes = cluster.run_fingerprints(client, where, redact=redact, progress=progress)
    nodes = [parse_node(p, a, "fingerprint") for p, a in [*unreachable, *outcomes]]
    return build_report("fingerprint", nodes, "", "", 0, time.monotonic() - start)


def _place(node: FleetNode) -> cluster.NodePlace:
    return node.place


def _judged(node: FleetNode, nodes: Sequence[FleetNode], suspects: dict[str, tuple[str, ...]],
            runs: dict) -> FleetNode:
    """``node`` with its suspected fault, classified by its re-runs, when it is a suspect."""
    import dataclasses

    arrays = suspects.get(node.label)
    if not arrays:
        return node
    peers = [n for n in nodes if n.fingerprint_id == node.fingerprint_id]
    majority = majority_digests(peers)
    parsed = [parse_node(_place(node), answer, "check") for answer in runs.get(_place(node), [])]
    verdicts, fault = classify([None if p.error else p.array_digests for p in parsed], majority)
    errors = tuple(p.error for p in parsed if p.error)
    return dataclasses.replace(node, suspect=SuspectedFault(arrays, verdicts, errors, fault))
