"""Fleet checks: the same ``envaudit check`` on every node of a Dask distributed cluster.

Roles: ``node`` is what runs ON a worker (a fresh ``envaudit`` subprocess in the worker's own
environment, its output returned as plain text); ``cluster`` talks to Dask (connect, pick one
worker per host, submit, wait with a deadline, re-run suspects); ``report`` turns what the nodes
returned into a ``FleetReport`` (groups by fingerprint, config drift, peer check, exit code).

Dask is an optional dependency (``pip install 'envaudit[fleet]'``): only ``cluster`` imports it,
inside its functions, so ``import envaudit.fleet`` works without it.
"""
