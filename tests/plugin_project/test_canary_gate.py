"""The canary gate: this environment must give the numbers of the team's golden.

The golden is the session's (``--envaudit-golden``); ``GATE_DRIFT_GOLDEN`` names one recorded
before a setting moved, which a strict gate refuses. In this order, two xdist workers take two
tests each: each worker runs one passing check.
"""

import os

import pytest


@pytest.fixture(autouse=True)
def _worker(record_property):
    """Which xdist worker ran the test (in the JUnit XML), so a run can show both were used."""
    record_property("worker", os.environ.get("PYTEST_XDIST_WORKER", "main"))


def test_the_canary_matches_the_golden(envaudit_check):
    result = envaudit_check()
    assert result.verdict in ("identical", "equivalent")


def test_a_strict_gate_fails_after_a_setting_moved(envaudit_check):
    envaudit_check(golden=os.environ["GATE_DRIFT_GOLDEN"], modes=["eager"], strict=True)


def test_the_canary_matches_in_eager_mode(envaudit_check):
    result = envaudit_check(modes=["eager"])
    assert [m.mode for m in result.modes] == ["eager"]


def test_a_missing_golden_fails_saying_how_to_record(envaudit_check):
    envaudit_check(golden="no-such-golden")
