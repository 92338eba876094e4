"""A smoke test of the benchmark harness (benchmarks/): every scenario runs on tiny sizes against real
server processes. It proves the harness works; it asserts no speed.

`make test` does not install the bench group: the load generator then runs on websockets instead of
picows, /proc stands in for psutil, and python-socketio is compared only where it is installed.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import replace

import pytest

from benchmarks import report
from benchmarks.run import SMOKE, run_suite

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

KINDS = ("typed-ss", "starlette") + (("socketio",) if importlib.util.find_spec("socketio") else ())


def test_every_scenario_runs_on_tiny_sizes() -> None:
    redis = shutil.which("redis-server") is not None
    outcome = run_suite(replace(SMOKE, kinds=KINDS), redis=redis)
    medians = outcome["medians"]

    scenarios = {"idle", "echo1", "echo50", "broadcast5", "roomcast"} | ({"redis"} if redis else set())
    assert set(medians) == scenarios
    for scenario in scenarios:
        assert set(medians[scenario]) == set(KINDS), scenario
    for kind in KINDS:
        assert medians["echo50"][kind]["msgs_per_s"] > 0
        assert medians["broadcast5"][kind]["latency_p50_ms"] > 0
        assert medians["idle"][kind]["connects_per_s"] > 0

    table = "\n".join(report.table(medians, KINDS))
    assert "echo, 50 conns: msgs/s" in table
    assert "broadcast to 5: last receiver p50 ms" in table
    checked = {item["target"] for item in report.targets(medians)}
    assert "echo 50 conns msgs/s >= 0.85x Starlette" in checked
