"""What runs ON a worker: one ``envaudit check`` (and one ``envaudit fingerprint``) as fresh
subprocesses, in the worker process's own environment.

Constraints: a fresh subprocess, never the worker's interpreter, so that the node's environment
variables, libraries and devices take effect exactly as for a plain ``envaudit check`` there (the
worker process has Dask, threads and maybe TensorFlow state of its own). Each child runs isolated
from the worker's working folder and the user's site-packages (``_command``, ``_environment``): a
folder ``envaudit/``, ``numpy/`` or ``tensorflow/`` where the worker was started (a checkout) is
never imported; it starts in a private folder of its own, with ``-P`` and ``PYTHONSAFEPATH`` (so
nothing it starts puts a working folder on its path either) and without user site-packages.
PYTHONPATH and PYTHONHASHSEED are kept on purpose: they are the node's own configuration, as for
a plain ``envaudit check`` there (``-I`` would drop them). The answer leaves the node as JSON
bytes (``wire.as_json``), never as a pickled object.

The golden bundle arrives as bytes (file name -> bytes), is written to a private temporary folder
that is removed afterwards, and is verified there by the check itself (its checksums). Every
function here returns a plain dict and never raises: a failure is a value (``error``), so that
one broken node cannot hide the others. Output is capped, and redacted on the node unless
``redact`` is False: what leaves the node is already shareable. Nothing here trusts the caller's
file names: only plain names are written.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

# Plain bundle file names (manifest.json, stages.eager.npz, ...): no folders, no dot files.
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
MAX_BUNDLE_BYTES = 1 << 30
MAX_OUTPUT_CHARS = 4 << 20  # a check JSON is ~100 KiB; more is not envaudit's
STDERR_TAIL_CHARS = 2000
# The fingerprint takes ~0.2 s; it gets this share of the node's timeout at most.
FINGERPRINT_TIMEOUT = 60.0
_SAFE_PATH = ("-P",) if sys.version_info >= (3, 11) else ()
# Not passed to a child: a debug switch (tracebacks), an interactive prompt or startup file, a
# breakpoint hook (picks a function to call), the user site's location.
_DROPPED = frozenset({"ENVAUDIT_DEBUG", "PYTHONINSPECT", "PYTHONSTARTUP", "PYTHONBREAKPOINT",
                      "PYTHONUSERBASE"})


def run_check(bundle: Mapping[str, bytes], *, timeout: float, redact: bool = True,
              modes: Sequence[str] | None = None, device: str | None = None) -> dict[str, Any]:
    """``envaudit check --format json`` against ``bundle`` on this node, and this node's
    fingerprint; a plain dict (``device``, ``exit_code``, ``check``, ``fingerprint``
    (JSON texts or None), ``stderr``, ``seconds``, ``error``)."""
    start = time.monotonic()
    result = _empty(device)
    folder = None
    try:
        folder = tempfile.mkdtemp(prefix="envaudit-fleet-")
        golden = os.path.join(folder, "golden")
        problem = _write_bundle(bundle, golden)
        if problem:
            result["error"] = problem
            return result
        env = _environment(device)
        check_cmd = _command("check", "--golden", golden, "--format", "json")
        if modes:
            check_cmd += ["--modes", ",".join(modes)]
        if not redact:
            check_cmd.append("--no-redact")
        # Both at once: the fingerprint's fraction of a second hides behind the check.
        fingerprint = _start(_command("fingerprint", "--format", "json"), env, folder)
        check = _start(check_cmd, env, folder)
        code, out, err = _finish(check, timeout)
        result.update(exit_code=code, stderr=_tail(err, redact))
        if code is None:
            result["error"] = f"envaudit check did not finish within {timeout:g} s (killed)"
        elif code not in (0, 1):
            last = (err.strip().splitlines() or [f"exit {code}, no output"])[-1]
            result["error"] = f"envaudit check failed on the node: {_tail(last, redact)}"
        else:
            result["check"] = out[:MAX_OUTPUT_CHARS]
        fp_code, fp_out, _ = _finish(fingerprint, FINGERPRINT_TIMEOUT)
        if fp_code == 0:
            result["fingerprint"] = _redacted_fingerprint(fp_out) if redact else fp_out
    except Exception as exc:  # a value, never an exception: the other nodes still report
        result["error"] = f"the node could not run the check: {type(exc).__name__}: {exc}"
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
        result["seconds"] = time.monotonic() - start
    return result


def run_fingerprint(*, redact: bool = True, device: str | None = None) -> dict[str, Any]:
    """``envaudit fingerprint --format json`` on this node, as ``run_check``'s dict (no check)."""
    start = time.monotonic()
    result = _empty(device)
    folder = None
    try:
        folder = tempfile.mkdtemp(prefix="envaudit-fleet-")
        proc = _start(_command("fingerprint", "--format", "json"), _environment(device), folder)
        code, out, err = _finish(proc, FINGERPRINT_TIMEOUT)
        result.update(exit_code=code, stderr=_tail(err, redact))
        if code != 0:
            result["error"] = f"envaudit fingerprint failed on the node (exit {code})"
        else:
            result["fingerprint"] = _redacted_fingerprint(out) if redact else out
    except Exception as exc:
        result["error"] = f"the node could not capture its fingerprint: {type(exc).__name__}: {exc}"
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    result["seconds"] = time.monotonic() - start
    return result


def visible_gpus(nvml: Any = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The devices a subprocess of this worker would see, one run each: ``{"gpus": [{"device":
    the CUDA_VISIBLE_DEVICES value a run sets, "label": how people know it}], "notes": [...]}``.

    A GPU is selected by its UUID and a MIG instance by its ``MIG-`` UUID, never by NVML's index:
    NVML counts in PCI order, CUDA fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, so an index
    can name another board. The label stays nvidia-smi's index ("0", "0 MIG 1 (1g.10gb)"). The
    worker's own CUDA_VISIBLE_DEVICES is honoured: its entries are mapped to UUIDs where NVML can
    say which devices they are, else passed on as set, with a note that says why. None on a
    machine without an NVIDIA driver. ``nvml`` and ``environ``: for tests (recorded answers).
    """
    from envaudit.fingerprint import gpu, gpu_selection

    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    section = gpu.probe(nvml, environ)
    found = gpu_selection.units(section) if section.get("available") is True else []
    if visible is None:
        return {"gpus": [{"device": u.uuid, "label": u.label} for u in found], "notes": []}
    if not found:
        why = section.get("reason") or "NVML lists no GPU"
        as_set = [_as_set(n, entry) for n, entry in enumerate(gpu_selection.entries(visible))]
        notes = [f"CUDA_VISIBLE_DEVICES={visible} passed on as set: NVML cannot say which devices"
                 f" it names ({why})"] if as_set else []
        return {"gpus": as_set, "notes": notes}
    gpus, notes = [], []
    order = environ.get("CUDA_DEVICE_ORDER")
    for n, one in enumerate(gpu_selection.select(found, visible, order)):
        if one.reason or not one.identified:
            gpus.append(_as_set(n, one.entry))
            notes.append(f"CUDA_VISIBLE_DEVICES entry {one.entry} passed on as set: "
                         + (one.reason or f"{gpu_selection.UNORDERED}, and which of this host's"
                            " alike GPUs it names is not known"))
        else:
            gpus += [{"device": u.uuid, "label": u.label} for u in one.units]
    return {"gpus": gpus, "notes": notes}


def _as_set(position: int, entry: str) -> dict[str, str]:
    # An index is its own label; a UUID is not shown (a report may leave the machine).
    return {"device": entry, "label": entry if entry.isdigit() else f"entry {position}"}


# --- parts ------------------------------------------------------------------------------------


def _write_bundle(bundle: Mapping[str, bytes], folder: str) -> str | None:
    """Write the bundle's files into ``folder``; why not, or None."""
    if not isinstance(bundle, Mapping) or "manifest.json" not in bundle:
        return "the golden bundle sent to the node has no manifest.json"
    total = 0
    os.mkdir(folder, 0o700)
    for name, data in bundle.items():
        if not isinstance(name, str) or not _FILE_NAME.fullmatch(name) or \
                not isinstance(data, bytes):
            return f"the golden bundle sent to the node holds an unexpected entry {name!r:.80}"
        total += len(data)
        if total > MAX_BUNDLE_BYTES:
            return "the golden bundle sent to the node is larger than 1 GiB"
        fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
    return None


def _command(*args: str) -> list[str]:
    # -P: ``python -m`` puts no working folder on sys.path (Python 3.11+; on 3.10 the child's
    # working folder is the private one _start is given, which holds only the golden).
    return [sys.executable, *_SAFE_PATH, "-m", "envaudit", *args]


def _environment(device: str | None) -> dict[str, str]:
    """The worker's environment (the node's settings are what is checked), minus what would
    run other code in the child, plus the isolation that its own children inherit."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    env.update(PYTHONSAFEPATH="1", PYTHONNOUSERSITE="1")
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    return env


def _start(command: list[str], env: dict[str, str], cwd: str | None) -> subprocess.Popen[str]:
    # Its own session: a timeout kills the check and anything it started, not the worker.
    return subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace", start_new_session=True)


def _finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int | None, str, str]:
    """Exit code (None when killed at the timeout), stdout and stderr of ``proc``."""
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, 9)
        except OSError:
            proc.kill()
        out, err = proc.communicate()
        return None, out, err


def _tail(text: str, redact: bool) -> str:
    text = text[-STDERR_TAIL_CHARS:]
    if not redact:
        return text
    from envaudit.fingerprint.redact import Redactor

    return Redactor.for_trees().text(text)


def _redacted_fingerprint(text: str) -> str | None:
    import json

    from envaudit.fingerprint.redact import redact

    try:
        data = json.loads(text)
    except ValueError:
        return None
    return json.dumps(redact(data)) if isinstance(data, dict) else None


def _empty(device: str | None) -> dict[str, Any]:
    # No host name: the driver names a node by its worker address, and a host name is redacted.
    return {"device": device, "exit_code": None, "check": None, "fingerprint": None,
            "stderr": "", "seconds": 0.0, "error": None}
