"""The host agent: psutil host metrics and, with the Docker socket mounted, per-container CPU/RAM.

Each sample is one ``host`` document (CPU, load, RAM, swap, disk usage and I/O rates, network rates,
process count), one ``core`` document per CPU core and one ``container`` document per running
container. Documents go through the event sink (so an Elasticsearch restart only delays them: they
wait in the spool) or, with ``ES_URL`` unset, into the embedded SQLite store.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from core.monitoring.events import hostname, utc_iso

log = logging.getLogger(__name__)
DOCKER_SOCKET = Path("/var/run/docker.sock")


@dataclass(frozen=True)
class Counters:
    """Cumulative I/O counters of the previous sample, for rates."""

    at: float
    read_bytes: int
    write_bytes: int
    in_bytes: int
    out_bytes: int


def _rate(now: int, before: int, seconds: float) -> float:
    return max(0.0, (now - before) / seconds) if seconds > 0 else 0.0


def _counters() -> Counters:
    disk = psutil.disk_io_counters()
    net = psutil.net_io_counters()
    return Counters(
        at=time.monotonic(),
        read_bytes=int(disk.read_bytes) if disk else 0,
        write_bytes=int(disk.write_bytes) if disk else 0,
        in_bytes=int(net.bytes_recv),
        out_bytes=int(net.bytes_sent),
    )


def collect_host(
    previous: Counters | None = None, disk_path: str = "/"
) -> tuple[list[dict[str, Any]], Counters]:
    """One sample: the host document plus one document per core, and the counters for next time.

    Call it once before the first real sample: CPU percentages and rates are measured since the
    previous call.
    """
    now = _counters()
    seconds = now.at - previous.at if previous else 0.0
    before = previous or now
    stamp = utc_iso()
    cores = psutil.cpu_percent(percpu=True)
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    disk = psutil.disk_usage(disk_path)
    load = psutil.getloadavg()
    host: dict[str, Any] = {
        "@timestamp": stamp,
        "metricset": {"name": "host"},
        "system": {
            "cpu": {"pct": float(sum(cores) / len(cores)) if cores else 0.0, "cores": len(cores)},
            "load": {"1": load[0], "5": load[1], "15": load[2]},
            "memory": {
                "total": int(memory.total),
                "used": int(memory.total - memory.available),
                "available": int(memory.available),
                "pct": float(memory.percent),
            },
            "swap": {"total": int(swap.total), "used": int(swap.used), "pct": float(swap.percent)},
            "disk": {
                "path": disk_path,
                "total": int(disk.total),
                "used": int(disk.used),
                "free": int(disk.free),
                "pct": float(disk.percent),
            },
            "diskio": {
                "read_bytes": now.read_bytes,
                "write_bytes": now.write_bytes,
                "read_bps": _rate(now.read_bytes, before.read_bytes, seconds),
                "write_bps": _rate(now.write_bytes, before.write_bytes, seconds),
            },
            "network": {
                "in_bytes": now.in_bytes,
                "out_bytes": now.out_bytes,
                "in_bps": _rate(now.in_bytes, before.in_bytes, seconds),
                "out_bps": _rate(now.out_bytes, before.out_bytes, seconds),
            },
            "process": {"count": len(psutil.pids())},
        },
    }
    per_core = [
        {
            "@timestamp": stamp,
            "metricset": {"name": "core"},
            "system": {"core": {"id": index, "pct": float(value)}},
        }
        for index, value in enumerate(cores)
    ]
    return [host, *per_core], now


def host_summary(document: dict[str, Any]) -> dict[str, Any]:
    """``GET /monitoring/host``'s shape of one host document: time, host, CPU/RAM/disk/swap %."""
    system = document.get("system", {})
    return {
        "at": document.get("@timestamp"),
        "host": document.get("host", {}).get("name"),
        "cpu_percent": system.get("cpu", {}).get("pct"),
        "memory_percent": system.get("memory", {}).get("pct"),
        "disk_percent": system.get("disk", {}).get("pct"),
        "swap_percent": system.get("swap", {}).get("pct"),
        "document": document,
    }


def live_host(seconds: float = 0.5, disk_path: str = "/") -> dict[str, Any]:
    """A sample taken now by the calling process (psutil), in :func:`host_summary`'s shape with
    ``source: "live"``: CPU is measured over ``seconds`` (blocks that long)."""
    _, first = collect_host(disk_path=disk_path)
    time.sleep(seconds)
    documents, _ = collect_host(first, disk_path=disk_path)
    host = {**documents[0], "host": {"name": hostname()}}
    return {**host_summary(host), "source": "live"}


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (the Docker Engine API), standard library only."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class DockerStats:
    """Per-container CPU and memory from the Docker Engine API on its Unix socket."""

    def __init__(self, path: Path = DOCKER_SOCKET, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    @property
    def available(self) -> bool:
        """Whether the socket is mounted."""
        return self.path.is_socket()

    def _get(self, url: str) -> Any:
        conn = _UnixHTTPConnection(self.path, self.timeout)
        try:
            conn.request("GET", url)
            answer = conn.getresponse()
            body = answer.read()
            if answer.status >= 400:
                raise OSError(f"docker API {url}: {answer.status} {body[:200]!r}")
            return json.loads(body)
        finally:
            conn.close()

    def collect(self) -> list[dict[str, Any]]:
        """One ``container`` document per running container."""
        docs: list[dict[str, Any]] = []
        for item in self._get("/containers/json"):
            cid = str(item["Id"])
            stats = self._get(f"/containers/{cid}/stats?stream=false")
            docs.append(container_document(item, stats))
        return docs


def container_document(item: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    """A ``container`` document from ``/containers/json`` and ``/containers/{id}/stats``.

    CPU % is Docker's own formula (``docker stats``): container CPU delta over system CPU delta,
    times the online CPUs; memory excludes the page cache (``inactive_file``), like
    ``docker stats``.
    """
    cpu, pre = stats.get("cpu_stats", {}), stats.get("precpu_stats", {})
    cpu_delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get(
        "total_usage", 0
    )
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or [1])
    cpu_pct = (cpu_delta / system_delta) * online * 100.0 if system_delta > 0 else 0.0
    memory = stats.get("memory_stats", {})
    cache = memory.get("stats", {}).get("inactive_file", 0)
    usage = max(0, int(memory.get("usage", 0)) - int(cache))
    limit = int(memory.get("limit", 0))
    names = item.get("Names") or [""]
    return {
        "@timestamp": utc_iso(),
        "metricset": {"name": "container"},
        "container": {
            "id": str(item["Id"])[:12],
            "name": str(names[0]).lstrip("/"),
            "image": {"name": item.get("Image", "")},
            "cpu": {"pct": float(cpu_pct)},
            "memory": {
                "usage": usage,
                "limit": limit,
                "pct": float(usage / limit * 100.0) if limit else 0.0,
            },
        },
    }


def run_agent(
    emit: Callable[[list[dict[str, Any]]], None],
    interval: float = 10.0,
    iterations: int | None = None,
    docker: DockerStats | None = None,
    stop: threading.Event | None = None,
    disk_path: str = "/",
) -> int:
    """Sample every ``interval`` seconds and hand the documents to ``emit``.

    Args:
        emit: where documents go (the event sink's ``submit`` or the SQLite store).
        interval: seconds between samples.
        iterations: stop after this many samples (``None``: until ``stop`` is set).
        docker: per-container stats source (skipped when its socket is absent).
        stop: set it to stop the loop (e.g. from a signal handler).
        disk_path: the filesystem whose usage is reported.

    Returns:
        The number of samples taken.
    """
    stop = stop or threading.Event()
    _, counters = collect_host(None, disk_path)  # primes CPU percentages and rates
    taken = 0
    name = hostname()
    while not stop.wait(interval if taken or iterations is None else min(interval, 1.0)):
        docs, counters = collect_host(counters, disk_path)
        if docker is not None and docker.available:
            try:
                docs.extend(docker.collect())
            except (OSError, ValueError, KeyError) as exc:
                log.warning("agent: docker stats unavailable: %s", exc)
        for doc in docs:
            doc.setdefault("host", {"name": name})
        try:
            emit(docs)
        except Exception:  # pylint: disable=broad-exception-caught  # the agent must keep running
            log.exception("agent: could not store a sample")
        taken += 1
        if iterations is not None and taken >= iterations:
            break
    return taken
