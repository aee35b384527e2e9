"""How envaudit runs LiteRT's interpreter: which kernels and how many threads, as settings.

A converted model's numbers depend on the kernels that compute it: LiteRT's XNNPACK delegate (its
default on the CPU), its built-in optimized kernels, or its reference kernels -- measured on the
canary, each gives other bits from the first convolution on -- and, with more than one thread,
possibly on how the work is split. Neither has an environment variable of LiteRT's own (it takes
them as interpreter arguments), so envaudit reads two of its own, set by the user or by
``--tflite-kernels`` / ``--tflite-threads``:

- ``ENVAUDIT_TFLITE_KERNELS``: ``xnnpack`` (default), ``builtin`` or ``reference``;
- ``ENVAUDIT_TFLITE_THREADS``: the interpreter's thread count (default: the runtime's own choice).

Being variables, they are what every setting is: recorded in the fingerprint (the settings table,
``settings.py``), shown in a fingerprint diff, and put back by a confirmation re-run, whose child
reads them when it builds its interpreter. A value that is not one of these is refused with one
line, never guessed.

Standard library only (``envaudit fingerprint`` and the CLI's parser may import it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from envaudit.errors import EnvauditError
from envaudit.settings import thread_limit

KERNELS_VARIABLE = "ENVAUDIT_TFLITE_KERNELS"
THREADS_VARIABLE = "ENVAUDIT_TFLITE_THREADS"
KERNELS = ("xnnpack", "builtin", "reference")
DEFAULT_KERNELS = "xnnpack"
# What each choice runs, in words (reports and --help).
KERNELS_WORDS = {
    "xnnpack": "the XNNPACK delegate (LiteRT's default on the CPU)",
    "builtin": "LiteRT's built-in optimized kernels, without the XNNPACK delegate",
    "reference": "LiteRT's reference kernels (BUILTIN_REF)",
}


@dataclass(frozen=True)
class InterpreterSettings:
    """The kernels and thread count an interpreter runs with (threads None: the runtime's own)."""

    kernels: str = DEFAULT_KERNELS
    threads: int | None = None

    @property
    def words(self) -> str:
        threads = "default threads" if self.threads is None else (
            f"{self.threads} thread{'s' if self.threads != 1 else ''}")
        return f"{self.kernels} kernels, {threads}"


def from_environment(env: Mapping[str, str] | None = None) -> InterpreterSettings:
    """The settings the variables give (``env``: this process's environment by default); a value
    that is not a choice is refused, saying which variable and what it may be."""
    env = os.environ if env is None else env
    kernels = env.get(KERNELS_VARIABLE, "").strip().lower() or DEFAULT_KERNELS
    if kernels not in KERNELS:
        raise EnvauditError(f"{KERNELS_VARIABLE}={env[KERNELS_VARIABLE]!r} is not one of"
                            f" {', '.join(KERNELS)}; set one of them or unset it")
    threads_text = env.get(THREADS_VARIABLE, "").strip()
    threads = parse_threads(threads_text, THREADS_VARIABLE) if threads_text else None
    return InterpreterSettings(kernels, threads)


def parse_threads(text: str, what: str = "--tflite-threads") -> int:
    """A thread count from 1 to what a re-run may set here (``settings.thread_limit``)."""
    most = thread_limit()
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise EnvauditError(f"{what} must be a thread count from 1 to {most}, not {text!r}")
    return int(text)


def apply(kernels: str | None, threads: int | None,
          env: dict[str, str] | None = None) -> None:
    """Set the variables for this process (and the children it starts) as the CLI's
    ``--tflite-kernels`` / ``--tflite-threads`` ask; None leaves a variable as it is."""
    env = os.environ if env is None else env  # type: ignore[assignment]
    if kernels is not None:
        if kernels not in KERNELS:
            raise EnvauditError(f"--tflite-kernels must be one of {', '.join(KERNELS)}")
        env[KERNELS_VARIABLE] = kernels
    if threads is not None:
        env[THREADS_VARIABLE] = str(parse_threads(str(threads)))
