"""Reading a deployed Swarm stack: the resolved test stack file, whether every service converged,
each task's memory; pure functions over what the engine reports, so the logic that fails a broken
stack is tested without an engine (``test_convergence.py``)."""

from __future__ import annotations

import json
import re
import subprocess  # nosec B404 - the docker CLI
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

STACK_FILE = ROOT / "stack.yml"
OVERRIDE_FILE = Path(__file__).with_name("stack.override.yml")
UNITS = {
    "B": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "kB": 1000,
    "MB": 10**6,
    "GB": 10**9,
}


def deployable_stack_file(docker: str, env: Mapping[str, str], out: Path) -> Path:
    """stack.yml + the test override, resolved by ``docker stack config``, written to ``out``.

    Ingress ports are dropped: they need the routing mesh (IPVS), which this kernel lacks, and a
    compose override cannot remove a port entry (lists of ports merge by published port). The
    override's ``edge`` publishes the stack's ports in host mode instead.
    """
    resolved = subprocess.run(  # nosec B603 - fixed argv
        [docker, "stack", "config", "-c", str(STACK_FILE), "-c", str(OVERRIDE_FILE)],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert resolved.returncode == 0, resolved.stderr
    stack = yaml.safe_load(resolved.stdout)
    for service in stack["services"].values():
        ports = [p for p in service.get("ports", []) if p.get("mode") == "host"]
        if ports:
            service["ports"] = ports
        else:
            service.pop("ports", None)
    # resolved values are deployed as they are: escape their `$` from a second interpolation
    text = yaml.safe_dump(_escape_dollars(stack), sort_keys=False)
    out.write_text(text, encoding="utf-8")
    return out


def _escape_dollars(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_escape_dollars(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape_dollars(v) for k, v in value.items()}
    return value


# --- convergence ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskView:
    """One task as the engine reports it (``docker service ps`` / the tasks API)."""

    state: (
        str  # new, pending, ..., starting (health check not passed yet), running, complete, failed
    )
    desired: str  # running, shutdown, complete
    error: str = ""


@dataclass(frozen=True)
class ServiceView:
    """One service: its mode, how many tasks it wants, its tasks (current and past)."""

    mode: str  # replicated, global, replicated-job
    wanted: int  # replicas; nodes for global; completions for a job
    tasks: list[TaskView] = field(default_factory=list)


def problems(services: Mapping[str, ServiceView]) -> dict[str, str]:
    """What keeps each service from having converged (empty when the whole stack has).

    A task counts once Swarm reports it ``running``, which for a service with a health check means
    the check passed (until then the task is ``starting``); a job counts its ``complete`` tasks.
    """
    out: dict[str, str] = {}
    for name, service in sorted(services.items()):
        if service.mode == "replicated-job":
            done = sum(t.state == "complete" for t in service.tasks)
            if done < service.wanted:
                out[name] = _describe(f"{done}/{service.wanted} completed", service.tasks)
            continue
        running = sum(t.state == "running" and t.desired == "running" for t in service.tasks)
        if running != service.wanted:
            out[name] = _describe(f"{running}/{service.wanted} running", service.tasks)
    return out


def _describe(summary: str, tasks: Iterable[TaskView]) -> str:
    states = sorted({t.state for t in tasks if t.desired != "shutdown"}) or ["no task"]
    failed = [t for t in tasks if t.state in {"failed", "rejected", "shutdown"} and t.error]
    text = f"{summary} (tasks: {', '.join(states)}; {len(failed)} failed"
    return text + (f", last error: {failed[-1].error})" if failed else ")")


class StackNotConverged(AssertionError):
    """The stack did not converge in time."""


def wait_converged(
    read: Callable[[], Mapping[str, ServiceView]], timeout: float, poll: float = 2.0
) -> float:
    """Poll ``read`` until :func:`problems` is empty; the seconds it took.

    Raises:
        StackNotConverged: after ``timeout`` seconds, with every service's problem.
    """
    started = time.monotonic()
    while True:
        left = problems(read())
        if not left:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            lines = "\n".join(f"  {name}: {why}" for name, why in left.items())
            raise StackNotConverged(f"not converged after {timeout:.0f} s:\n{lines}")
        time.sleep(poll)


def service_view(service: dict[str, Any], tasks: list[dict[str, Any]], nodes: int) -> ServiceView:
    """A :class:`ServiceView` from the engine API's service and task objects."""
    mode = service["Spec"]["Mode"]
    if "Replicated" in mode:
        kind, wanted = "replicated", int(mode["Replicated"].get("Replicas", 1))
    elif "ReplicatedJob" in mode:
        kind, wanted = "replicated-job", int(mode["ReplicatedJob"].get("TotalCompletions", 1))
    else:
        kind, wanted = "global", nodes
    views = [
        TaskView(t["Status"]["State"], t["DesiredState"], t["Status"].get("Err", "")) for t in tasks
    ]
    return ServiceView(kind, wanted, views)


# --- memory ---------------------------------------------------------------------------------------
def to_bytes(text: str) -> int:
    """``"123.4MiB"`` (docker stats' units) in bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]+)\s*", text)
    assert match, text
    return int(float(match.group(1)) * UNITS[match.group(2)])


def memory_by_service(stats_lines: Iterable[str], stack: str) -> dict[str, int]:
    """Resident memory per service (the largest of its tasks) from ``docker stats --format json``.

    docker stats reports the cgroup's usage less the page cache the kernel can reclaim, which is
    what a memory limit has to hold.
    """
    out: dict[str, int] = {}
    for line in stats_lines:
        if not line.strip():
            continue
        row = json.loads(line)
        name = row["Name"]
        if not name.startswith(f"{stack}_"):
            continue
        service = name[len(stack) + 1 :].split(".", 1)[0]
        used = to_bytes(row["MemUsage"].split("/", 1)[0])
        out[service] = max(out.get(service, 0), used)
    return out
