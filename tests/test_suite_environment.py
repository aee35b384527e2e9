"""The test suite itself, on any x86-64 machine and from any shell.

Which setting moves numbers differs between CPUs: ``decide_onednn`` is fed the canary's bytes of
each kind of CPU, so the AVX2-only branch is proven on an AVX-512 machine and the other way round;
the probe's answer on this machine is held against TensorFlow's own. The hermetic environment is
checked in a real interpreter started under a shell's worth of stray variables (Terraform's, a
oneDNN cap, the oneDNN switch, envaudit's and rich's own) and an OpenBLAS kernel choice, which it
must keep.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from moving_knob import Knob, decide_fallback, decide_onednn

DEFAULT, OTHER, THIRD = b"a" * 64, b"b" * 64, b"c" * 64


def test_on_a_cpu_where_onednn_is_on_by_default_switching_it_off_is_the_knob():
    """AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX: =1 is the default's bytes, =0 moves them."""
    decision = decide_onednn(unset=DEFAULT, off=OTHER, on=DEFAULT)
    assert decision.knob == Knob("TF_ENABLE_ONEDNN_OPTS", "0")
    assert decision.knob.change == "env.TF_ENABLE_ONEDNN_OPTS: unset -> '0'"
    assert decision.knob.env == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert decision.knob.switches_onednn and "on by default" in decision.reason


def test_on_an_avx2_only_cpu_switching_onednn_on_is_the_knob():
    """oneDNN off by default: =0 is inert (the default's bytes), =1 is the change."""
    decision = decide_onednn(unset=DEFAULT, off=DEFAULT, on=OTHER)
    assert decision.knob == Knob("TF_ENABLE_ONEDNN_OPTS", "1")
    assert decision.knob.change == "env.TF_ENABLE_ONEDNN_OPTS: unset -> '1'"
    assert decision.knob.path == "env.TF_ENABLE_ONEDNN_OPTS"
    assert "off by default" in decision.reason


def test_a_canary_that_differs_from_itself_picks_no_knob():
    decision = decide_onednn(unset=DEFAULT, off=OTHER, on=THIRD)
    assert (decision.knob, decision.stable) == (None, False)
    assert "differ between processes" in decision.reason


def test_where_the_switch_moves_nothing_the_first_fallback_that_moves_is_the_knob():
    inert = decide_onednn(unset=DEFAULT, off=DEFAULT, on=DEFAULT)
    assert (inert.knob, inert.stable) == (None, True)
    tried = [("ONEDNN_MAX_CPU_ISA", "SSE41", DEFAULT), ("TF_NUM_INTRAOP_THREADS", "1", OTHER)]
    decision = decide_fallback(DEFAULT, tried, inert.reason)
    assert decision.knob == Knob("TF_NUM_INTRAOP_THREADS", "1")
    assert not decision.knob.switches_onednn
    nothing = decide_fallback(DEFAULT, tried[:1], inert.reason)
    assert nothing.knob is None and "ONEDNN_MAX_CPU_ISA=SSE41" in nothing.reason


def test_the_probe_here_agrees_with_tensorflow(knob_decision):
    """Raw TensorFlow in fresh processes: the knob is =0 exactly where TensorFlow says oneDNN is
    on by default, and =1 where it is off."""
    knob = knob_decision.knob
    print("moving knob:", knob, knob_decision.reason)
    assert knob is not None, knob_decision.reason
    if knob_decision.onednn_default is not None and knob.switches_onednn:
        assert knob.value == ("0" if knob_decision.onednn_default else "1")


AMBIENT = {
    "TF_CLI_CONFIG_FILE": "/root/.terraformrc", "TF_VAR_x": "1",  # Terraform, not TensorFlow
    "ONEDNN_MAX_CPU_ISA": "AVX2", "TF_ENABLE_ONEDNN_OPTS": "1", "XLA_FLAGS": "--xla_dump_to=/x",
    "OMP_NUM_THREADS": "1", "ENVAUDIT_HISTORY": "/nonexistent/h.sqlite", "FORCE_COLOR": "1",
    "DASK_SCHEDULER_ADDRESS": "tcp://10.0.0.1:8786",
}
KEPT = {"OPENBLAS_CORETYPE": "Haswell", "LD_LIBRARY_PATH": "/opt/lib"}

INSIDE = """
import json, os, sys
sys.path.insert(0, "tests")
import conftest
from envaudit.fingerprint import capture
before = dict(os.environ)
conftest.pytest_configure(None)
try:
    print(json.dumps({"before": before, "environ": dict(os.environ),
                      "env": capture().to_dict()["env"]}))
finally:
    conftest.pytest_unconfigure(None)
"""


def test_the_hermetic_environment_strips_a_shells_strays_and_keeps_openblas(tmp_path):
    """A real interpreter started under a user's shell: what the tests and the fingerprints
    they record see after the suite's set-up."""
    root = Path(__file__).resolve().parents[1]
    ambient = {"PATH": "/usr/bin:/bin", **AMBIENT, **KEPT}
    proc = subprocess.run([sys.executable, "-c", INSIDE], env=ambient, cwd=root,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    # The precondition: the strays really reached the interpreter, as a shell would pass them.
    assert AMBIENT.items() <= seen["before"].items()
    assert not set(AMBIENT) & set(seen["environ"]), "a stray variable survived the set-up"
    assert KEPT.items() <= seen["environ"].items()
    assert seen["env"] == KEPT  # the only variables a fingerprint in the tests records
    assert seen["environ"]["HOME"].split("/")[-1].startswith("envaudit-tests-home-")
