"""Which environment setting moves TensorFlow's numbers on the machine running the tests.

Many tests need "an environment change that moves the numbers" (a check that drifts, a cause to
confirm). No one setting does that everywhere: TensorFlow switches oneDNN on by default only on
CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX. There ``TF_ENABLE_ONEDNN_OPTS=0`` swaps
oneDNN's kernels for Eigen's and moves numbers, and ``=1`` is the default; on an AVX2-only CPU
``=0`` is the default and changes nothing, and ``=1`` is the change. So the tests ask, once per
session, on this machine: ``probe`` runs a small raw-TensorFlow canary in fresh subprocesses with
the variable unset, ``=0`` and ``=1``, and ``decide_onednn`` names the value whose bytes differ
from the default's. Where the switch moves nothing, the ``FALLBACKS`` are tried one at a time
(each a setting envaudit records and a re-run may put back) and the first that moves the canary
is used; where none does, the tests that need one are skipped with the reason.

Constraints for the next editor:

- ``decide_onednn`` and ``decide_fallback`` stay pure (bytes in, a ``Decision`` out) so that the
  branch of the other kind of CPU is unit-tested on this one.
- The canary must keep containing an operation that oneDNN and Eigen round differently: the long
  inner product ([8, 8192] @ [8192, 8]) does on AVX-512 (measured); the convolutions do not there,
  and stay because they may elsewhere. It computes everything twice and refuses to answer when the
  two disagree, so a nondeterministic run is never read as "this setting moves numbers".
- The subprocesses get the tests' hermetic environment (``cli_env``), isolated from the working
  folder (``-I``), and cost one TensorFlow import each; the three run at once.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

ONEDNN_SWITCH = "TF_ENABLE_ONEDNN_OPTS"
# Tried in order where the oneDNN switch moves nothing: capping oneDNN to SSE4.1 moves the canary
# wherever oneDNN runs by default (measured on AVX-512); one thread per op changes how a
# reduction is split wherever the default uses several.
FALLBACKS: tuple[tuple[str, str], ...] = (("ONEDNN_MAX_CPU_ISA", "SSE41"),
                                          ("TF_NUM_INTRAOP_THREADS", "1"))
CANARY_TIMEOUT = 300  # one TensorFlow import and a few small ops, on a loaded 2-core machine

CANARY = """
import hashlib, os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf

def operands():
    rng = np.random.default_rng(20250601)
    def values(*shape):
        return tf.constant(rng.uniform(-1.0, 1.0, shape).astype(np.float32))
    return {"long": (values(8, 8192), values(8192, 8)),
            "conv": (values(1, 16, 16, 8), values(3, 3, 8, 16)),
            "stem": (values(1, 64, 64, 3), values(3, 3, 3, 16))}

def ops(o):
    return [tf.matmul(*o["long"]), tf.nn.conv2d(*o["conv"], 1, "SAME"),
            tf.nn.conv2d(*o["stem"], 2, "SAME")]

def digest():
    o = operands()
    h = hashlib.sha256()
    for t in [*ops(o), *tf.function(ops)(o)]:  # eager, then a graph
        h.update(t.numpy().tobytes())
    return h.hexdigest()

def onednn():
    try:  # TensorFlow's own answer: is oneDNN on in this process?
        from tensorflow.python.util import _pywrap_util_port
        return "on" if _pywrap_util_port.IsMklEnabled() else "off"
    except Exception:
        return "unknown"

first, second = digest(), digest()
print(first if first == second else "nondeterministic", onednn())
"""


@dataclass(frozen=True)
class Knob:
    """A setting that moves numbers here: ``name=value``, departing from ``default`` (None: the
    variable unset, as in the tests' hermetic environment)."""

    name: str
    value: str
    default: str | None = None

    @property
    def env(self) -> dict[str, str]:
        return {self.name: self.value}

    @property
    def path(self) -> str:
        """The fingerprint path of the variable, as a check names its change."""
        return f"env.{self.name}"

    @property
    def change(self) -> str:
        """The change as envaudit words it in causes and history: ``env.X: unset -> '0'``."""
        before = "unset" if self.default is None else repr(self.default)
        return f"{self.path}: {before} -> {self.value!r}"

    @property
    def switches_onednn(self) -> bool:
        """Whether the knob swaps oneDNN's kernels for Eigen's (or back): then only TensorFlow's
        own kernels move, never XLA's generated code."""
        return self.name == ONEDNN_SWITCH


@dataclass(frozen=True)
class Decision:
    """A knob, or None with the reason; ``stable`` is False when the canary's bytes changed with
    no setting changed, so no other setting can be judged by them either. ``onednn_default`` is
    TensorFlow's own answer, with the switch unset, to "is oneDNN on?" (None: it gave none)."""

    knob: Knob | None
    reason: str
    stable: bool = True
    onednn_default: bool | None = None


def decide_onednn(unset: bytes, off: bytes, on: bytes) -> Decision:
    """The oneDNN switch's value that moves numbers, from the canary's bytes with the variable
    unset, ``=0`` and ``=1``."""
    if off != unset and on == unset:
        return Decision(Knob(ONEDNN_SWITCH, "0"), f"oneDNN is on by default here; {ONEDNN_SWITCH}"
                        "=0 moves the canary")
    if on != unset and off == unset:
        return Decision(Knob(ONEDNN_SWITCH, "1"), f"oneDNN is off by default here (an AVX2-only"
                        f" CPU, or no oneDNN by default); {ONEDNN_SWITCH}=1 moves the canary")
    if off != unset:  # and on != unset: the default is neither value, so the bytes are unstable
        return Decision(None, f"the canary gives other bytes with {ONEDNN_SWITCH} unset than"
                        " with =0 and with =1: its results differ between processes here",
                        stable=False)
    return Decision(None, f"{ONEDNN_SWITCH}=0 and =1 give the default's bytes here")


def decide_fallback(unset: bytes, tried: Sequence[tuple[str, str, bytes]],
                    why_not_onednn: str) -> Decision:
    """The first of ``tried`` (name, value, canary bytes) that moves the canary."""
    for name, value, result in tried:
        if result != unset:
            return Decision(Knob(name, value), f"{why_not_onednn}; {name}={value} moves the"
                            " canary")
    names = ", ".join(f"{name}={value}" for name, value, _ in tried)
    return Decision(None, f"{why_not_onednn}, and so do {names}")


def _start(python: str, env: Mapping[str, str], folder: str) -> subprocess.Popen[str]:
    return subprocess.Popen([python, "-I", "-c", CANARY], env=dict(env), cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _answer(proc: subprocess.Popen[str], what: str) -> tuple[bytes, bool | None]:
    """The canary's digest, and whether TensorFlow said oneDNN was on (None: unknown)."""
    try:
        out, err = proc.communicate(timeout=CANARY_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"the oneDNN canary ({what}) ran past {CANARY_TIMEOUT} s") from None
    words = out.split()
    if proc.returncode != 0 or len(words) != 2 or words[0] == "nondeterministic":
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the oneDNN canary ({what}) gave no stable answer: exit"
                           f" {proc.returncode}, {out.strip() or last}")
    return words[0].encode(), {"on": True, "off": False}.get(words[1])


def _with(env: Mapping[str, str], name: str, value: str | None) -> dict[str, str]:
    changed = {k: v for k, v in env.items() if k != name}
    if value is not None:
        changed[name] = value
    return changed


def probe(env: Mapping[str, str], python: str = sys.executable) -> Decision:
    """Run the canary under ``env``, each time with one variable set or removed, and decide.
    Raises RuntimeError when TensorFlow cannot run the canary at all."""
    base = dict(env)
    with tempfile.TemporaryDirectory(prefix="envaudit-knob-") as folder:
        procs = {value: _start(python, _with(base, ONEDNN_SWITCH, value), folder)
                 for value in (None, "0", "1")}
        answers = {value: _answer(proc, f"{ONEDNN_SWITCH}={value or 'unset'}")
                   for value, proc in procs.items()}
        results = {value: digest for value, (digest, _) in answers.items()}
        decision = decide_onednn(results[None], results["0"], results["1"])
        if decision.knob is None and decision.stable:
            tried: list[tuple[str, str, bytes]] = []
            for name, value in FALLBACKS:
                proc = _start(python, _with(base, name, value), folder)
                tried.append((name, value, _answer(proc, f"{name}={value}")[0]))
                if tried[-1][2] != results[None]:
                    break
            decision = decide_fallback(results[None], tried, decision.reason)
    return replace(decision, onednn_default=answers[None][1])
