"""``--local N`` on a busy machine: the cluster comes up and every node answers.

The failure seen on a loaded two-core machine (every worker "left the cluster during the run",
exit 2; the same command passed again) came from reading the worker list out of the Dask client's
cache, which Dask refreshes every 2 s with a summary that lists no workers. The window is a few
milliseconds, wider the busier the machine; these tests widen it with Dask's own setting
(``distributed.client.scheduler-info-interval``) and keep both cores busy with CPU burners
(bounded in time, killed in a ``finally``), first showing the cache really empties, then that
envaudit's fleet does not care. Dask's HTTP servers listen on loopback only, on any free port (by
default on every interface, the scheduler's on 8787, warning on stderr when that is taken).
A start that fails is retried once with its reason: shown with a
real cause (Dask's temporary folder under a plain file), once cured between the tries, once not.
No TensorFlow: ``fleet fingerprint`` runs only the fingerprint on each node.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli_env, run_cli

distributed = pytest.importorskip("distributed")
import dask  # noqa: E402 - after the skip: dask comes with distributed

from envaudit.errors import EnvauditError  # noqa: E402
from envaudit.fleet import cluster, local  # noqa: E402
from envaudit.fleet.run import fleet_fingerprint  # noqa: E402

BURN_S = 50  # the burners stop by themselves after this, whatever happens to the test
BURNER = f"import time\nend = time.monotonic() + {BURN_S}\nwhile time.monotonic() < end: pass"
# Dask's refresh of the client's cache, from every 2 s to every millisecond: the race in reach.
RACE = {"distributed.client.scheduler-info-interval": "1ms"}


@pytest.fixture
def busy_machine() -> Iterator[int]:
    """One CPU-burning process per core (at least two), killed afterwards."""
    burners = [subprocess.Popen([sys.executable, "-c", BURNER]) for _ in
               range(max(2, os.cpu_count() or 2))]
    try:
        time.sleep(0.5)
        assert all(b.poll() is None for b in burners), "a CPU burner did not start"
        yield len(burners)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait(timeout=30)


def test_a_local_cluster_on_a_busy_machine_comes_up_and_every_node_answers(busy_machine):
    with dask.config.set(RACE), local.start(distributed, 2, lambda _: None) as client:
        cached, asked = [], []
        for _ in range(300):
            cached.append(len(client.scheduler_info(n_workers=-1)["workers"]))
            asked.append(len(cluster.workers(client)))
    # The setup really exists: the client's cache showed this healthy cluster without workers.
    assert 0 in cached, f"the cache never emptied in {len(cached)} reads"
    assert set(asked) == {2}  # the scheduler, asked, always lists both
    for _ in range(3):  # before the fix, about half of these runs lost both workers
        lines: list[str] = []
        with dask.config.set(RACE):
            report = fleet_fingerprint(local=2, progress=lines.append)
        print(lines)
        assert [n.error for n in report.nodes] == [None, None], lines
        assert report.exit_code == 0 and len(report.groups) == 1
        assert any(line.startswith("local cluster of 2 worker(s) up in") for line in lines)


def _not_a_folder(tmp_path: Path) -> tuple[Path, Path]:
    plain = tmp_path / "scratch"
    plain.write_text("a plain file where Dask's temporary folder should be\n")
    return plain, plain / "dask"


def test_a_local_start_that_fails_is_retried_with_its_reason(tmp_path):
    plain, below = _not_a_folder(tmp_path)
    lines: list[str] = []

    def progress(line: str) -> None:
        lines.append(line)
        if "starting it again" in line:  # the cause goes away between the tries
            plain.unlink()
            below.mkdir(parents=True)

    with dask.config.set({"temporary-directory": str(below)}), \
            local.start(distributed, 1, progress) as client:
        assert len(cluster.workers(client)) == 1
    print(lines)
    assert "did not start" in lines[0] and "Not a directory" in lines[0]
    assert lines[1].startswith("local cluster of 1 worker(s) up in") and len(lines) == 2


def test_a_local_cluster_that_cannot_start_is_one_line_and_exit_2(tmp_path):
    plain, below = _not_a_folder(tmp_path)
    with dask.config.set({"temporary-directory": str(below)}), \
            pytest.raises(EnvauditError, match="did not start") as raised:
        with local.start(distributed, 1, lambda _: None):
            pass
    assert "each of 2 tries" in str(raised.value)  # the same reason twice, said once
    assert str(raised.value).count("Not a directory") == 1
    proc = run_cli("fleet", "fingerprint", "--local", "1",
                   env=cli_env(DASK_TEMPORARY_DIRECTORY=str(below)), timeout=120)
    print(proc.stderr)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "did not start" in proc.stderr
    assert plain.is_file()  # envaudit made no folder of its own in its place


def _listening() -> set[tuple[str, int]]:
    """(address, port) of every TCP socket this process listens on (Linux ``/proc``)."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                mine.add(target[8:-1])
    found = set()
    for table, family in (("/proc/self/net/tcp", socket.AF_INET),
                          ("/proc/self/net/tcp6", socket.AF_INET6)):
        with contextlib.suppress(OSError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[3] != "0A" or fields[9] not in mine:  # 0A: LISTEN
                    continue
                raw, port = fields[1].split(":")
                packed = b"".join(bytes.fromhex(raw[i:i + 8])[::-1] for i in range(0, len(raw), 8))
                found.add((socket.inet_ntop(family, packed), int(port, 16)))
    return found


def test_a_local_cluster_listens_on_loopback_only_and_says_nothing_about_8787():
    if not os.path.exists("/proc/self/net/tcp"):
        pytest.skip("needs Linux /proc to list this process's listening sockets")
    with contextlib.ExitStack() as stack:
        holder = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # already taken by someone else: just as good
            holder.bind(("0.0.0.0", 8787))
            holder.listen()
        before = _listening()
        # The setup really exists: Dask's defaults listen beyond loopback, and warn about 8787.
        with pytest.warns(UserWarning, match="8787 is already in use"), \
                distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                         dashboard_address=None):
            assert {a for a, _ in _listening() - before} - {"127.0.0.1"}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with local.start(distributed, 2, lambda _: None):
                opened = _listening() - before
    print(sorted(opened), [str(w.message) for w in caught])
    assert opened and {address for address, _ in opened} == {"127.0.0.1"}
    assert 8787 not in {port for _, port in opened}
    assert not [w for w in caught if "already in use" in str(w.message)]
