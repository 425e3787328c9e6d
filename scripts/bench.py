"""Benchmark the API against ``mlflow models serve`` on the same champion (``make bench``).

Starts, on free ports of this machine:

* the API as ``make serve`` starts it (:func:`ops.services.api`: uvicorn with uvloop + httptools,
  the OpenMP settings) with 2 workers, its predictions going to a throw-away SQLite file (so the
  real ``var/`` DB gets no benchmark rows);
* ``mlflow models serve -m models:/churn-model@champion --env-manager local -w 2``;

then loads ``POST /predict``, the MLflow server's ``POST /invocations`` and the API's own
``GET /health`` with the same single customer at concurrency 1 and 8 (``wrk``, Debian package), and
times a 10,000-row ``POST /predict/batch`` (server time from ``X-Process-Time-Ms``, and wall time).

With ``--es-url`` (``make bench`` starts the test Elasticsearch at nice ``BENCH_ES_NICE``), one more
API (fresh database) is loaded at c=8 ``--pairs`` times without and with the prediction shipper
(``churnops monitoring ship``) running against it, alternating (the shipper's on/off figure, as
medians), and the time it takes, after each load, until Elasticsearch holds every stored
prediction is timed.

Then the comparison with what ML teams pick instead: the same champion served by churnops on
SQLite, churnops on PostgreSQL (a durable throw-away cluster from Debian's binaries, or
``--database-url``), BentoML, LitServe and ``mlflow models serve``, each with its documented
defaults and ``--workers`` workers, all up at once and loaded in turn (interleaved, ``--rounds``
rounds, medians) at concurrency 8 and 32. BentoML and LitServe run in venvs of their own under
``var/bench-envs/`` (``uv venv`` + ``uv pip install``; the framework pinned in
``scripts/bench-requirements/<name>.txt``, the libraries the scorer imports pinned to
``uv.lock``'s versions), never in the product's lock; they score with
:func:`scripts.bench_servers.churn_scorer` (churnops' own validation and compiled scorer) on the
champion's exported bundle.

A champion must exist (``make train``). The last stdout line is one JSON object with every figure,
the ratios and whether each floor holds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess  # starts the servers under test and wrk  # nosec B404
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# pylint: disable=wrong-import-position
from core.registry import champion_version  # noqa: E402
from core.schema import EXAMPLE_CHURNER  # noqa: E402
from core.settings import Settings, get_settings  # noqa: E402
from ops import services  # noqa: E402

# pylint: enable=wrong-import-position

FLOORS = {"ratio_vs_mlflow_c8": 40.0, "ratio_vs_health_c8": 0.40, "p99_ms_c8": 5.0, "batch_ms": 150}
#: The frameworks compared with churnops, each in its own venv (``var/bench-envs/<name>``).
COMPETITORS = ("bentoml", "litserve")
#: Prints the distributions that importing the scorer of scripts/bench_servers loads (run by
#: the product's interpreter): what the competitors' venvs share with the product, at uv.lock's
#: versions.
SCORER_IMPORTS = """
import importlib.metadata, json, sys
before = set(sys.modules)
from core.persist import load_bundle
from scripts.bench_servers import churn_scorer
found = importlib.metadata.packages_distributions()
loaded = {name.split(".")[0] for name in set(sys.modules) - before}
print(json.dumps(sorted({d for name in loaded for d in found.get(name, [])})))
"""
COMPARED = ("churnops_sqlite", "churnops_postgresql", "bentoml", "litserve", "mlflow")
LUA = """wrk.method = "{method}"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
"""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    """Wait until ``url`` answers 200 (or fail when the process dies or time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # local http  # nosec B310
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def accepting_processes(pid: int, port: int) -> set[int]:
    """The processes of the tree of process ``pid`` that accept connections on ``port``, as far as
    :data:`WORKER_PROBES` fresh connections (each answered before it is looked up) show.

    ``wait_http`` proves that *one* worker answers; wrk's keep-alive connections stay with the
    processes that accepted them, so a load started while a second worker is still starting is
    served by one worker to the end (``make bench`` once measured 2 workers at one worker's
    figure that way). :func:`server` therefore waits until every worker has accepted one.
    """
    tree = [psutil.Process(pid)]
    tree += tree[0].children(recursive=True)
    seen: set[int] = set()
    for _ in range(WORKER_PROBES):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            sock.recv(1)  # answered: accepted by a worker, which now holds the connection
            mine = sock.getsockname()
            for process in tree:
                with suppress(psutil.Error):
                    if any(
                        c.raddr and tuple(c.raddr) == mine for c in process.net_connections("tcp")
                    ):
                        seen.add(process.pid)
    return seen


#: Fresh connections :func:`accepting_processes` opens per look (P(a worker of 2 never gets one)
#: = 2**-20 when the kernel wakes either idle worker).
WORKER_PROBES = 20


@contextmanager
def server(
    cmd: list[str], env: dict[str, str], url: str, log: Path, workers: int = 1
) -> Iterator[None]:
    """Run a server process group for the duration of the block; start it once ``url`` answers
    200 and ``workers`` of its processes accept connections (see :func:`accepting_processes`),
    or after 60 s more with a warning naming how many do."""
    with log.open("wb") as out:
        proc = subprocess.Popen(  # fixed argv, no shell  # nosec B603
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
        try:
            try:
                wait_http(url, 180, proc)
            except RuntimeError as exc:
                tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise RuntimeError(f"{exc}\n--- {log.name} ---\n{tail}") from exc
            port = urllib.parse.urlsplit(url).port or 80
            deadline = time.monotonic() + 60
            while len(found := accepting_processes(proc.pid, port)) < workers:
                if time.monotonic() > deadline:
                    print(
                        f"warning: {len(found)} of the {workers} workers of {log.stem} accept "
                        "connections after 60 s; loading it anyway",
                        file=sys.stderr,
                    )
                    break
                time.sleep(0.5)
            yield
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(
    url: str, method: str, body: str, conns: int, seconds: int, tmp: Path
) -> dict[str, Any]:
    """Load ``url`` with wrk; returns req/s, p50/p99 in ms and errors."""
    script = tmp / f"wrk-{method.lower()}.lua"
    script.write_text(LUA.format(method=method, body=body), encoding="utf-8")
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    out = subprocess.run(  # fixed argv  # nosec B603
        cmd, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": round(rps, 1),
        "p50_ms": round(p50, 3),
        "p99_ms": round(p99, 3),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(0) if socket_errors else "",
    }


def post(url: str, body: bytes, ctype: str = "application/json") -> tuple[float, dict[str, str]]:
    """POST and return (wall ms, headers)."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": ctype})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as answer:  # local http  # nosec B310
        answer.read()
        headers = dict(answer.headers.items())
    return (time.perf_counter() - started) * 1000, headers


def batch_figures(api: str, rows: int, repeats: int) -> dict[str, Any]:
    """Median server and wall time of a ``rows``-row JSON batch (rows from the holdout data)."""
    import pandas as pd  # pylint: disable=import-outside-toplevel

    from core.schema import (  # pylint: disable=import-outside-toplevel
        FEATURE_NAMES,
        check_frame,
    )

    frame = check_frame(pd.read_csv(get_settings().data_path), require_target=True)
    frame = frame[list(FEATURE_NAMES)]
    data = pd.concat([frame] * (rows // len(frame) + 1)).head(rows)
    body = data.to_json(orient="records").encode()
    server_ms, wall_ms = [], []
    post(f"{api}/predict/batch", body)  # warm-up
    for _ in range(repeats):
        # the previous batch's rows are written to the DB after its answer (off its critical
        # path): let that finish so each figure is one batch's own server time
        time.sleep(1.0)
        wall, headers = post(f"{api}/predict/batch", body)
        wall_ms.append(wall)
        lowered = {k.lower(): v for k, v in headers.items()}
        server_ms.append(float(lowered.get("x-process-time-ms", "nan")))
    return {
        "rows": rows,
        "server_ms": round(statistics.median(server_ms), 1),
        "wall_ms": round(statistics.median(wall_ms), 1),
        "body_mb": round(len(body) / 1e6, 2),
    }


def base_env(settings: Settings) -> dict[str, str]:
    """The environment every server of the benchmark starts from."""
    venv_bin = Path(sys.executable).parent
    # mlflow's scoring server execs `uvicorn` from PATH: the venv's bin must be on it
    path = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": path}
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    env.pop("DATABASE_URL", None)
    return env


def api_server(
    settings: Settings, workers: int, database_url: str, env: dict[str, str]
) -> tuple[list[str], str, dict[str, str]]:
    """The API as ``make serve`` starts it (:func:`ops.services.api`) on a free port, its
    predictions in ``database_url``; (argv, base URL, environment)."""
    service = services.api(settings, host="127.0.0.1", port=free_port(), workers=workers)
    api_env = service.environment(
        {**env, "DATABASE_URL": database_url, "API_KEY": "bench-key", "LOG_JSON": "false"}
    )
    return list(service.argv), service.url, api_env


def measure(args: argparse.Namespace, tmp: Path, database_url: str) -> dict[str, Any]:
    """Load the API alone (c=1/8, /health, batch, shipper on/off), then compare it with the
    other servers (interleaved); returns the raw figures."""
    settings = get_settings()
    env = base_env(settings)
    api_cmd, api, api_env = api_server(settings, args.workers, f"sqlite:///{tmp / 'bench.db'}", env)
    customer = json.dumps(EXAMPLE_CHURNER)
    results: dict[str, Any] = {}
    with server(api_cmd, api_env, f"{api}/ready", tmp / "api.log", args.workers):
        for _ in range(50):  # warm the workers
            post(f"{api}/predict", customer.encode())
        # the batch first, on an otherwise idle server: its figure is the batch's alone, not
        # shared with whatever the wrk runs leave behind (their rows' writes, GC)
        results["batch"] = batch_figures(api, args.batch_rows, args.repeats)
        for conns in (1, 8):
            results[f"api_predict_c{conns}"] = run_wrk(
                f"{api}/predict", "POST", customer, conns, args.seconds, tmp
            )
            results[f"api_health_c{conns}"] = run_wrk(
                f"{api}/health", "GET", "", conns, args.seconds, tmp
            )
    if args.es_url:  # the same load with the prediction shipper on
        results.update(shipper_figures(args, api_cmd, api, api_env, tmp))
    results.update(compare(args, settings, env, tmp, database_url))
    return results


@dataclass(frozen=True)
class Target:
    """One server of the comparison: how it starts, where it answers, what it is sent."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    ready: str
    predict: str
    body: str


def bench_python(name: str) -> Path:
    """The interpreter of the venv of ``name`` (``var/bench-envs/<name>``), made or updated with
    uv when its pins changed: the framework from ``scripts/bench-requirements/<name>.txt``, the
    model libraries at ``uv.lock``'s versions (the product's lock is never touched)."""
    uv = os.environ.get("UV", "uv").split()
    venv = ROOT / "var" / "bench-envs" / name
    python = venv / "bin" / "python"
    requirements = ROOT / "scripts" / "bench-requirements" / f"{name}.txt"
    exported = subprocess.run(  # fixed argv  # nosec B603
        [*uv, "export", "--frozen", "--no-hashes", "--no-emit-project"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    imported = subprocess.run(  # fixed argv, our code  # nosec B603
        [sys.executable, "-c", SCORER_IMPORTS],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        check=True, timeout=300,
    ).stdout  # fmt: skip
    needed = {re.sub(r"[-_.]+", "-", name).lower() for name in json.loads(imported)}
    pins = sorted(
        line.split(";")[0].strip()
        for line in exported.splitlines()
        if line.split("==")[0].strip() in needed
    )
    stamp = venv / ".bench-pins"
    wanted = requirements.read_text(encoding="utf-8") + "\n".join(pins)
    if python.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == wanted:
        return python
    print(f"bench: making the {name} venv in {venv} (uv)", file=sys.stderr)
    subprocess.run(  # fixed argv  # nosec B603
        [*uv, "venv", "--quiet", "--allow-existing", "--python", "3.11", str(venv)],
        check=True, timeout=600,
    )  # fmt: skip
    constraints = venv / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n", encoding="utf-8")
    subprocess.run(  # fixed argv  # nosec B603
        [*uv, "pip", "install", "--quiet", "--python", str(python), "-r", str(requirements),
         "-c", str(constraints), *(pin.split("==")[0] for pin in pins)],
        check=True, timeout=1800,
    )  # fmt: skip
    stamp.write_text(wanted, encoding="utf-8")
    return python


def targets(
    args: argparse.Namespace, settings: Settings, env: dict[str, str], tmp: Path, database_url: str
) -> list[Target]:
    """The servers compared, every one with ``args.workers`` workers on the same champion."""
    from core.persist import save_bundle  # pylint: disable=import-outside-toplevel
    from core.registry import load_champion  # pylint: disable=import-outside-toplevel

    bundle = tmp / "champion"
    save_bundle(load_champion(settings).bundle, bundle)
    customer = json.dumps(EXAMPLE_CHURNER)
    found: list[Target] = []
    for backend, url in (
        ("sqlite", f"sqlite:///{tmp / 'compare.db'}"),
        ("postgresql", database_url),
    ):
        cmd, base, api_env = api_server(settings, args.workers, url, env)
        found.append(
            Target(
                f"churnops_{backend}", cmd, api_env, f"{base}/ready", f"{base}/predict", customer
            )
        )
    other = {**env, "CHURN_BUNDLE": str(bundle), "BENCH_WORKERS": str(args.workers)}
    servers = ROOT / "scripts" / "bench_servers"
    port = free_port()
    bentoml = bench_python("bentoml").parent / "bentoml"
    found.append(
        Target(
            "bentoml",
            [str(bentoml), "serve", "bentoml_service:Churn", "--host", "127.0.0.1",
             "--port", str(port), "--working-dir", str(servers)],
            other, f"http://127.0.0.1:{port}/readyz", f"http://127.0.0.1:{port}/predict",
            json.dumps({"customer": EXAMPLE_CHURNER}),
        )  # fmt: skip
    )
    port = free_port()
    found.append(
        Target(
            "litserve",
            [str(bench_python("litserve")), str(servers / "litserve_server.py"), str(port),
             str(args.workers)],
            other, f"http://127.0.0.1:{port}/health", f"http://127.0.0.1:{port}/predict",
            customer,
        )  # fmt: skip
    )
    port = free_port()
    venv_bin = Path(sys.executable).parent
    found.append(
        Target(
            "mlflow",
            [str(venv_bin / "mlflow"), "models", "serve", "-m",
             f"models:/{settings.model_name}@champion", "--env-manager", "local",
             "-w", str(args.workers), "-h", "127.0.0.1", "-p", str(port)],
            env, f"http://127.0.0.1:{port}/ping", f"http://127.0.0.1:{port}/invocations",
            json.dumps({"dataframe_records": [EXAMPLE_CHURNER]}),
        )  # fmt: skip
    )
    return found


def compare(
    args: argparse.Namespace, settings: Settings, env: dict[str, str], tmp: Path, database_url: str
) -> dict[str, Any]:
    """Every server of :func:`targets` up at once, loaded in turn at c=8 then c=32, the order
    rotated each round; the medians per server and concurrency, and churnops' ratios."""
    servers = targets(args, settings, env, tmp, database_url)
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {t.name: {8: [], 32: []} for t in servers}
    with ExitStack() as stack:
        for target in servers:
            stack.enter_context(
                server(
                    target.cmd, target.env, target.ready, tmp / f"{target.name}.log", args.workers
                )
            )
            for _ in range(20):  # warm every worker
                post(target.predict, target.body.encode())
        mlflow = next(t for t in servers if t.name == "mlflow")
        one = run_wrk(mlflow.predict, "POST", mlflow.body, 1, args.seconds, tmp)
        for conns in (8, 32):
            for turn in range(args.rounds):
                order = servers[turn % len(servers) :] + servers[: turn % len(servers)]
                for target in order:
                    runs[target.name][conns].append(
                        run_wrk(target.predict, "POST", target.body, conns, args.seconds, tmp)
                    )
    figures = {name: {f"c{c}": _median_run(per[c]) for c in per} for name, per in runs.items()}
    ratios = {
        backend: {
            f"vs_{other}_c{c}": round(
                figures[f"churnops_{backend}"][f"c{c}"]["rps"] / figures[other][f"c{c}"]["rps"], 2
            )
            for other in ("bentoml", "litserve", "mlflow")
            for c in (8, 32)
        }
        for backend in ("sqlite", "postgresql")
    }
    return {
        "compare": figures,
        "compare_ratios": ratios,
        "compare_rounds": args.rounds,
        "mlflow_c1": one,
        "mlflow_c8": figures["mlflow"]["c8"],
    }


@contextmanager
def background(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[None]:
    """Run a process group without an HTTP endpoint for the duration of the block."""
    with log.open("wb") as out:
        proc = subprocess.Popen(  # fixed argv, no shell  # nosec B603
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
        try:
            yield
        finally:
            _stop(proc)


def shipper_figures(
    args: argparse.Namespace, api_cmd: list[str], api: str, api_env: dict[str, str], tmp: Path
) -> dict[str, Any]:
    """``POST /predict`` at c=8 without and with the prediction shipper, alternating; catch-up.

    One API with ``ES_URL`` set (it ships nothing itself) on a fresh SQLite file. ``args.pairs``
    times: a wrk run without the shipper; then ``churnops monitoring ship`` (its own default
    nice) is started, ships the rows of that run (waited for), and wrk runs again while it ships
    the new ones; after that load, the time until Elasticsearch holds every row is the catch-up.
    The medians of the pairs are reported; documents go to an index of this run only.
    """
    prefix = f"bench{time.time_ns()}"
    index = f"{prefix}-predictions"
    customer = json.dumps(EXAMPLE_CHURNER)
    db = tmp / "es.db"
    env = {**api_env, "ES_URL": args.es_url, "DATABASE_URL": f"sqlite:///{db}"}
    ship_cmd = [sys.executable, "-m", "ops.cli", "monitoring", "--prefix", prefix, "ship"]
    off: list[dict[str, Any]] = []
    on: list[dict[str, Any]] = []
    catch_up: list[float | None] = []
    with server(api_cmd, env, f"{api}/ready", tmp / "api-es.log", args.workers):
        for _ in range(50):
            post(f"{api}/predict", customer.encode())
        for _ in range(args.pairs):
            off.append(run_wrk(f"{api}/predict", "POST", customer, 8, args.seconds, tmp))
            with background([*ship_cmd, "--interval", "0.2"], env, tmp / "shipper.log"):
                if wait_shipped(args, db, index) is None:
                    break
                on.append(run_wrk(f"{api}/predict", "POST", customer, 8, args.seconds, tmp))
                catch_up.append(wait_shipped(args, db, index))
    rows, stored = db_rows(db), es_count(args.es_url, index)
    es_request(args.es_url, index, "DELETE")
    return {
        "api_predict_es_off_c8": _median_run(off),
        "api_predict_es_c8": _median_run(on),
        "es_pairs": len(on),
        "es_db_rows": rows,
        "es_events": stored,
        "es_catch_up_s": (
            max(done) if on and len(done := [c for c in catch_up if c]) == len(catch_up) else None
        ),
    }


def wait_shipped(args: argparse.Namespace, db: Path, index: str) -> float | None:
    """Seconds until Elasticsearch holds every row of ``db`` (``None`` past ``args.es_timeout``)."""
    started = time.monotonic()
    while time.monotonic() - started < args.es_timeout:
        rows, stored = db_rows(db), es_count(args.es_url, index)
        if rows and stored >= rows:
            return round(time.monotonic() - started, 1)
        time.sleep(0.2)
    return None


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-figure median of several wrk runs (``{}`` for none)."""
    if not runs:
        return {}
    return {
        key: round(statistics.median(run[key] for run in runs), 3)
        for key in ("rps", "p50_ms", "p99_ms")
    } | {"non_2xx": sum(run["non_2xx"] for run in runs), "runs": len(runs)}


def db_rows(db: Path) -> int:
    """Rows of the ``prediction`` table of a SQLite file (0 before it exists)."""
    try:
        with closing(sqlite3.connect(db, timeout=30)) as conn:
            return int(conn.execute("SELECT count(*) FROM prediction").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def es_request(es_url: str, path: str, method: str = "GET") -> dict[str, Any]:
    """One request to our Elasticsearch; ``{}`` when it fails."""
    request = urllib.request.Request(f"{es_url}/{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # our own ES URL  # nosec B310
            body: dict[str, Any] = json.loads(answer.read() or b"{}")
            return body
    except OSError:  # URLError, or a timeout of a busy Elasticsearch
        return {}


def es_count(es_url: str, index: str) -> int:
    """Documents of ``index`` in Elasticsearch (after a refresh)."""
    es_request(es_url, f"{index}/_refresh", "POST")
    return int(es_request(es_url, f"{index}/_count").get("count", 0))


def judge(results: dict[str, Any]) -> dict[str, Any]:
    """Add the ratios and the benchmark's floors to the figures."""
    for conns in (1, 8):
        predict = results[f"api_predict_c{conns}"]["rps"]
        results[f"ratio_vs_mlflow_c{conns}"] = round(
            predict / results[f"mlflow_c{conns}"]["rps"], 1
        )
        results[f"ratio_vs_health_c{conns}"] = round(
            predict / results[f"api_health_c{conns}"]["rps"], 3
        )
    results["floors"] = {
        "ratio_vs_mlflow_c8": results["ratio_vs_mlflow_c8"] >= FLOORS["ratio_vs_mlflow_c8"],
        "ratio_vs_health_c8": results["ratio_vs_health_c8"] >= FLOORS["ratio_vs_health_c8"],
        "p99_ms_c8": results["api_predict_c8"]["p99_ms"] <= FLOORS["p99_ms_c8"],
        "batch_ms": results["batch"]["server_ms"] <= FLOORS["batch_ms"],
    }
    if results.get("api_predict_es_c8"):  # shipping events must not slow predictions
        off, on = results["api_predict_es_off_c8"], results["api_predict_es_c8"]
        results["es_p50_ratio_c8"] = round(on["p50_ms"] / off["p50_ms"], 3)
        results["es_p99_ratio_c8"] = round(on["p99_ms"] / off["p99_ms"], 3)
        results["es_rps_ratio_c8"] = round(on["rps"] / off["rps"], 3)
        results["floors"]["es_latency_c8"] = abs(results["es_p50_ratio_c8"] - 1) <= 0.10
        # and they must all arrive (a shipper that sends nothing would be free)
        results["floors"]["es_all_shipped"] = (
            results["es_catch_up_s"] is not None and results["es_events"] == results["es_db_rows"]
        )
    elif "api_predict_es_c8" in results:  # the shipper never caught up: nothing to compare
        results["floors"]["es_all_shipped"] = False
    results["pass"] = all(results["floors"].values())
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table and, last, one JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per run (s)")
    parser.add_argument("--workers", type=int, default=2, help="workers of each server")
    parser.add_argument("--batch-rows", type=int, default=10_000, help="rows of the batch test")
    parser.add_argument("--repeats", type=int, default=5, help="batch repetitions (median)")
    parser.add_argument(
        "--es-url", default="", help="also load /predict with the prediction shipper to this ES"
    )
    parser.add_argument(
        "--pairs", type=int, default=3, help="shipper off/on load pairs (medians reported)"
    )
    parser.add_argument(
        "--es-nice", type=int, help="the nice level the Elasticsearch JVM runs at (reported)"
    )
    parser.add_argument(
        "--es-timeout", type=float, default=120.0, help="seconds the shipper may take to catch up"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved rounds of the comparison (medians)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", ""),
        help="an empty PostgreSQL database for churnops_postgresql (default: a durable "
        "throw-away cluster from Debian's postgresql package, removed afterwards)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    settings = get_settings()
    if champion_version(settings) is None:  # the API would wait for one forever
        print(
            f"no champion in {settings.tracking_uri}: the benchmark loads the champion the API "
            "serves; train one first (`make train`, or `make run`)",
            file=sys.stderr,
        )
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="churnops-bench-"))
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
        database_url = args.database_url or cleanup.enter_context(local_postgres())
        results = judge(measure(args, tmp, database_url))
        if args.es_url:
            results["es_nice"] = args.es_nice
    print(f"{'target':<22}{'c':>3}{'req/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for name in ("api_predict", "api_health", "mlflow"):
        for conns in (1, 8):
            row = results[f"{name}_c{conns}"]
            print(
                f"{name:<22}{conns:>3}{row['rps']:>11.1f}{row['p50_ms']:>9.3f}{row['p99_ms']:>9.3f}"
            )
    batch = results["batch"]
    print(f"batch {batch['rows']} rows: server {batch['server_ms']} ms, wall {batch['wall_ms']} ms")
    if results.get("api_predict_es_c8"):
        row = results["api_predict_es_off_c8"]
        print(
            f"{'api_predict, no shipper':<22}{8:>3}{row['rps']:>11.1f}{row['p50_ms']:>9.3f}"
            f"{row['p99_ms']:>9.3f}  (ES_URL set, ES at nice {results['es_nice']})"
        )
        row = results["api_predict_es_c8"]
        print(
            f"{'api_predict + shipper':<22}{8:>3}{row['rps']:>11.1f}{row['p50_ms']:>9.3f}"
            f"{row['p99_ms']:>9.3f}  ({results['es_events']} of {results['es_db_rows']} rows in"
            f" ES, caught up {results['es_catch_up_s']} s after the load; medians of"
            f" {results['es_pairs']} alternating pairs)"
        )
    print(f"\n{'same champion, interleaved':<22}{'c':>3}{'req/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for conns in (8, 32):
        for name in COMPARED:
            row = results["compare"][name][f"c{conns}"]
            print(
                f"{name:<22}{conns:>3}{row['rps']:>11.1f}{row['p50_ms']:>9.3f}{row['p99_ms']:>9.3f}"
            )
    for backend, ratios in results["compare_ratios"].items():
        print(
            f"churnops on {backend}, req/s ratio: "
            + ", ".join(f"{k} {v}x" for k, v in ratios.items())
        )
    print(json.dumps(results, separators=(",", ":")))
    return 0


@contextmanager
def local_postgres() -> Iterator[str]:
    """A durable throw-away PostgreSQL (the tests' helper, with fsync on); its database URL."""
    from tests.postgres import (  # pylint: disable=import-outside-toplevel
        remove,
        start_local_postgres,
    )

    cluster = start_local_postgres(durable=True)
    try:
        yield cluster.create_database()
    finally:
        remove(cluster)


if __name__ == "__main__":
    raise SystemExit(main())
