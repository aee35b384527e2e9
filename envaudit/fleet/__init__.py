"""Fleet checks: the same ``envaudit check`` on every node of a Dask distributed cluster.

Roles: ``node`` is what runs ON a worker (a fresh ``envaudit`` subprocess in the worker's own
environment, its output returned as plain text); ``wire`` is what crosses the network (a node
answers in JSON bytes; the client unpickles nothing a node or the scheduler sends); ``address``
checks the scheduler's address and builds its TLS security; ``cluster`` talks to Dask (connect,
pick one worker per host, submit, wait with a deadline, re-run suspects); ``report`` turns what
the nodes returned into a ``FleetReport`` (groups by fingerprint, config drift, peer check, exit
code).

Dask is an optional dependency (``pip install 'envaudit[fleet]'``): only ``cluster``, ``address``
and ``wire``'s self-check import it, inside their functions, so ``import envaudit.fleet`` works
without it.
"""
