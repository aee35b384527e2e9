"""Isolated environments built with uv, cached by package set, and the workload run inside them.

``ensure_env(pins)`` returns the python of an environment that holds exactly ``pins`` (wheels
only) plus envaudit itself (``own_copy``); ``run_workload`` runs ``python -m envaudit.workload``
there. A package change is confirmed when the golden bits come back in an environment that
restores the golden's versions (``packages.restored``).

Constraints for the next editor:

- Standard library and the ``uv`` package's ``find_uv_bin`` only; never TensorFlow. Every uv call
  has a timeout, and a failure becomes ``EnvBuildError`` whose message is one line that says why
  (uv's own error, ``uv_output``), for a cause's evidence.
- Nothing here touches the user's environment: uv only ever gets ``--python`` of a folder this
  module created. Installs are ``--only-binary :all:``, so no package's build script runs, and the
  pins are checked for shape once more before they reach uv's command line.
- The user's index configuration is respected: uv's own (``UV_*`` variables, the user's and the
  system's ``uv.toml``), and pip's index variables (``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``,
  ``PIP_FIND_LINKS``, ``PIP_CERT``) translated where uv's equivalent is not set. pip's
  configuration files are not read. uv runs in the cache folder, so no project's
  ``pyproject.toml`` chooses anything.
- No working folder chooses code: the workload child is started by ``workload.child.run_child``
  (``-s -P``, no ``PYTHON*`` variable but ``PYTHONHASHSEED``, in the private folder of its
  output), and an environment's python is asked about itself only with ``-I``.
- A folder is an environment only once complete (``cache``): built under a temporary name beside
  its final place, marker written last, renamed into place in one step. A killed build leaves only
  a temporary folder, removed by a later build once its process is gone; concurrent builders of
  one package set each build, the first rename wins and the others use the winner's environment.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from envaudit.environments import own_copy
from envaudit.environments.cache import (
    clear_cache,
    discard,
    env_folder,
    env_root,
    marker,
    new_build_folder,
    python_of,
    sweep,
    write_marker,
)
from envaudit.environments.packages import PackageSet, pin_problem
from envaudit.environments.uv_output import one_line, uv_reason
from envaudit.fingerprint.packages import normalize
from envaudit.workload.architecture import MODES
from envaudit.workload.child import run_child

__all__ = ["EnvBuildError", "clear_cache", "ensure_env", "env_root", "run_workload"]

PROBE_TIMEOUT_S = 60  # starting an environment's python and reading its metadata
# pip's index settings and uv's names for them (pip separates lists with spaces, uv find-links
# with commas); a pip setting is used only where none of uv's names is set.
_PIP_TO_UV = (("PIP_INDEX_URL", ("UV_INDEX_URL", "UV_DEFAULT_INDEX"), " "),
              ("PIP_EXTRA_INDEX_URL", ("UV_EXTRA_INDEX_URL", "UV_INDEX"), " "),
              ("PIP_FIND_LINKS", ("UV_FIND_LINKS",), ","),
              ("PIP_CERT", ("SSL_CERT_FILE",), " "))
_PROBE = ("import json, sys, sysconfig\nfrom importlib import metadata\n"
          "print(json.dumps({'prefix': sys.prefix, 'purelib': sysconfig.get_path('purelib'),"
          " 'versions': {d.metadata['Name']: d.version for d in metadata.distributions()"
          " if d.metadata['Name']}}))")


class EnvBuildError(Exception):
    """An environment could not be built; the message is one line saying why."""


def ensure_env(pins: PackageSet, progress: Callable[[str], None] = lambda _m: None,
               timeout: float = 900) -> Path:
    """The python of an environment with exactly ``pins`` and this envaudit: from the cache
    (``env_root()/<pins.key()>``, valid when its marker names these pins and its python runs) or
    built with uv within ``timeout`` seconds. Raises EnvBuildError (one line) when it cannot."""
    for name, version in pins.pins:
        problem = pin_problem(name, version)
        if problem:
            raise EnvBuildError(f"refusing to install {name}=={version}: {problem}")
    key = pins.key()
    short = key[:8]
    final = env_folder(key, progress)  # env_root()/key unless another user could have put it there
    python = _valid_python(final, pins)
    if python is not None:
        progress(f"using cached environment {short}")
        _refresh_envaudit(final, progress, short)
        return python
    uv = _uv_binary()
    started = time.monotonic()
    deadline = started + timeout
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        sweep(final.parent)
        build = new_build_folder(final.parent)
    except OSError as exc:
        raise EnvBuildError(one_line(f"cannot write the environment cache {final.parent}: {exc};"
                                     " set XDG_CACHE_HOME to a writable folder")) from None
    try:
        python = _build(uv, pins, build, final, deadline, lambda m: progress(
            f"building environment {short}: {m}"))
    except OSError as exc:
        raise EnvBuildError(one_line(f"building environment {short} failed: {exc}")) from None
    finally:
        if build.exists():
            discard(build)
    progress(f"environment {short} ready ({time.monotonic() - started:.0f} s)")
    return python


def _build(uv: str, pins: PackageSet, build: Path, final: Path, deadline: float,
           step: Callable[[str], None]) -> Path:
    step("creating a virtual environment")
    _run_uv(uv, ["venv", "--python", sys.executable, "--relocatable", "--no-project",
                 "--allow-existing", str(build)], build, deadline, "uv venv")
    if pins.pins:
        step(f"installing {' '.join(pins.requirements())}")
        _run_uv(uv, ["pip", "install", "--python", str(python_of(build)), "--only-binary",
                     ":all:", *pins.requirements()], build, deadline, "uv pip install")
    step("checking the installed versions")
    probe = _probe(python_of(build), deadline)
    _check_versions(pins, probe["versions"])
    site = Path(probe["purelib"])
    step("adding envaudit")
    own_copy.place(site)
    write_marker(build, final.name, [list(p) for p in pins.pins],
                 site_packages=str(site.relative_to(Path(probe["prefix"]))),
                 python=sys.version.split()[0], built_at=time.time())
    return _move_into_place(build, final, pins)


def run_workload(python: Path, out: Path, modes: Sequence[str], extra: Sequence[str] = (),
                 timeout: float = 600) -> Mapping[str, np.ndarray] | str:
    """Run ``python -m envaudit.workload OUT MODES *extra`` with an environment's python,
    isolated as ``workload.child`` says (no working folder, user site or ``PYTHON*`` variable
    chooses its code; ``ENVAUDIT_ASSETS`` at this process's verified assets). The arrays it wrote,
    or one line saying why there are none. ``out`` must be in a private folder: the child starts
    there."""
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        return f"unknown execution mode(s) {', '.join(unknown) or '(none)'}"
    folder = python.parent.parent
    built = marker(folder)
    if built is None:
        return f"{folder} is not an environment built by envaudit"
    short = folder.name[:8]
    stale = own_copy.differs(folder / built["site_packages"])
    if stale:
        return f"environment {short}: {stale}; call ensure_env again"
    try:
        proc = run_child(python, out, modes, extra, env=os.environ, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"the workload did not finish within {timeout:.0f} s in environment {short}"
    except OSError as exc:
        return one_line(f"the workload could not start in environment {short}: {exc}")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return one_line(f"the workload failed in environment {short} (exit {proc.returncode}):"
                        f" {last}")
    try:
        with np.load(out, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as exc:
        return one_line(f"the workload in environment {short} wrote no readable arrays: {exc}")


def _uv_binary() -> str:
    try:
        from uv import find_uv_bin
    except ImportError:
        raise EnvBuildError("uv is not installed; install it with 'pip install uv' (envaudit"
                            " builds the environments that restore golden packages with it)"
                            ) from None
    try:
        return find_uv_bin()
    except FileNotFoundError:
        raise EnvBuildError("the uv package is installed without its uv program; reinstall it"
                            " with 'pip install --force-reinstall uv'") from None


def _uv_environment() -> dict[str, str]:
    env = dict(os.environ)
    for pip_name, uv_names, separator in _PIP_TO_UV:
        value = env.get(pip_name, "").strip()
        if value and not any(env.get(n) for n in uv_names):
            env[uv_names[0]] = separator.join(value.split())
    return env


def _run_uv(uv: str, args: list[str], cwd: Path, deadline: float, what: str) -> None:
    """Run uv in ``cwd``, a folder envaudit made for this build: uv reads a ``uv.toml`` or
    ``pyproject.toml`` from its working folder and the folders above it, so it never starts
    in a folder someone else could have written (the cache root may be shared)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise EnvBuildError(f"{what} had no time left within the build's time limit")
    command = [uv, *args, "--color", "never", "--no-progress"]
    try:
        proc = subprocess.run(command, env=_uv_environment(), cwd=cwd, check=False,
                              capture_output=True, text=True, timeout=remaining)
    except subprocess.TimeoutExpired:
        raise EnvBuildError(f"{what} did not finish within the build's time limit (a slow or"
                            " unreachable package index?)") from None
    except OSError as exc:
        raise EnvBuildError(one_line(f"uv at {uv} cannot run ({exc.strerror or exc}); reinstall"
                                     " it with 'pip install --force-reinstall uv'")) from None
    if proc.returncode != 0:
        reason = uv_reason(proc.stderr) or f"exit status {proc.returncode}, no message"
        raise EnvBuildError(one_line(f"{what} failed: {reason}"))


def _probe(python: Path, deadline: float) -> dict[str, Any]:
    """What the environment's python says about itself (prefix, site-packages, versions)."""
    timeout = max(1.0, min(PROBE_TIMEOUT_S, deadline - time.monotonic()))
    try:
        proc = subprocess.run([str(python), "-I", "-c", _PROBE], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvBuildError(one_line(f"the environment's python does not run: {exc}")) from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvBuildError(one_line(f"the environment's python does not run: {last}"))
    return json.loads(proc.stdout)


def _check_versions(pins: PackageSet, installed: Mapping[str, str]) -> None:
    found = {normalize(name): version for name, version in installed.items()}
    for name, version in pins.pins:
        if _release(found.get(name)) != _release(version):
            raise EnvBuildError(f"uv finished but the environment has {name}"
                                f" {found.get(name, 'not installed')}, not {version}")


def _release(version: str | None) -> tuple[Any, ...]:
    """A version for equality: ``2.20`` and ``2.20.0`` are one release (PEP 440)."""
    if version is None:
        return ()
    match = re.match(r"(\d+(?:\.\d+)*)(.*)", version.lower())
    if not match:
        return (version.lower(),)
    numbers = [int(n) for n in match.group(1).split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return (*numbers, match.group(2))


def _valid_python(folder: Path, pins: PackageSet) -> Path | None:
    """The environment's python when ``folder`` is a finished environment of ``pins`` that
    runs."""
    built = marker(folder)
    if built is None or built.get("key") != folder.name \
            or built.get("pins") != [list(p) for p in pins.pins]:
        return None
    python = python_of(folder)
    try:
        proc = subprocess.run([str(python), "-I", "-c", "import sys; print(sys.prefix)"],
                              capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 or Path(proc.stdout.strip()).resolve() != folder.resolve():
        return None
    return python


def _move_into_place(build: Path, final: Path, pins: PackageSet) -> Path:
    """Rename the finished build to its final name. A concurrent builder that got there first
    wins; an environment of this key that no longer runs is replaced."""
    for _ in range(3):
        try:
            build.rename(final)
        except OSError:
            if not final.exists():
                raise
            winner = _valid_python(final, pins)
            if winner is not None:
                return winner
            if marker(final) is None:
                raise EnvBuildError(f"{final} is in the way and was not made by envaudit;"
                                    " move it elsewhere") from None
            discard(final)  # ours, but broken (its base python was removed, say)
            continue
        python = _valid_python(final, pins)
        if python is None:
            raise EnvBuildError(f"the environment built for {final.name[:8]} does not run once"
                                " moved into place")
        return python
    raise EnvBuildError(f"could not move the environment into {final}: it keeps being replaced")


def _refresh_envaudit(folder: Path, progress: Callable[[str], None], short: str) -> None:
    built = marker(folder)
    site = folder / built["site_packages"] if built else None
    if site is not None and own_copy.differs(site):
        progress(f"environment {short}: replacing its copy of envaudit with this one")
        try:
            own_copy.place(site)
        except OSError as exc:
            raise EnvBuildError(one_line(f"could not refresh envaudit in {folder}: {exc}")
                                ) from None
