"""The logic that decides whether the live stack converged (no engine needed): a service whose
health check never passes, a task that keeps failing, or a job that never completes fails it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.stack.swarm import (
    ServiceView,
    StackNotConverged,
    TaskView,
    memory_by_service,
    problems,
    service_view,
    to_bytes,
    wait_converged,
)

RUNNING = TaskView("running", "running")


def healthy() -> dict[str, ServiceView]:
    return {
        "api": ServiceView("replicated", 2, [RUNNING, RUNNING]),
        "agent": ServiceView("global", 1, [RUNNING]),
        "setup": ServiceView("replicated-job", 1, [TaskView("complete", "complete")]),
        "kibana": ServiceView("replicated", 0, []),
    }


def test_a_converged_stack_has_no_problem() -> None:
    assert not problems(healthy())


def test_a_health_check_that_never_passes_is_a_problem() -> None:
    """Swarm keeps such a task `starting` (then kills and replaces it): never `running`."""
    services = healthy()
    services["broken"] = ServiceView(
        "replicated",
        1,
        [
            TaskView("starting", "running"),
            TaskView(
                "failed", "shutdown", "task: non-zero exit (137): dockerexec: unhealthy container"
            ),
        ],
    )
    found = problems(services)
    assert set(found) == {"broken"}
    assert "0/1 running" in found["broken"] and "unhealthy container" in found["broken"]


def test_missing_replicas_failed_jobs_and_stopping_tasks_are_problems() -> None:
    services = healthy()
    # one replica down; a running task that Swarm is stopping does not count
    services["api"] = ServiceView("replicated", 2, [RUNNING, TaskView("running", "shutdown")])
    services["setup"] = ServiceView(
        "replicated-job", 1, [TaskView("failed", "shutdown", "task: non-zero exit (1)")]
    )
    found = problems(services)
    assert set(found) == {"api", "setup"}
    assert "1/2 running" in found["api"]
    assert "0/1 completed" in found["setup"] and "non-zero exit (1)" in found["setup"]


def test_wait_converged_raises_with_every_problem() -> None:
    broken = {"ui": ServiceView("replicated", 1, [TaskView("starting", "running")])}
    with pytest.raises(StackNotConverged, match=r"ui: 0/1 running \(tasks: starting"):
        wait_converged(lambda: broken, timeout=0.2, poll=0.05)
    turns = iter([broken, healthy()])
    assert wait_converged(lambda: next(turns), timeout=5, poll=0.01) >= 0


def test_service_view_reads_the_engine_api_objects() -> None:
    """Field names as the engine API returns them (docker service inspect / the tasks list)."""
    job = {"Spec": {"Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}}}
    task = {"Status": {"State": "complete", "Err": ""}, "DesiredState": "complete"}
    assert service_view(job, [task], nodes=1) == ServiceView(
        "replicated-job", 1, [TaskView("complete", "complete")]
    )
    glob = {"Spec": {"Mode": {"Global": {}}}}
    assert service_view(glob, [], nodes=3).wanted == 3
    scaled = {"Spec": {"Mode": {"Replicated": {"Replicas": 0}}}}
    assert service_view(scaled, [], nodes=1).wanted == 0


def test_memory_by_service_takes_each_service_s_largest_task(tmp_path: Path) -> None:
    lines = [
        json.dumps({"Name": "churntest_api.1.abc", "MemUsage": "300.5MiB / 1GiB"}),
        json.dumps({"Name": "churntest_api.2.def", "MemUsage": "310MiB / 1GiB"}),
        json.dumps({"Name": "churntest_agent.xyz.ghi", "MemUsage": "60MiB / 256MiB"}),
        json.dumps({"Name": "someone-else.1", "MemUsage": "1GiB / 2GiB"}),
        "",
    ]
    assert memory_by_service(lines, "churntest") == {
        "api": to_bytes("310MiB"),
        "agent": 60 << 20,
    }
    assert to_bytes("1.5GiB") == 3 << 29 and to_bytes("12kB") == 12_000
    del tmp_path
