"""``envaudit fleet``: the peer and grouping logic on hand-made node answers, and one fleet check
on a real Dask cluster of processes on this machine (workers bound to distinct loopback addresses
act as distinct hosts): two normal peers, one with the setting that moves numbers on this
machine (``moving_knob``, e.g. TF_ENABLE_ONEDNN_OPTS=0: config drift), one
whose Python perturbs one kernel by one ulp (a simulated faulty node: fault injection from the
test side, through a sitecustomize on that worker's PYTHONPATH, which the fingerprint does not
record), and one whose worker process is killed while its check runs."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from conftest import cli_env, run_cli

from envaudit.fleet.report import (
    NodePlace,
    build_report,
    classify,
    deviations,
    majority_digests,
    parse_node,
)
from envaudit.render import fleet_junit, fleet_md, fleet_text

FP_A, FP_B = "fp-" + "a" * 16, "fp-" + "b" * 16


def answer(fp_id: str = FP_A, digests: dict[str, str] | None = None, verdict: str = "identical",
           causes: list | None = None) -> dict:
    check = {"schema": "envaudit.check/2", "verdict": verdict, "current_fingerprint_id": fp_id,
             "headline": "x", "array_digests": digests or {"probe/softmax": "aa" * 8,
                                                           "stage/eager/nms": "bb" * 8},
             "first_divergence": None, "causes": causes or []}
    return {"check": json.dumps(check), "fingerprint": None, "seconds": 1.5, "exit_code": 0}


def node(host: str, reply: dict):
    return parse_node(NodePlace(host, f"tcp://{host}:1"), reply, "check")


# --- pure logic ---------------------------------------------------------------------------


def test_the_odd_peer_out_is_the_suspect_and_only_it():
    odd = {"probe/softmax": "cc" * 8, "stage/eager/nms": "bb" * 8}
    nodes = [node("h1", answer()), node("h2", answer()), node("h3", answer(digests=odd)),
             node("h4", answer(FP_B, odd))]  # another group: its own digests are no fault
    assert deviations(nodes) == {"h3": ("probe/softmax",)}
    assert majority_digests(nodes[:3])["probe/softmax"] == "aa" * 8


def test_no_majority_no_suspect():
    odd = {"probe/softmax": "cc" * 8, "stage/eager/nms": "bb" * 8}
    assert deviations([node("h1", answer()), node("h2", answer(digests=odd))]) == {}


def test_rerun_classification():
    majority = {"probe/softmax": "aa" * 8}
    bad, good = {"probe/softmax": "cc" * 8}, dict(majority)
    assert classify([bad, good], majority) == ((True, False), "persistent")
    assert classify([good, good], majority) == ((False, False), "transient")
    assert classify([None, good], majority) == ((False,), "unknown")
    assert classify([], majority) == ((), "unknown")


@pytest.mark.parametrize("reply", [
    {"check": "not json"},
    {"check": json.dumps({"schema": "envaudit.check/2", "verdict": "rm -rf"})},
    {"check": json.dumps({"schema": "envaudit.check/2", "verdict": "drift",
                          "current_fingerprint_id": "../../etc", "array_digests": {}})},
    {"check": json.dumps([1, 2])},
    {"check": 7},
    {"check": "[" * 100000},
])
def test_a_node_that_answers_garbage_is_a_node_error(reply):
    n = node("h1", reply)
    assert n.error and "not envaudit's" in n.error and n.verdict is None


def test_exit_codes_and_findings():
    fine = [node("h1", answer()), node("h2", answer())]
    assert build_report("check", fine, "g", FP_A, 2, 1.0).exit_code == 0
    failed = [node("h1", {"error": "boom"}), node("h2", {"error": "gone"})]
    report = build_report("check", failed, "g", FP_A, 2, 1.0)
    assert (report.exit_code, report.headline) == (2, "No node could run (2 failed).")
    drift = build_report("check", [*fine, node("h3", answer(FP_B, verdict="drift"))],
                         "g", FP_A, 2, 1.0)
    assert drift.exit_code == 1 and drift.findings == ("drift", "config_drift")
    assert [g.fingerprint_id for g in drift.groups] == [FP_A, FP_B]  # the golden's first


def test_renderers_escape_what_a_node_wrote():
    evil = "\x1b[2J\x07bad\nline"
    report = build_report("check", [node("h1", {"error": evil}), node("h2", answer())], "g",
                          FP_A, 2, 1.0)
    from rich.console import Console

    console = Console(record=True, width=200, no_color=True, file=io.StringIO())
    console.print(fleet_text.render(report))
    for text in (console.export_text(), fleet_md.render(report), fleet_junit.render(report)):
        assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b[2J" in fleet_md.render(report)


def test_a_nodes_cause_reads_as_its_own_check_labels_it():
    cause = {"change": "cpu.family: 6 -> 25", "confidence": "likely", "path": "cpu.family",
             "trial": "untestable"}
    forged = {"change": "x", "confidence": "likely", "path": None, "trial": "<b>tested</b>"}
    report = build_report("check", [node("h1", answer(verdict="equivalent",
                                                      causes=[cause, forged]))], "g", FP_A, 2, 1.0)
    [first, second] = report.nodes[0].causes
    assert first.label == "likely, cannot be confirmed here"
    assert second.label == "likely"  # a trial envaudit does not know is no qualifier
    assert "cause [likely, cannot be confirmed here] cpu.family" in fleet_md.render(report)


def test_without_dask_one_line_and_exit_2(monkeypatch, capsys):
    from envaudit import cli

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    assert cli.main(["fleet", "check", "--local", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'envaudit[fleet]'" in err


def test_scheduler_or_local_exactly_one():
    proc = run_cli("fleet", "check")
    assert proc.returncode == 2 and "--scheduler" in proc.stderr


# --- a real cluster -----------------------------------------------------------------------

PERTURB = '''
"""Test fault injection: once TensorFlow is imported, tf.nn.softmax returns its first element
one ulp up, deterministically (a silent, persistent corruption of one kernel)."""
import importlib.abc, importlib.util, sys

class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        original = spec.loader.exec_module
        def exec_module(module):
            original(module)
            _patch(module)
        spec.loader.exec_module = exec_module
        return spec

def _patch(tf):
    softmax = tf.nn.softmax
    def nudged(*args, **kwargs):
        y = softmax(*args, **kwargs)
        flat = tf.reshape(y, [-1])
        first = tf.math.nextafter(flat[:1], tf.ones_like(flat[:1]) * 2)
        return tf.reshape(tf.concat([first, flat[1:]], 0), tf.shape(y))
    tf.nn.softmax = nudged

sys.meta_path.insert(0, _Hook())
'''

MARK = '''
"""Test helper: an envaudit check started on this node leaves a mark, so that the test kills
its worker while the check runs."""
import os
try:
    with open("/proc/self/cmdline", "rb") as f:
        argv = f.read().split(b"\\0")
except OSError:
    argv = []
if b"envaudit" in argv and b"check" in argv:
    open(os.environ["FLEET_TEST_MARK"], "w").close()
'''

HOSTS = {"normal": "127.0.0.2", "peer": "127.0.0.3", "knob": "127.0.0.4",
         "perturbed": "127.0.0.5", "victim": "127.0.0.6"}
DASK = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_workers(address: str, count: int, timeout: float = 60) -> None:
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(count, timeout=timeout)


@pytest.fixture(scope="module")
def fleet(golden_bundle: Path, moving_knob, tmp_path_factory: pytest.TempPathFactory):
    """The cluster, and one ``fleet check --format json`` over it: (exit code, JSON, scheduler
    address, stderr). Every process started here is killed afterwards, whatever happens."""
    pytest.importorskip("distributed")
    base = tmp_path_factory.mktemp("fleet")
    (base / "perturb").mkdir()
    (base / "perturb" / "sitecustomize.py").write_text(textwrap.dedent(PERTURB))
    (base / "mark").mkdir()
    (base / "mark" / "sitecustomize.py").write_text(textwrap.dedent(MARK))
    mark = base / "victim-running"
    address = f"tcp://127.0.0.1:{_free_port()}"
    envs = {"normal": cli_env(), "peer": cli_env(), "knob": cli_env(**moving_knob.env),
            "perturbed": cli_env(PYTHONPATH=str(base / "perturb")),
            "victim": cli_env(PYTHONPATH=str(base / "mark"), FLEET_TEST_MARK=str(mark))}
    procs: dict[str, subprocess.Popen] = {}
    logs = []

    def start(name: str, command: list[str], env: dict[str, str]) -> None:
        log = open(base / f"{name}.log", "w")  # noqa: SIM115 - closed in the finally below
        logs.append(log)
        procs[name] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)

    try:
        start("scheduler", [*DASK, "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                            "--no-dashboard"], cli_env())
        for name, host in HOSTS.items():
            start(name, [*WORKER, address, "--host", host, "--nthreads", "1", "--nworkers", "1",
                         "--no-nanny", "--no-dashboard", "--name", name], envs[name])
        _wait_for_workers(address, len(HOSTS))
        check = subprocess.Popen(
            [sys.executable, "-m", "envaudit", "fleet", "check", "--scheduler", address,
             "--golden", str(golden_bundle), "--modes", "eager", "--timeout", "120",
             "--rerun", "2", "--format", "json"],
            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        procs["fleet-check"] = check
        deadline = time.monotonic() + 60
        while not mark.exists() and time.monotonic() < deadline and check.poll() is None:
            time.sleep(0.1)
        assert mark.exists(), "the victim's check never started"
        os.killpg(procs["victim"].pid, signal.SIGKILL)  # the worker and its running check
        out, err = check.communicate(timeout=300)
        yield check.returncode, json.loads(out) if out else {}, address, err
    finally:
        kill_groups(procs.values())
        for log in logs:
            log.close()


def kill_groups(procs: Iterable[subprocess.Popen]) -> None:
    """Kill each process's whole group (a worker and the checks it started), and reap it."""
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)


def _by_host(report: dict) -> dict[str, dict]:
    return {n["host"]: n for n in report["nodes"]}


@pytest.mark.slow
def test_fleet_check_finds_drift_fault_and_the_lost_node(fleet):
    code, report, _, err = fleet
    assert report.get("schema") == "envaudit.fleet/1", err
    nodes = _by_host(report)
    print(json.dumps({h: {k: n[k] for k in ("verdict", "fingerprint_id", "error", "seconds")}
                      for h, n in nodes.items()}, indent=1))
    assert code == 1 and report["exit_code"] == 1
    assert set(report["findings"]) >= {"config_drift", "suspected_fault", "node_error"}
    assert set(nodes) == set(HOSTS.values())


@pytest.mark.slow
def test_config_drift_is_grouped_apart_attributed_and_confirmed(fleet, moving_knob):
    _, report, _, _ = fleet
    nodes = _by_host(report)
    knob = nodes[HOSTS["knob"]]
    reference = next(g for g in report["groups"] if g["reference"])
    drifted = next(g for g in report["groups"] if knob["label"] in g["nodes"])
    print("reference", reference["nodes"], "drifted", drifted["nodes"],
          [c["path"] for c in drifted["changes"] if c["numerics"]], drifted["causes"])
    assert reference["fingerprint_id"] == report["golden"]["fingerprint_id"]
    assert drifted["nodes"] == [knob["label"]] and not drifted["reference"]
    assert moving_knob.path in [c["path"] for c in drifted["changes"] if c["numerics"]]
    assert {"path": moving_knob.path, "confidence": "confirmed"}.items() <= \
        next(c for c in knob["causes"] if c["path"] == moving_knob.path).items()
    assert knob["suspect"] is None  # alone in its group: nobody to disagree with


@pytest.mark.slow
def test_the_killed_node_is_reported_and_the_others_complete(fleet):
    _, report, _, _ = fleet
    nodes = _by_host(report)
    victim = nodes.pop(HOSTS["victim"])
    print("victim:", victim["error"])
    assert "left the cluster" in victim["error"] and victim["verdict"] is None
    assert all(n["error"] is None and n["verdict"] for n in nodes.values())


@pytest.mark.slow
def test_the_perturbed_peer_is_a_persistent_suspected_fault(fleet):
    _, report, _, _ = fleet
    nodes = _by_host(report)
    bad = nodes[HOSTS["perturbed"]]
    reference = next(g for g in report["groups"] if g["reference"])
    print("perturbed:", bad["suspect"], "group", reference["nodes"], reference["suspects"])
    assert bad["fingerprint_id"] == nodes[HOSTS["normal"]]["fingerprint_id"]
    assert set(reference["nodes"]) == {HOSTS["normal"], HOSTS["peer"], HOSTS["perturbed"]}
    assert reference["suspects"] == [HOSTS["perturbed"]]
    assert "probe/softmax" in bad["suspect"]["arrays"]
    assert bad["suspect"]["classification"] == "persistent"
    assert bad["suspect"]["reruns"] == [True, True]
    assert nodes[HOSTS["normal"]]["suspect"] is None and nodes[HOSTS["peer"]]["suspect"] is None
    assert reference["verdict"] == "identical"  # the agreeing peers' verdict


@pytest.mark.slow
def test_fleet_fingerprint_groups_the_same_cluster(fleet):
    _, _, address, _ = fleet
    proc = run_cli("fleet", "fingerprint", "--scheduler", address, "--format", "json",
                   timeout=120)
    report = json.loads(proc.stdout)
    print(proc.returncode, [(g["fingerprint_id"], g["nodes"]) for g in report["groups"]])
    assert proc.returncode == 1 and report["findings"] == ["config_drift"]
    assert sorted(len(g["nodes"]) for g in report["groups"]) == [1, 3]


@pytest.mark.parametrize(("visible", "gpus"), [("0,1", ["0", "1"]), ("2", ["2"]), ("", []),
                                               ("-1", []), (" 1 , 3 ", ["1", "3"])])
def test_one_run_per_gpu_a_worker_can_see(monkeypatch, visible, gpus):
    """A host's GPUs as CUDA_VISIBLE_DEVICES values, one run each, on this machine for real
    (NVML has no driver here: the worker's own values pass on as set, and it says so; the NVML
    branch replays recorded answers in tests/test_gpu_selection.py)."""
    from envaudit.fleet.node import visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    listed = visible_gpus()
    assert [(g["device"], g["label"]) for g in listed["gpus"]] == [(g, g) for g in gpus]
    assert len(listed["notes"]) == (1 if gpus else 0)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus() == {"gpus": [], "notes": []}  # no NVIDIA driver here: a CPU node



def test_the_fleet_html_page_is_self_contained_and_escapes_what_a_node_wrote():
    from envaudit.render import fleet_html

    evil = "<script>alert(1)</script>"
    report = build_report("check", [node("h1", {"error": evil}), node("h2", answer()),
                                    node("h3", answer(FP_B, verdict="drift"))], "g", FP_A, 2, 1.0)
    page = fleet_html.render(report)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert f"Fingerprint reference group <code>{FP_A}</code>" in page
    assert "Findings: " in page and "config_drift" in page
