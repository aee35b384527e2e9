"""Leaks through real ``envaudit report`` and ``envaudit fingerprint`` subprocesses.

Each leak is put in place first, as an attacker or a careless setup would leave it: Terraform's
variables (which share TensorFlow's ``TF_`` prefix), a TensorFlow cluster spec naming hosts and
addresses, another user's data folders, this machine's name with its domain, and a package
installed from a URL that carries tokens in its path and query (a real ``direct_url.json`` in a
real site folder on ``PYTHONPATH``). The unit rules behind each are in tests/test_redaction.py.
No TensorFlow is imported: fingerprinting reads metadata only, so these run in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env

TERRAFORM = {
    "TF_VAR_db_pw": "tf-var-hunter2",
    "TF_CLI_ARGS_apply": "-var=admin_pw=cli-args-s3cret",
    "TF_CLI_CONFIG_FILE": "/srv/tf/terraformrc-marker",
    "TF_TOKEN_app_terraform_io": "tf-token-abcdef",
    "TF_LOG": "TRACE", "TF_LOG_PATH": "/srv/tf/log-marker", "TF_WORKSPACE": "prod-workspace",
    "TF_IN_AUTOMATION": "1", "TF_REGISTRY_CLIENT_TIMEOUT": "37", "TF_DATA_DIR": "/srv/tf/data",
}
PATH_TOKEN = "aB3dE5gH7jK9mN1p"
QUERY_TOKEN = "q-tok-0ne-s3cret"
CLUSTER = {"cluster": {"chief": ["chief-0.corp.example.com:2222"],
                       "worker": ["10.1.2.3:2222", "worker-1.corp.example.com:2222"]},
           "task": {"type": "worker", "index": 0}}


HOST = "node-7731"  # this machine's name, in a private UTS namespace where one can be set


def envaudit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "envaudit", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def envaudit_on_host(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """envaudit run where the machine is called HOST (``unshare --uts`` needs root)."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("hostname"):
        pytest.skip("naming the machine needs root, unshare and hostname")
    return subprocess.run(
        ["unshare", "--uts", "sh", "-c", f'hostname {HOST} && exec "$@"', "sh", sys.executable,
         "-m", "envaudit", *args], env=env, capture_output=True, text=True, timeout=120,
        check=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A site folder holding one distribution installed from a URL with tokens."""
    folder = tmp_path_factory.mktemp("site")
    info = folder / "leaky_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: leaky-pkg\nVersion: 1.0\n")
    url = (f"https://pkgs.example.com/{PATH_TOKEN}/simple/leaky-pkg/leaky_pkg-1.0.tar.gz"
           f"?access_token={QUERY_TOKEN}")
    (info / "direct_url.json").write_text(json.dumps({"url": url, "archive_info": {}}))
    return folder


@pytest.fixture(scope="module")
def leaky_env(site) -> dict[str, str]:
    return cli_env(
        PYTHONPATH=str(site), **TERRAFORM,
        TF_CONFIG=json.dumps(CLUSTER),
        LD_LIBRARY_PATH="/data/carol/cuda/lib64:/scratch/dave/lib:/usr/lib",
        CUDA_CACHE_PATH=f"/mnt/{HOST}.corp.example.com/cuda-cache",
    )


@pytest.fixture(scope="module")
def fingerprints(leaky_env) -> tuple[dict, dict]:
    """The unredacted fingerprint JSON with and without Terraform's variables."""
    without = {k: v for k, v in leaky_env.items() if k not in TERRAFORM}
    out = []
    for env in (leaky_env, without):
        proc = envaudit("fingerprint", "--format", "json", env=env)
        assert proc.returncode == 0, proc.stderr
        out.append(json.loads(proc.stdout))
    return out[0], out[1]


def test_terraform_variables_are_not_recorded_and_do_not_change_the_id(fingerprints):
    with_terraform, without = fingerprints
    assert not [name for name in with_terraform["env"] if name in TERRAFORM]
    text = json.dumps(with_terraform)
    assert [v for v in TERRAFORM.values() if len(v) > 2 and v in text] == []
    assert with_terraform["fingerprint_id"] == without["fingerprint_id"]
    assert "TF_CONFIG" in with_terraform["env"]  # TensorFlow's own variable is still recorded


def test_direct_url_tokens_never_reach_the_fingerprint(fingerprints):
    """Even unredacted (what ``record --no-redact`` and the history store)."""
    entry = fingerprints[0]["packages"]["leaky-pkg"]
    assert entry["direct_url"]["url"] == (
        "https://pkgs.example.com/[redacted]/simple/leaky-pkg/leaky_pkg-1.0.tar.gz"
        "?access_token=[redacted]")


def test_report_holds_no_terraform_value_token_cluster_host_or_other_users_folder(leaky_env):
    proc = envaudit_on_host("report", env=leaky_env)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "| TF_CONFIG |" in text and "leaky-pkg" in text  # both sections are in the report
    assert "| CUDA_CACHE_PATH |" in text and "| hostname | [hostname] |" in text
    leaks = [*TERRAFORM.values(), PATH_TOKEN, QUERY_TOKEN, "chief-0", "worker-1", "10.1.2.3",
             "corp.example.com", "carol", "dave", HOST]
    assert [leak for leak in leaks if len(leak) > 2 and leak in text] == []
    assert "[host]:2222" in text
    assert "/data/[user]/cuda/lib64:/scratch/[user]/lib:/usr/lib" in text
    assert "/mnt/[hostname]/cuda-cache" in text  # the name took its domain with it
