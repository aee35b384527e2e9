"""``envaudit report``: Markdown for a bug report, with hostname, user, home paths, GPU
identifiers and secrets redacted by default (the policy's rules: tests/test_redaction.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_fingerprint_gpu import FakeNVML, load_recording

from envaudit.fingerprint import Fingerprint, capture, gpu, redact
from envaudit.fingerprint.salt import installation_salt
from envaudit.render import fingerprint_md

ROOT = Path(__file__).resolve().parents[1]
HOST = "envaudit-report-host"
USER = "envaudit-alice"


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("homes") / "home-envaudit-alice"


def report(home: Path, *args: str) -> tuple[str, str]:
    """``envaudit report`` run as user ``USER`` with ``home``, on host ``HOST`` when a UTS
    namespace can be had (else on this host); returns (stdout, the hostname it ran under)."""
    env = {
        **os.environ, "HOME": str(home), "USER": USER, "LOGNAME": USER,
        "LD_LIBRARY_PATH": f"{home}/cuda/lib64:/usr/local/cuda/lib64",
        "CUDA_CACHE_PATH": f"{home}/.nv/ComputeCache",
        "XDG_CONFIG_HOME": str(home / ".config"),
    }
    command = [sys.executable, "-m", "envaudit", "report", *args]
    hostname = os.uname().nodename
    if subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode == 0:
        command = ["unshare", "--uts", "sh", "-c", f'hostname {HOST} && exec "$@"', "sh",
                   *command]
        hostname = HOST
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout, hostname


def test_report_has_no_hostname_user_or_home(home):
    text, hostname = report(home)
    assert not re.search(rf"(?<![\w.-]){re.escape(hostname)}(?![\w-])", text)
    assert USER not in text
    assert str(home) not in text
    assert "home-envaudit-alice" not in text
    assert "~/cuda/lib64:/usr/local/cuda/lib64" in text
    assert "| hostname | [hostname] |" in text
    assert text.rstrip("\n").splitlines()[-1] == f"redacted: {redact.REDACTED_FIELDS}"
    assert "hostname (with its domain)" in redact.REDACTED_FIELDS
    assert "| build_info.cuda_version | 12.5.1 |" in text  # the facts themselves stay


def test_no_redact_keeps_them(home, tmp_path):
    text, hostname = report(home, "--no-redact")
    assert f"| hostname | {hostname} |" in text
    assert f"{home}/cuda/lib64" in text
    assert "redacted:" not in text


def test_report_to_file(home, tmp_path):
    out = tmp_path / "report.md"
    stdout, _ = report(home, "-o", str(out))
    assert stdout == ""
    assert out.read_text().startswith("## Environment fingerprint `fp-")


def test_gpu_uuids_and_serials_become_a_salted_hash_stable_on_one_machine():
    recording = load_recording("h100_sxm5_x2.json")
    uuids = [d["nvmlDeviceGetUUID"] for d in recording["devices"]]
    serials = [d["nvmlDeviceGetSerial"] for d in recording["devices"]]
    data = capture().to_dict()
    data["gpu"] = gpu.probe(FakeNVML(recording), environ={"CUDA_VISIBLE_DEVICES": uuids[1]})
    data["env"]["CUDA_VISIBLE_DEVICES"] = uuids[1]
    fp = Fingerprint(data)

    first, second = fingerprint_md.render(fp, redact=True), fingerprint_md.render(fp, redact=True)
    assert first == second
    for identifier in uuids + serials:
        assert identifier not in first
    salt = installation_salt()
    assert f"| devices.0.uuid | {redact.hashed(uuids[0], salt)} |" in first
    assert f"| devices.1.serial | {redact.hashed(serials[1], salt)} |" in first
    assert f"| CUDA_VISIBLE_DEVICES | {redact.hashed(uuids[1], salt)} |" in first
    assert "| devices.0.name | NVIDIA H100 80GB HBM3 |" in first

    same = redact.redact(data, salt=b"salt-one")["gpu"]["devices"][0]["uuid"]
    assert same == redact.redact(data, salt=b"salt-one")["gpu"]["devices"][0]["uuid"]
    assert same != redact.redact(data, salt=b"salt-two")["gpu"]["devices"][0]["uuid"]
    assert uuids[0] in fingerprint_md.render(fp, redact=False)


def test_not_supported_serial_stays_a_reason_when_redacted():
    data = {"gpu": gpu.probe(FakeNVML(load_recording("rtx4090_geforce.json")), environ={})}
    redacted = redact.redact(data, salt=b"s")["gpu"]["devices"][0]
    assert redacted["serial"] == {"available": False,
                                  "reason": "nvmlDeviceGetSerial: Not Supported"}
    assert redacted["uuid"].startswith("redacted-")


def test_other_home_folders_and_root_are_redacted():
    redacted = redact.redact(
        {"env": {"LD_LIBRARY_PATH": "/home/bob/lib:/root/cuda:/opt/x", "LD_PRELOAD": "/rooted"}},
        salt=b"s",
    )
    value = redacted["env"]["LD_LIBRARY_PATH"]
    assert "bob" not in value and value.startswith("/home/[user]/lib:")
    assert "/root/cuda" not in value and value.endswith(":/opt/x")
    assert redacted["env"]["LD_PRELOAD"] == "/rooted"


