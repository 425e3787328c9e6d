"""The live Swarm stack of ``make stack-test``, from nothing, the way an operator builds it.

Module fixtures, in order (the engine stops when the module's tests are done, not at the end of the
session): ``engine`` (scripts/stack.sh installs and starts dockerd when none answers, and puts the
machine back at the end, also when a test fails), ``registry`` (the Docker distribution registry
built from its Go module, htpasswd auth, on 127.0.0.1), ``images`` (the base images made locally,
both project images built by ``make docker-build`` with the project's Dockerfiles, the local
stand-ins of tests/stack/images/, all pushed by ``make docker-push``) and ``deployed`` (``make
swarm-init``, ``make secrets``, ``docker stack deploy`` of stack.yml + the test override, every
service converged). Figures (seconds, bytes, counts) go to ``var/stack-test/figures.json``.

One run at a time on a machine: the engine, the swarm and the stack name are machine-wide, so the
fixture holds a lock (another run waits for it). The stack publishes only the API and the UI, on
free ports of 127.0.0.1's host (through ``edge``); every request of the tests goes to 127.0.0.1, but
for Elasticsearch and PostgreSQL, which are internal as in production: the tests query them from
inside the stack (``docker exec`` of curl in the edge task, of psql in the db task).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import runpy
import shutil
import signal
import socket
import subprocess  # nosec B404 - docker, make, the registry
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import docker
import docker.errors
import httpx
import pytest

from tests.conftest import IN_CI, ROOT, need
from tests.deploy.conftest import stack_environment

# the session's one Chromium (Playwright's sync API runs one instance per thread)
from tests.stack.swarm import ServiceView, memory_by_service, service_view, deployable_stack_file

STACK = "churntest"
SCRIPT = ROOT / "scripts" / "stack.sh"
LOCK = Path("/run/churnops-stack.lock")
LOCK_WAIT = 3600.0
BUILD_DOCKER = (
    "/usr/bin/docker"  # Debian's CLI builds with the daemon's BuildKit (no buildx needed)
)
FIGURES = ROOT / "var" / "stack-test" / "figures.json"
CACHE = Path(os.environ.get("STACK_CACHE", Path.home() / ".cache" / "churnops" / "stack"))
LOCAL = "churnops-local"  # namespace of the stand-in images in the registry
CONVERGE_TIMEOUT = 900.0
T = TypeVar("T")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Figures:
    """What the run measured, written to FIGURES after every change (survives a failing test)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        FIGURES.write_text(json.dumps(self.values, indent=2, sort_keys=True), encoding="utf-8")
        print(f"[stack figure] {key} = {json.dumps(value)}")


@dataclass
class Engine:
    """The Docker engine: a CLI for the stack and a client of its API, with a private config."""

    env: dict[str, str]
    api: docker.DockerClient
    figures: Figures
    registry_port: int  # chosen first: the images are named after it before the registry runs
    registry_build: subprocess.Popen[str]  # the registry's Go build, meanwhile
    started: float  # time.monotonic() when the engine answered

    def run(self, *args: str, timeout: float = 600, check: bool = True, stdin: str = "") -> str:
        """``docker ARGS`` (the CLI on PATH: stack and service commands), ``stdin`` as its input;
        stdout."""
        return self._run(["docker", *args], timeout, check, stdin=stdin)

    def run_with(self, args: list[str], env: dict[str, str], stdin: str = "") -> str:
        """``docker ARGS`` as :meth:`run`, with ``env`` added to the engine's environment."""
        return self._run(["docker", *args], 600, True, env, stdin=stdin)

    def build(self, *args: str, timeout: float = 1800) -> str:
        """``docker ARGS`` with Debian's CLI and BuildKit."""
        return self._run([BUILD_DOCKER, *args], timeout, True, {"DOCKER_BUILDKIT": "1"})

    def make(self, *args: str, timeout: float = 1800, **env: str) -> str:
        """``make ARGS`` in the repository, with this engine's environment plus ``env``."""
        return self._run(["make", *args], timeout, True, env)

    def _run(  # pylint: disable=too-many-arguments
        self,
        argv: list[str],
        timeout: float,
        check: bool,
        extra: dict[str, str] | None = None,
        *,
        stdin: str = "",
    ) -> str:
        done = subprocess.run(  # nosec B603 - argv built by the tests
            argv,
            cwd=ROOT,
            env={**self.env, **(extra or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv[:4])} ... exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done.stdout

    def services(self) -> dict[str, dict[str, Any]]:
        """The stack's services by short name (engine API objects)."""
        found = self.api.services.list(filters={"label": f"com.docker.stack.namespace={STACK}"})
        return {s.name.removeprefix(f"{STACK}_"): s.attrs for s in found}

    def views(self) -> dict[str, ServiceView]:
        """Every service of the stack with its tasks, for :func:`tests.stack.swarm.problems`."""
        nodes = len(self.api.nodes.list())
        out = {}
        for name, service in self.services().items():
            try:
                tasks = self.api.api.tasks(filters={"service": service["ID"]})
            except docker.errors.NotFound:  # removed since the listing
                continue
            out[name] = service_view(service, tasks, nodes)
        return out

    def containers(self, service: str) -> list[Any]:
        """The running containers of one service of the stack."""
        return self.api.containers.list(
            filters={"label": f"com.docker.swarm.service.name={STACK}_{service}"}
        )


def engine_nofile() -> int:
    """The hard open-files limit of the running dockerd (its containers cannot ask more)."""
    pid = subprocess.run(  # nosec B603 B607 - fixed argv
        ["pgrep", "-o", "-x", "dockerd"], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    for line in Path(f"/proc/{pid}/limits").read_text(encoding="ascii").splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[4])
    raise AssertionError("no open-files limit for dockerd")


def _lock() -> Any:
    """Hold the machine-wide lock of the live stack (another run waits up to LOCK_WAIT)."""
    handle = LOCK.open("w")  # pylint: disable=consider-using-with  # held for the session
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                need(False, f"another live stack run holds {LOCK}")
            time.sleep(5)


def _stack_sh(command: str, env: dict[str, str], timeout: float = 900) -> str:
    done = subprocess.run(  # nosec B603 B607 - fixed argv
        ["bash", str(SCRIPT), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"stack.sh {command}:\n{done.stderr[-4000:]}"
    return done.stdout.strip()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A running engine (started here when none answers); the machine restored at the end."""
    can = os.geteuid() == 0 and shutil.which("apt-get") is not None
    need(can, "the live stack test installs and starts a Docker engine: root and apt-get needed")
    need(
        IN_CI or os.environ.get("CHURNOPS_STACK_TEST", "") != "skip",
        "CHURNOPS_STACK_TEST=skip (outside CI only)",
    )
    lock = _lock()
    config = tmp_path_factory.mktemp("docker-config")  # logins stay out of ~/.docker
    env = {**os.environ, "DOCKER_CONFIG": str(config), "DOCKER_HOST": "unix:///var/run/docker.sock"}
    for name in ("MLFLOW_TRACKING_URI", "DATABASE_URL", "ES_URL", "API_KEY"):
        env.pop(name, None)
    env["VAR_DIR"] = str(tmp_path_factory.mktemp("stack-var"))  # make's model lookup: empty
    previous = signal.getsignal(signal.SIGTERM)

    def stop(signum: int, frame: FrameType | None) -> None:  # a killed run still cleans up
        del signum, frame
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, stop)
    figures = Figures()
    try:
        # whatever an earlier run killed before its own `down` left (its engine, swarm, stack),
        # under this lock no run is using it: put the machine back first, then start from nothing
        _stack_sh("down", env, timeout=600)
        started = time.monotonic()
        _stack_sh("up", env, timeout=600)
        figures["engine_start_seconds"] = round(time.monotonic() - started, 1)
        client = docker.DockerClient(base_url=env["DOCKER_HOST"], timeout=120)
        # the registry's Go build runs while the base images and the project images are made
        registry_build = (
            subprocess.Popen(  # nosec B603 B607 - fixed argv  # pylint: disable=consider-using-with
                ["bash", str(SCRIPT), "registry-bin"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
        try:
            yield Engine(env, client, figures, free_port(), registry_build, time.monotonic())
        finally:
            if registry_build.poll() is None:
                registry_build.kill()
            registry_build.communicate()
            client.close()
    finally:
        _stack_sh("down", env, timeout=600)
        signal.signal(signal.SIGTERM, previous)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    clean = subprocess.run(  # nosec B603 B607 - fixed argv
        ["bash", str(SCRIPT), "check-clean"], capture_output=True, text=True, check=False
    )
    assert clean.returncode == 0 or os.environ.get("STACK_EXTERNAL_ENGINE"), clean.stderr


@dataclass
class Registry:
    """The local registry: ``host`` (127.0.0.1:port), the login the push uses."""

    host: str
    user: str
    token: str


@pytest.fixture(scope="module")
def registry(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The Docker distribution registry (its Go module) with htpasswd auth on a free port."""
    with warnings.catch_warnings():  # deprecated, still in 3.11: glibc's bcrypt for htpasswd
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # pylint: disable=import-outside-toplevel,deprecated-module

    out, _ = engine.registry_build.communicate(timeout=1500)
    assert engine.registry_build.returncode == 0, out[-3000:]
    binary = out.strip().splitlines()[-1]
    engine.figures["registry_ready_after_engine_seconds"] = round(
        time.monotonic() - engine.started, 1
    )
    folder = tmp_path_factory.mktemp("registry")
    token = base64.urlsafe_b64encode(os.urandom(18)).decode()
    user = "churnops"
    htpasswd = folder / "htpasswd"
    htpasswd.write_text(f"{user}:{crypt.crypt(token, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
    port = engine.registry_port
    storage = CACHE / "registry"  # pushed layers stay: the next run pushes only what changed
    (folder / "config.yml").write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(storage)}},
                "http": {"addr": f"127.0.0.1:{port}", "secret": token},
                "auth": {"htpasswd": {"realm": "churntest", "path": str(htpasswd)}},
            }
        )
    )
    log = (folder / "registry.log").open("wb")
    process = subprocess.Popen(  # nosec B603 - our binary  # pylint: disable=consider-using-with
        [binary, "serve", str(folder / "config.yml")], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 401:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "registry did not start"
            time.sleep(0.3)
        yield Registry(f"127.0.0.1:{port}", user, token)
    finally:
        process.terminate()
        process.wait(30)
        log.close()


@dataclass
class Images:
    """What the stack runs: the project images (namespace, tag) and the stand-ins' namespace."""

    namespace: str  # DOCKERHUB_USER
    tag: str  # IMAGE_TAG
    local: str  # STACK_LOCAL_IMAGES
    base: dict[str, str]  # PYTHON_IMAGE, UV_IMAGE

    def api(self, tag: str | None = None) -> str:
        """The API image name with ``tag`` (default: the deployed one)."""
        return f"{self.namespace}/churnops-api:{tag or self.tag}"


def git_sha() -> str:
    """The tag `make docker-build` gives (the short sha of HEAD)."""
    return subprocess.run(  # nosec B603 B607 - fixed argv
        ["git", "rev-parse", "--short=12", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def build_project_images(engine: Engine, images: Images, tag: str) -> None:
    """``make docker-build`` of both images as ``tag``, on the local base images."""
    # the db image's Debian base is the one made for the Python images (Debian + python3)
    base = {**images.base, "DEBIAN_IMAGE": images.base["PYTHON_IMAGE"]}
    build_args = " ".join(f"--build-arg {k}={v}" for k, v in base.items())
    engine.make(
        "docker-build",
        f"GIT_SHA={tag}",
        DOCKER=BUILD_DOCKER,
        DOCKERHUB_USER=images.namespace,
        MODEL_VERSION="none",
        DOCKER_BUILD_ARGS=f"{build_args} --network=host",
    )


def push_project_images(engine: Engine, images: Images, registry: Registry, tag: str) -> None:
    """``make docker-push`` of both images as ``tag`` (it logs in to the local registry)."""
    engine.make(
        "docker-push",
        f"GIT_SHA={tag}",
        DOCKER=BUILD_DOCKER,
        DOCKERHUB_USER=images.namespace,
        MODEL_VERSION="none",
        DOCKERHUB_TOKEN=registry.token,
    )


def _linked_context(sources: dict[str, Path], folder: Path, out: Path) -> Path:
    """A build context: ``folder``'s files plus each source tree (hard links: no copy)."""
    shutil.copytree(folder, out)
    for name, source in sources.items():
        subprocess.run(  # nosec B603 B607 - fixed argv
            ["cp", "-al", str(source), str(out / name)], check=True, capture_output=True
        )
    return out


def _es_sh(command: str) -> str:
    """stdout of ``scripts/es.sh COMMAND`` (the test Elasticsearch's zip and the JDK to run it)."""
    return subprocess.run(  # nosec B603 B607 - fixed argv
        ["bash", str(ROOT / "scripts" / "es.sh"), command],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _timed(function: Callable[..., T], *args: Any) -> tuple[T, float]:
    """``function(*args)`` and the seconds it took."""
    started = time.monotonic()
    result = function(*args)
    return result, round(time.monotonic() - started, 1)


def build_standin_images(
    engine: Engine, images: Images, tmp_path_factory: pytest.TempPathFactory
) -> list[str]:
    """Build each folder of tests/stack/images as ``{images.local}/<folder>:<tag>``; the tags."""
    base = images.base
    es_home = Path(_es_sh("fetch").split()[-1])
    jdk = Path(_es_sh("java-home").strip())
    sources = {"elasticsearch": {"jdk": jdk, "elasticsearch": es_home}}
    standins: list[str] = []
    for folder in sorted((Path(__file__).parent / "images").iterdir()):
        context = _linked_context(
            sources.get(folder.name, {}), folder, tmp_path_factory.mktemp("ctx") / folder.name
        )
        if folder.name == "elasticsearch":  # the writer's role: es_security.py's, one definition
            es_security = runpy.run_path(str(ROOT / "deploy" / "swarm" / "es_security.py"))
            roles = {es_security["WRITER"]: es_security["WRITER_ROLE"]}
            (context / "roles.yml").write_text(json.dumps(roles), encoding="utf-8")
        tag = f"{images.local}/{folder.name}:" + (
            "8.19.21" if folder.name == "elasticsearch" else "test"
        )
        engine.build(
            "build", "--network=host", "--build-arg", f"BASE_IMAGE={base['PYTHON_IMAGE']}",
            "-t", tag, str(context),
        )  # fmt: skip
        standins.append(tag)
    return standins


@pytest.fixture(scope="module")
def images(
    engine: Engine, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Images:
    """Base images, both project images and the stand-ins, built here and pushed to the registry."""
    started = time.monotonic()
    base = dict(
        line.split("=", 1) for line in _stack_sh("base", engine.env, timeout=1800).splitlines()
    )
    engine.figures["base_images_seconds"] = round(time.monotonic() - started, 1)
    host = f"127.0.0.1:{engine.registry_port}"
    images = Images(f"{host}/churnops", git_sha(), f"{host}/{LOCAL}", base)

    # the project images and the stand-ins at once: BuildKit runs both builds side by side, and
    # their cold parts (uv's and apt's downloads, the JDK's copy) wait on the network and the disk
    # more than on the CPUs
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        project = pool.submit(_timed, build_project_images, engine, images, images.tag)
        standins = pool.submit(_timed, build_standin_images, engine, images, tmp_path_factory)
        engine.figures["project_images_build_seconds"] = project.result()[1]
        standin_tags, engine.figures["standin_images_build_seconds"] = standins.result()
    engine.figures["all_images_build_seconds"] = round(time.monotonic() - started, 1)
    engine.figures["api_image_bytes"] = engine.api.images.get(images.api()).attrs["Size"]

    registry: Registry = request.getfixturevalue("registry")
    # every push at once: a push is mostly one gzip stream per layer, so side by side they use
    # both CPUs (docker-push pushes its three images side by side too)
    started = time.monotonic()
    # the stand-ins are not make's: they log in with a docker config of their own, so the one
    # make uses holds only docker-push's login (which the deploy's --with-registry-auth needs)
    config = {"DOCKER_CONFIG": str(tmp_path_factory.mktemp("standin-login"))}
    engine.run_with(
        ["login", registry.host, "--username", registry.user, "--password-stdin"],
        config,
        stdin=registry.token,
    )
    with ThreadPoolExecutor(max_workers=1 + len(standin_tags)) as pool:
        pushes = [pool.submit(push_project_images, engine, images, registry, images.tag)]
        pushes += [pool.submit(engine.run_with, ["push", tag], config) for tag in standin_tags]
        for push in pushes:
            push.result()
    engine.figures["push_seconds"] = round(time.monotonic() - started, 1)
    return images


@dataclass
class Deployed:  # pylint: disable=too-many-instance-attributes
    """The running test stack: where it answers (127.0.0.1) and what it was deployed with."""

    engine: Engine
    images: Images
    env: dict[str, str]
    stack_file: Path
    secrets: Path
    api_url: str
    ui_url: str
    memory: dict[str, int] = field(default_factory=dict)
    journey: dict[str, Any] = field(default_factory=dict)  # what a test leaves the next ones

    def secret(self, name: str) -> str:
        """A secret's value (the files `make secrets` made)."""
        return (self.secrets / name).read_text(encoding="utf-8").strip()

    def es_api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Elasticsearch's REST API as `elastic`, from inside the stack (Elasticsearch is not
        published): curl in the edge task, its config (credentials, body) on stdin, never argv.
        The JSON answer; ValueError when Elasticsearch cannot be reached or answers 4xx/5xx."""

        def quoted(text: str) -> str:  # a curl config string
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

        config = [
            "user = " + quoted(f"elastic:{self.secret('es_password')}"),
            "request = " + quoted(method),
            'header = "Content-Type: application/json"',
            "silent",
            "show-error",
            'write-out = "\\n%{http_code}"',
            "url = " + quoted(f"http://elasticsearch:9200{path}"),
        ]
        if body is not None:
            config.append("data-binary = " + quoted(json.dumps(body)))
        (edge,) = self.engine.containers("edge")
        try:
            out = self.engine.run(
                "exec", "-i", edge.id, "curl", "-K", "-", stdin="\n".join(config) + "\n",
                timeout=120,
            )  # fmt: skip
        except AssertionError as exc:  # curl could not reach Elasticsearch
            raise ValueError(f"Elasticsearch {method} {path}: {exc}") from exc
        text, _, status = out.rpartition("\n")
        if not status.isdigit() or int(status) >= 400:
            raise ValueError(f"Elasticsearch {method} {path}: HTTP {status}: {text[:300]}")
        return json.loads(text)

    def sql(self, query: str, database: str = "churnops") -> list[list[str]]:
        """Rows of ``query`` run in the stack's PostgreSQL (psql in the db task, as the local
        superuser through its socket: the database is not published); each row's fields as text."""
        (db,) = self.engine.containers("db")
        out = self.engine.run(
            "exec", "-i", db.id, "psql", "-U", "postgres", "-d", database, "-X", "-q",
            "-v", "ON_ERROR_STOP=1", "--no-align", "--tuples-only", "--field-separator=\t",
            "-f", "-", stdin=query, timeout=300,
        )  # fmt: skip
        return [line.split("\t") for line in out.splitlines() if line]

    def api_key(self) -> dict[str, str]:
        """The admin header."""
        return {"X-API-Key": self.secret("api_key")}

    def sample_memory(self) -> dict[str, int]:
        """One ``docker stats`` sample; keeps each service's largest value in ``memory``."""
        lines = self.engine.run("stats", "--no-stream", "--format", "{{json .}}").splitlines()
        sample = memory_by_service(lines, STACK)
        for name, used in sample.items():
            self.memory[name] = max(self.memory.get(name, 0), used)
        return sample


class MemorySampler(threading.Thread):
    """``docker stats`` every ``interval`` seconds in the background, for the whole run."""

    def __init__(self, deployed: Deployed, interval: float = 5.0) -> None:
        super().__init__(name="memory-sampler", daemon=True)
        self.deployed = deployed
        self.interval = interval
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.deployed.sample_memory()
            except (AssertionError, subprocess.SubprocessError, ValueError):
                pass  # a container that went away between the listing and its stats
            self.stop.wait(self.interval)


@pytest.fixture(scope="module")
def deployed(
    engine: Engine, images: Images, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    """stack.yml + the test override deployed on a one-node swarm, every service converged."""
    from tests.stack.swarm import wait_converged  # pylint: disable=import-outside-toplevel

    secrets = tmp_path_factory.mktemp("secrets")
    engine.make("secrets", f"SECRETS_DIR={secrets}")
    engine.make(
        "swarm-init",
        "SWARM_INIT_ARGS=--advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377",
    )
    ports = {name: free_port() for name in ("API", "UI")}
    env = stack_environment(
        DOCKERHUB_USER=images.namespace,
        IMAGE_TAG=images.tag,
        SECRETS_DIR=str(secrets),
        STACK_LOCAL_IMAGES=images.local,
        STACK_NOFILE=str(min(65535, engine_nofile())),
        **{f"STACK_{name}_PORT": str(port) for name, port in ports.items()},
    )
    env = {**env, "DOCKER_CONFIG": engine.env["DOCKER_CONFIG"]}
    stack_file = deployable_stack_file(
        "docker", env, tmp_path_factory.mktemp("stack") / "stack.yml"
    )
    started = time.monotonic()
    engine.run("stack", "deploy", "--with-registry-auth", "-c", str(stack_file), STACK)
    engine.figures["deploy_command_seconds"] = round(time.monotonic() - started, 1)
    running = Deployed(
        engine, images, env, stack_file, secrets,
        f"http://127.0.0.1:{ports['API']}", f"http://127.0.0.1:{ports['UI']}",
    )  # fmt: skip
    sampler = MemorySampler(running)
    sampler.start()
    try:
        took = wait_converged(engine.views, CONVERGE_TIMEOUT)
        engine.figures["deploy_to_converged_seconds"] = round(time.monotonic() - started, 1)
        del took
        yield running
    finally:
        sampler.stop.set()
        sampler.join(30)
        engine.figures["peak_memory_bytes"] = dict(sorted(running.memory.items()))
        engine.run("stack", "rm", STACK, check=False)
