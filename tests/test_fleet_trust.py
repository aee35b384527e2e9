"""A fleet's strangers run nothing here: a hostile Dask worker (a real ``dask worker --preload``)
whose answer is a pickle that runs code, or whose task raises such an exception; Dask's own
decoders fed what a hostile scheduler could send; a TLS scheduler with throwaway certificates;
one-line errors for addresses envaudit cannot use; a node's child next to a shadow ``envaudit/``.

Each attack is first shown to work against Dask as envaudit used it before (a plain client, the
marker file written by that client's process), then shown to be refused."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import cli_env, run_cli
from test_fleet import DASK, WORKER, _free_port, _wait_for_workers, kill_groups

from envaudit import cli
from envaudit.fleet import cluster, node, wire

# The hostile worker's preload: every envaudit task answers with an object whose unpickling
# writes a marker holding the pid of the process that unpickled it (never this worker's own:
# Dask round-trips an exception through pickle on the worker before sending it, and sends a
# plain Exception instead when that fails).
HOSTILE = '''
import os

import distributed

MARK = os.environ["FLEET_TEST_MARK"]
# Evaluates to an exception, so that the worker's own pickle round trip of it succeeds.
CODE = (f"(__import__('os').getpid() != {os.getpid()} and open({MARK!r}, 'w')"
        f".write(str(__import__('os').getpid())) and None) or ValueError('boom')")


class Payload:
    def __reduce__(self):
        return (eval, (CODE,))


class PayloadError(Exception):
    def __reduce__(self):
        return (eval, (CODE,))


def dask_setup(worker):
    import envaudit.fleet.wire as wire

    honest = wire.as_json

    def as_json(function, /, **kwargs):
        if function.__name__ == "visible_gpus":  # be found, then strike
            return honest(function, **kwargs)
        distributed.print("INJECTED-BY-NODE \\x1b[2J")
        distributed.warn("WARNED-BY-NODE")
        if os.environ["FLEET_TEST_MODE"] == "result":
            return Payload()
        raise PayloadError("boom")

    wire.as_json = as_json
'''

# A client as envaudit had it: Dask's defaults (or msgpack only), no guard.
PLAIN_CLIENT = '''
import os, sys
import distributed
from envaudit.fleet import node, wire
address, worker, only = sys.argv[1:4]
options = {"deserializers": only.split(",")} if only else {}
with distributed.Client(address, timeout=30, **options) as client:
    future = client.submit(wire.as_json, node.run_fingerprint, workers=[worker], pure=False)
    distributed.wait(future, timeout=60)
    try:
        future.result(timeout=10)
    except Exception:
        pass
print(os.getpid())
'''

ROLES = {"result": "127.0.0.2", "raises": "127.0.0.3", "honest": "127.0.0.4"}


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


@pytest.fixture(scope="module")
def hostile_fleet(tmp_path_factory: pytest.TempPathFactory):
    """A scheduler, a worker whose answers are pickles, one whose tasks raise a pickled
    exception, one honest worker: (address, {role: (worker address, marker path)})."""
    pytest.importorskip("distributed")
    base = tmp_path_factory.mktemp("hostile")
    (base / "hostile.py").write_text(textwrap.dedent(HOSTILE))
    address = f"tcp://127.0.0.1:{_free_port()}"
    procs = []
    try:
        procs.append(_start([*DASK, "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                             "--no-dashboard"], cli_env(), base / "scheduler.log"))
        for role, host in ROLES.items():
            preload = [] if role == "honest" else ["--preload", str(base / "hostile.py")]
            env = cli_env(FLEET_TEST_MARK=str(base / f"ran-{role}"),
                          FLEET_TEST_MODE=role)
            procs.append(_start([*WORKER, address, "--host", host, "--nthreads", "1",
                                 "--no-nanny", "--no-dashboard", "--name", role, *preload],
                                env, base / f"{role}.log"))
        _wait_for_workers(address, len(ROLES))
        from distributed import Client

        with Client(address, timeout=30) as client:
            # Asked of the scheduler: the client's cached scheduler_info() may list no workers.
            workers = cluster.workers(client)
        by_name = {info["name"]: worker for worker, info in workers.items()}
        yield address, {role: (by_name[role], base / f"ran-{role}") for role in ROLES}
    finally:
        kill_groups(procs)


def _plain_client(address: str, worker: str, only: str = "") -> str:
    """The plain client's pid; what the node print()ed reached its stdout first."""
    proc = subprocess.run([sys.executable, "-c", PLAIN_CLIENT, address, worker, only],
                          env=cli_env(), capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed, _, pid = proc.stdout.strip().rpartition("\n")
    assert "INJECTED-BY-NODE \x1b[2J" in printed  # with the escape sequence, raw
    return pid


@pytest.mark.slow
def test_a_hostile_workers_pickles_run_in_a_plain_dask_client(hostile_fleet):
    """The attack, reproduced: Dask unpickles a node's result, and even with msgpack-only
    deserializers it unpickles a node's exception."""
    address, roles = hostile_fleet
    worker, marker = roles["result"]
    pid = _plain_client(address, worker)
    assert marker.read_text() == pid  # the client's own process ran the node's code
    marker.unlink()
    assert _plain_client(address, worker, "msgpack") and not marker.exists()
    worker, marker = roles["raises"]
    pid = _plain_client(address, worker, "msgpack")
    assert marker.read_text() == pid
    marker.unlink()


@pytest.mark.slow
def test_fleet_check_unpickles_nothing_and_names_the_hostile_nodes(hostile_fleet):
    address, roles = hostile_fleet
    for _, marker in roles.values():
        marker.unlink(missing_ok=True)
    proc = run_cli("fleet", "check", "--scheduler", address, "--modes", "eager", "--timeout",
                   "300", "--rerun", "0", "--format", "json", "--no-history", timeout=400)
    report = json.loads(proc.stdout)
    nodes = {n["host"]: n for n in report["nodes"]}
    print(proc.returncode, {h: (n["error"], n["verdict"]) for h, n in nodes.items()})
    assert [m for _, m in roles.values() if m.exists()] == []
    assert "not unpickled" in nodes[ROLES["result"]]["error"]
    assert "not unpickled" in nodes[ROLES["raises"]]["error"]
    assert nodes[ROLES["honest"]]["error"] is None and nodes[ROLES["honest"]]["verdict"]
    assert "node_error" in report["findings"] and proc.returncode == 1
    # A node's print() and warn() reach neither the report nor the terminal.
    assert "INJECTED-BY-NODE" not in proc.stdout + proc.stderr
    assert "WARNED-BY-NODE" not in proc.stdout + proc.stderr


class _Payload:
    """Unpickling it writes the marker named in its state (what a hostile scheduler sends)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


class _PayloadError(Exception):
    def __init__(self, marker: Path) -> None:
        super().__init__(str(marker))

    def __reduce__(self):
        return (exec, (f"open({self.args[0]!r}, 'w').close()",))


def _scheduler_messages(marker: Path) -> dict[str, object]:
    """Ways a hostile scheduler's message reaches an unpickler in Dask's client: a
    ``__Pickled__`` part of any message, a task's exception, a result's type, a warning."""
    from distributed.client import _handle_warn
    from distributed.core import clean_exception
    from distributed.protocol.core import dumps, loads
    from distributed.protocol.serialize import ToPickle

    frames = dumps({"op": "key-in-memory", "key": "x", "payload": ToPickle(_Payload(marker))})
    warning = {"message": pickle.dumps("hello"), "category": pickle.dumps(_Payload(marker))}
    return {"message": lambda: loads(frames, deserializers=list(wire.DESERIALIZERS)),
            "exception": lambda: clean_exception(pickle.dumps(_PayloadError(marker))),
            "warning category": lambda: _handle_warn((0.0, warning))}


@pytest.mark.filterwarnings("ignore:hello")
def test_what_a_hostile_scheduler_sends_is_refused(tmp_path):
    pytest.importorskip("distributed")
    marker = tmp_path / "ran"
    for name, receive in _scheduler_messages(marker).items():
        try:
            receive()
        except Exception:
            pass
        assert marker.exists(), name  # without the guard, Dask runs the sender's code
        marker.unlink()
        with wire.refuse_pickles():
            try:
                receive()
            except wire.RefusedPickle:
                pass
            assert pickle.loads(pickle.dumps((b"data", "text", 1.5, {2}))) == (
                b"data", "text", 1.5, {2})  # plain data still reads
        assert not marker.exists(), name
    assert pickle.loads is not None and pickle.loads.__module__ == "_pickle"  # put back


def test_a_node_answer_is_json_bytes_or_an_error():
    assert json.loads(wire.as_json(lambda: {"a": 1})) == {"a": 1}

    def gone():
        raise SystemExit(3)

    assert "SystemExit" in wire.decode(wire.as_json(gone))["error"]
    assert wire.decode(b'{"check": null}') == {"check": None}
    for payload, phrase in ((object(), "not unpickled"), (b"[1]", "not a JSON object"),
                            (b"\x80\x04.", "not JSON"),
                            (b" " * (wire.MAX_ANSWER_BYTES + 1), "larger than")):
        assert phrase in wire.decode(payload)["error"]


# --- TLS and addresses --------------------------------------------------------------------


def _throwaway_pki(folder: Path) -> dict[str, Path]:
    """A CA and one certificate it signed (scheduler, worker and client share it)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make throwaway TLS certificates")
    files = {n: folder / n for n in ("ca.pem", "ca.key", "node.pem", "node.key", "node.csr")}
    steps = [["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", files["ca.key"],
              "-out", files["ca.pem"], "-days", "2", "-subj", "/CN=envaudit-test-ca"],
             ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", files["node.key"], "-out",
              files["node.csr"], "-subj", "/CN=localhost"],
             ["x509", "-req", "-in", files["node.csr"], "-CA", files["ca.pem"], "-CAkey",
              files["ca.key"], "-CAcreateserial", "-out", files["node.pem"], "-days", "2"]]
    for step in steps:
        subprocess.run(["openssl", *map(str, step)], capture_output=True, check=True,
                       timeout=60)
    return files


@pytest.mark.slow
def test_a_tls_scheduler_from_options_or_dasks_settings(tmp_path):
    pytest.importorskip("distributed")
    pki = _throwaway_pki(tmp_path)
    tls = ["--tls-ca-file", str(pki["ca.pem"]), "--tls-cert", str(pki["node.pem"]),
           "--tls-key", str(pki["node.key"])]
    port = _free_port()
    address = f"tls://127.0.0.1:{port}"
    procs = []
    try:
        procs.append(_start([*DASK, "--host", "127.0.0.1", "--port", str(port), "--protocol",
                             "tls", "--no-dashboard", *tls], cli_env(), tmp_path / "s.log"))
        procs.append(_start([*WORKER, address, "--host", "127.0.0.2", "--nthreads", "1",
                             "--no-nanny", "--no-dashboard", *tls], cli_env(),
                            tmp_path / "w.log"))
        # The worker registers in its own time; on a loaded machine that can take seconds.
        from distributed import Client
        from distributed.security import Security

        security = Security(tls_ca_file=str(pki["ca.pem"]), tls_client_cert=str(pki["node.pem"]),
                            tls_client_key=str(pki["node.key"]), require_encryption=True)
        with Client(address, security=security, timeout=60) as client:
            client.wait_for_workers(1, timeout=120)
        dask_tls = cli_env(DASK_DISTRIBUTED__COMM__TLS__CA_FILE=str(pki["ca.pem"]),
                           DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT=str(pki["node.pem"]),
                           DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY=str(pki["node.key"]))
        runs = {"options": run_cli("fleet", "fingerprint", "--scheduler", address, *tls,
                                   "--format", "json", timeout=120),
                "dask settings": run_cli("fleet", "fingerprint", "--scheduler", address,
                                         "--format", "json", env=dask_tls, timeout=120),
                "plain tcp": run_cli("fleet", "fingerprint", "--scheduler",
                                     f"tcp://127.0.0.1:{port}", timeout=120)}
    finally:
        kill_groups(procs)
    for how in ("options", "dask settings"):
        proc = runs[how]
        assert proc.returncode == 0, (how, proc.stderr)
        [found] = json.loads(proc.stdout)["nodes"]
        assert found["host"] == "127.0.0.2" and found["fingerprint_id"].startswith("fp-")
    assert runs["plain tcp"].returncode == 2 and "cannot reach" in runs["plain tcp"].stderr


@pytest.mark.parametrize(("args", "phrase"), [
    (["--scheduler", "ucx://10.0.0.1:8786"], "ucx://, which envaudit fleet does not support"),
    (["--scheduler", "inproc://x"], "inproc://, which envaudit fleet does not support"),
    (["--scheduler", "tls://127.0.0.1:8786"], "needs --tls-ca-file and --tls-cert"),
    (["--scheduler", "tls://127.0.0.1:8786", "--tls-ca-file", "/nonexistent/ca.pem",
      "--tls-cert", "/nonexistent/me.pem"], "--tls-ca-file /nonexistent/ca.pem"),
    (["--scheduler", "tcp://127.0.0.1:8786", "--tls-cert", "me.pem"], "need a tls://"),
    (["--local", "1", "--tls-cert", "me.pem"], "not to --local"),
    (["--scheduler", "tcp://10.0.0.1"], "is not valid"),
    (["--scheduler", "tcp://10.0.0.1:99999"], "is not valid"),
    (["--scheduler", "tcp://::1:8786"], "needs brackets"),
    (["--scheduler", "tcp://ho st:1"], "is not valid"),
])
def test_an_address_envaudit_cannot_use_is_one_line(capsys, args, phrase):
    pytest.importorskip("distributed")
    for command in (["fleet", "fingerprint"], ["fleet", "check", "--no-history"]):
        assert cli.main([*command, *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and phrase in err and "internal error" not in err


def test_tls_files_that_are_not_certificates_are_one_line(capsys, tmp_path):
    pytest.importorskip("distributed")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert cli.main(["fleet", "fingerprint", "--scheduler", "tls://127.0.0.1:1",
                     "--tls-ca-file", str(junk), "--tls-cert", str(junk)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot use the TLS files" in err


# --- a node's children --------------------------------------------------------------------


def test_a_nodes_child_ignores_a_shadow_envaudit_in_the_workers_folder(tmp_path, monkeypatch):
    """A worker started in a checkout that holds ``envaudit/``, ``numpy/``, ``tensorflow/``."""
    shadow = tmp_path / "checkout"
    marker = tmp_path / "shadow-ran"
    for package in ("envaudit", "numpy", "tensorflow"):
        (shadow / package).mkdir(parents=True)
        (shadow / package / "__init__.py").write_text(
            f"open({str(marker)!r}, 'a').write({package!r})\nraise SystemExit(3)\n")
    naive = subprocess.run([sys.executable, "-m", "envaudit", "fingerprint"], cwd=shadow,
                           env=cli_env(), capture_output=True, timeout=120, check=False)
    assert naive.returncode == 3 and marker.read_text() == "envaudit"  # the attack works
    marker.unlink()
    monkeypatch.chdir(shadow)
    answer = node.run_fingerprint()
    assert not marker.exists()
    assert answer["error"] is None and json.loads(answer["fingerprint"])["fingerprint_id"]
