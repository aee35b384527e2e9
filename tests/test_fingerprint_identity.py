"""fingerprint_id: numerics-relevant fields change it, nothing else does, and the rule that says
which is which is the same one ``diff`` uses.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from envaudit.fingerprint import Fingerprint, capture, diff
from envaudit.fingerprint.fields import is_process_dependent, leaves
from envaudit.fingerprint.guard import is_unavailable
from envaudit.fingerprint.identity import fingerprint_id

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-m", "envaudit", "fingerprint", "--format", "json"]


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}


def fingerprint_json(env: dict[str, str], command: list[str] = COMMAND) -> dict[str, Any]:
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def baseline() -> dict[str, Any]:
    return fingerprint_json(base_env())


def test_tf_enable_onednn_opts_changes_the_id(baseline):
    changed = fingerprint_json({**base_env(), "TF_ENABLE_ONEDNN_OPTS": "0"})
    assert changed["env"]["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert changed["fingerprint_id"] != baseline["fingerprint_id"]


def test_another_hostname_keeps_the_id(baseline):
    # A real hostname change: a new UTS namespace (needs root or user namespaces).
    script = "hostname envaudit-other-host && exec \"$@\""
    command = ["unshare", "--uts", "sh", "-c", script, "sh", *COMMAND]
    probe = subprocess.run(["unshare", "--uts", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:  # no UTS namespaces here: change the recorded hostname instead
        edited = {**baseline, "os": {**baseline["os"], "hostname": "envaudit-other-host"}}
        assert fingerprint_id(edited) == baseline["fingerprint_id"]
        return
    other = fingerprint_json(base_env(), command)
    assert other["os"]["hostname"] == "envaudit-other-host" != baseline["os"]["hostname"]
    assert other["fingerprint_id"] == baseline["fingerprint_id"]


def test_id_ignores_volatile_fields(monkeypatch):
    real = capture()
    fake_uname = os.uname_result(os.uname()[:1] + ("patched-host",) + os.uname()[2:])
    monkeypatch.setattr(os, "uname", lambda: fake_uname)
    patched = capture()
    assert patched.get("os.hostname") == "patched-host"
    assert patched.fingerprint_id == real.fingerprint_id

    data = copy.deepcopy(real.to_dict())
    data["captured_at"] = "1999-01-01T00:00:00Z"
    data["memory"]["available_bytes"] = 1
    data["memory"]["total_bytes"] = 2
    data["python"]["executable"] = "/elsewhere/bin/python"
    data["os"]["kernel"] = "9.9.9"
    data["tensorflow"]["location"] = "/elsewhere/tensorflow"
    data["env"]["TF_CPP_MIN_LOG_LEVEL"] = "3"
    assert fingerprint_id(data) == real.fingerprint_id


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("tensorflow.version", "2.99.0"),
        ("tensorflow.build_info.cudnn_version", "8"),
        ("cpu.flags", ["avx", "avx2"]),
        ("cpu.usable_cores", 1),
        ("os.libc.version", "2.17"),
        ("python.version", "3.12.0"),
        ("numerics_libs.numpy.version", "1.26.4"),
        ("env.XLA_FLAGS", "--xla_cpu_enable_fast_math=true"),
        ("packages.numpy.version", "1.26.4"),
    ],
)
def test_numerics_fields_change_the_id(path, value):
    data = capture().to_dict()
    node = data
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    assert fingerprint_id(data) != data["fingerprint_id"]


def _mutated(value: Any) -> Any:
    if is_unavailable(value):
        return {"available": False, "reason": value["reason"] + " (other reason)"}
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, list):
        return [*value, "zz-added"]
    if isinstance(value, dict):
        return {"zz-added": "x"}
    return f"{value}-changed"


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = tree
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def test_diff_calls_a_change_numerics_exactly_when_it_changes_the_id():
    """One definition: for every leaf of a real fingerprint, changing it moves fingerprint_id
    if and only if ``diff`` reports the change as numerics-relevant."""
    golden = capture().to_dict()
    checked = 0
    for path, value in leaves(golden):
        if path == "fingerprint_id" or is_process_dependent(path):
            continue
        current = copy.deepcopy(golden)
        _set(current, path, _mutated(value))
        id_changed = fingerprint_id(current) != golden["fingerprint_id"]
        current["fingerprint_id"] = golden["fingerprint_id"]
        changes = diff(Fingerprint(golden), Fingerprint(current))
        assert changes, path
        assert any(c.numerics for c in changes) == id_changed, (path, changes)
        checked += 1
    assert checked > 100
