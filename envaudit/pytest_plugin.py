"""envaudit's pytest plugin (entry point ``pytest11``): the ``envaudit_check`` fixture, the options
``--envaudit-golden PATH`` and ``--envaudit-record``, the ini option ``envaudit_golden``, and a
summary at the end of a session whose tests called it.

``envaudit_check()`` checks the canary against the session's golden; ``envaudit_check(model=...,
golden=...)`` the user's own model. A check that passes (identical or equivalent; with
``strict=True`` identical only) returns the ``CheckResult``; any other fails the test with the
check's headline (``pytest_gate.py`` does the work, ``render/pytest_text.py`` the words).

Constraints for the next editor: pytest loads this module in every session of an environment
where envaudit is installed, envaudit's own test suite included. Importing it must cost nothing
(the standard library and pytest only: no NumPy, no TensorFlow, no other envaudit module), and a
session that never calls the fixture must see no difference: no terminal line, no file, no hook
doing more than reading an attribute. The xdist hooks are optional (xdist may not be installed).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from envaudit.pytest_gate import Gate

_GATE = pytest.StashKey["Gate"]()
_STARTED = pytest.StashKey[float]()
# How the controller's start time reaches xdist workers (``workerinput``).
_STARTED_INPUT = "envaudit_started"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("envaudit", "envaudit: did the environment change the numbers")
    group.addoption("--envaudit-golden", metavar="PATH", default=None,
                    help="the golden bundle envaudit_check() checks when a test names none"
                         " (default: ini envaudit_golden, else envaudit's configuration, else"
                         " what 'envaudit check' uses)")
    group.addoption("--envaudit-record", action="store_true", default=False,
                    help="record (again) every golden the tests check, instead of checking;"
                         " each such test is skipped, saying what was recorded")
    parser.addini("envaudit_golden", default=None,
                  help="the golden bundle envaudit_check() checks when a test names none"
                       " (relative to this file's folder)")


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    started = workerinput.get(_STARTED_INPUT) if workerinput else None
    config.stash[_STARTED] = started if isinstance(started, float) else time.time()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist's controller: each worker knows when the session began (a golden recorded since
    then, by another worker, is not recorded again)."""
    node.workerinput[_STARTED_INPUT] = node.config.stash[_STARTED]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist's controller: a worker finished; keep what its checks found, for the summary."""
    entries = getattr(node, "workeroutput", {}).get("envaudit")
    if entries:
        _gate(node.config).receive(entries)


@pytest.fixture
def envaudit_check(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``envaudit_check(*, golden=None, model=None, inputs=None, tolerances=None,
    detections=None, modes=None, strict=False, confirm=True)``: check this environment against
    a golden bundle and return the ``CheckResult``; a check that does not pass fails the test
    with its headline. Without ``golden=``, the session's (``--envaudit-golden``, ini
    ``envaudit_golden``, envaudit's configuration, else what ``envaudit check`` uses). Relative
    paths are taken from the test file's folder. Under ``--envaudit-record`` the golden is
    recorded instead, and the test skipped."""
    from envaudit.errors import EnvauditError

    try:
        gate = _gate(request.config)
    except EnvauditError as exc:  # envaudit's configuration cannot be read
        pytest.fail(f"envaudit: {exc}", pytrace=False)
    return functools.partial(gate.check, request.node)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    gate = config.stash.get(_GATE, None)
    if gate is None or not gate.entries or hasattr(config, "workerinput"):
        return
    from envaudit.render.pytest_text import summary_lines

    terminalreporter.section("envaudit")
    for line in summary_lines(gate.entries):
        terminalreporter.write_line(line)


def _gate(config: pytest.Config) -> Gate:
    """The session's gate, made at its first use (the options are read then, not before)."""
    gate = config.stash.get(_GATE, None)
    if gate is None:
        from envaudit.pytest_gate import Gate, GateOptions

        options = GateOptions.of(config, config.stash.get(_STARTED, time.time()))
        gate = config.stash[_GATE] = Gate(options, getattr(config, "workeroutput", None))
    return gate
