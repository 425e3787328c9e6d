"""stack.yml, resolved offline by ``docker stack config`` with the documented env.

What Swarm would run: every service probed, bounded and rolled out safely; every config file in the
repo and every secret outside it; every command present in the code and the locked tools; the ports
of ARCHITECTURE.md; the Elastic images on the version the tests run against.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from core.monitoring import ELASTIC_VERSION
from core.settings import Settings
from ops import services as services_module
from tests.conftest import ROOT
from tests.deploy.conftest import (
    DOCKERFILES,
    ENV_EXAMPLE,
    churnops_image_services,
    parse_dockerfile,
    read_env_file,
    stack_config,
    stack_environment,
)

PORTS = {
    "api": {8000},
    "ui": {8501},
    "kibana": {5601},
}
# MLflow (no authentication: it could move the champion alias), Logstash's inputs (log
# injection), Elasticsearch (users look through Kibana; plain HTTP) and PostgreSQL are reached on
# the overlay network only.
INTERNAL = {"mlflow", "logstash", "elasticsearch", "db"}
SERVICES = {*PORTS, *INTERNAL, "setup", "agent", "shipper", "exporter"}
VERSIONED = re.compile(r"^[a-z0-9_]+_v\d+$")
BIN = Path(sys.executable).parent


def _memory_bytes(value: str) -> int:
    return int(value)  # docker stack config normalises memory to bytes


def test_required_variables_fail_with_a_message() -> None:
    """Without DOCKERHUB_USER / IMAGE_TAG the stack refuses to resolve, saying what to set."""
    for name in ("DOCKERHUB_USER", "IMAGE_TAG"):
        env = stack_environment()
        del env[name]
        result = stack_config(env)
        assert result.returncode != 0
        assert f"required variable {name} is missing a value: set {name}" in result.stderr


def test_documented_env_covers_every_variable_of_the_stack() -> None:
    """Each ${VAR} of stack.yml is documented in deploy/stack.env.example, and vice versa."""
    lines = (ROOT / "stack.yml").read_text("utf-8").splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    documented = set(read_env_file(ENV_EXAMPLE))
    assert used == documented


def test_services(resolved_stack: dict[str, Any]) -> None:
    assert set(resolved_stack["services"]) == SERVICES


def test_every_service_is_probed_bounded_and_restarted(resolved_stack: dict[str, Any]) -> None:
    for name, service in resolved_stack["services"].items():
        deploy = service["deploy"]
        health = service["healthcheck"]
        if deploy.get("mode") == "replicated-job":
            # a job's exit code is its check; the image's API probe must be switched off
            assert health == {"disable": True}, name
            assert deploy["restart_policy"]["condition"] == "on-failure", name
        else:
            assert health["test"][0] in {"CMD", "CMD-SHELL"}, name
            assert {"interval", "timeout", "retries", "start_period"} <= set(health), name
            assert deploy["restart_policy"]["condition"] == "any", name
            update = deploy["update_config"]
            assert update["failure_action"] == "rollback", name
            assert update["order"] in {"start-first", "stop-first"}, name
            assert "rollback_config" in deploy, name
        limits = deploy["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and _memory_bytes(limits["memory"]) > 0, name
        assert "reservations" in deploy["resources"], name
        assert service["networks"] == {"churnops": None}, name


def test_probes_need_no_curl_in_churnops_images(resolved_stack: dict[str, Any]) -> None:
    """python:3.11-slim has no curl: the churnops services probe with python."""
    for name, service in churnops_image_services(resolved_stack):
        test = service["healthcheck"].get("test")
        if test:
            assert test[:2] == ["CMD", "python"], name


def test_api_rolls_out_two_replicas_start_first(resolved_stack: dict[str, Any]) -> None:
    api = resolved_stack["services"]["api"]
    deploy = api["deploy"]
    assert deploy["replicas"] == 2
    assert deploy["update_config"]["order"] == "start-first"
    assert deploy["update_config"]["failure_action"] == "rollback"
    # the predictions DB is the db service: replicas on any node
    assert "placement" not in deploy
    var_dir = api["environment"]["VAR_DIR"]
    assert {"type": "volume", "source": "api_var", "target": var_dir} in api["volumes"]
    assert api["environment"]["DATABASE_URL"] == "postgresql+psycopg://churnops@db:5432/churnops"
    assert api["environment"]["DATABASE_PASSWORD_FILE"] == "/run/secrets/db_password"
    assert {"source": "db_password_v1", "target": "db_password"} in api["secrets"]
    assert api["environment"]["ENV"] == "prod"
    assert api["environment"]["API_KEY_FILE"] == "/run/secrets/api_key"
    for role in ("writer", "reader"):  # the role keys, as Docker secrets (docs/security.md)
        assert api["environment"][f"{role.upper()}_KEY_FILE"] == f"/run/secrets/{role}_key"
        assert {"source": f"{role}_key_v1", "target": f"{role}_key"} in api["secrets"]


def test_mlflow_keeps_its_store_on_a_pinned_volume(resolved_stack: dict[str, Any]) -> None:
    mlflow = resolved_stack["services"]["mlflow"]
    command = mlflow["command"]
    assert command[:2] == ["mlflow", "server"]
    assert "--serve-artifacts" in command
    backend = command[command.index("--backend-store-uri") + 1]
    artifacts = command[command.index("--artifacts-destination") + 1]
    assert backend.startswith("sqlite:////")
    (mount,) = [v for v in mlflow["volumes"] if v["type"] == "volume"]
    assert backend.removeprefix("sqlite:///").startswith(mount["target"] + "/")
    assert artifacts.startswith(mount["target"] + "/")
    deploy = mlflow["deploy"]
    assert deploy["replicas"] == 1
    assert deploy["update_config"]["order"] == "stop-first"
    assert deploy["placement"]["constraints"]


def test_elastic_stack_matches_the_tested_version(resolved_stack: dict[str, Any]) -> None:
    """Tests run against ELASTIC_VERSION (core.monitoring): production uses the same images."""
    services = resolved_stack["services"]
    for name, product in (
        ("elasticsearch", "elasticsearch"),
        ("kibana", "kibana"),
        ("logstash", "logstash"),
    ):
        assert services[name]["image"] == f"docker.elastic.co/{product}/{product}:{ELASTIC_VERSION}"


def test_elasticsearch_is_secured_single_node_and_bounded(resolved_stack: dict[str, Any]) -> None:
    es = resolved_stack["services"]["elasticsearch"]
    env = es["environment"]
    assert env["discovery.type"] == "single-node"
    assert env["xpack.security.enabled"] == "true"
    assert env["ELASTIC_PASSWORD_FILE"] == "/run/secrets/es_password"
    assert {"source": "es_password_v1", "target": "es_password"} in es["secrets"]
    heap = re.findall(r"-Xm[sx](\d+)([gm])", env["ES_JAVA_OPTS"])
    assert len(heap) == 2 and heap[0] == heap[1]
    size, unit = heap[0]
    heap_bytes = int(size) * (1 << 30 if unit == "g" else 1 << 20)
    limit = _memory_bytes(es["deploy"]["resources"]["limits"]["memory"])
    assert heap_bytes <= limit // 2
    assert any(v["target"] == "/usr/share/elasticsearch/data" for v in es["volumes"])
    assert es["deploy"]["update_config"]["order"] == "stop-first"


def test_kibana_runs_as_kibana_system(resolved_stack: dict[str, Any]) -> None:
    kibana = resolved_stack["services"]["kibana"]
    assert kibana["environment"]["ELASTICSEARCH_USERNAME"] == "kibana_system"
    assert "ELASTICSEARCH_PASSWORD" not in kibana["environment"]  # from the secret, at start
    assert "/run/secrets/kibana_password" in " ".join(kibana["command"])
    setup = resolved_stack["services"]["setup"]
    assert {"source": "kibana_password_v1", "target": "kibana_password"} in setup["secrets"]


def test_setup_job_and_global_agent(resolved_stack: dict[str, Any]) -> None:
    services = resolved_stack["services"]
    setup = services["setup"]
    assert setup["deploy"]["mode"] == "replicated-job"
    script = " ".join(setup["command"])
    assert script.index("es_security.py") < script.index("churnops monitoring setup")
    for step in ("setup", "kibana-import"):
        assert f"churnops monitoring {step}" in script
    agent = services["agent"]
    assert agent["deploy"]["mode"] == "global"
    assert agent["command"][:3] == ["churnops", "monitoring", "agent"]
    sock = [v for v in agent["volumes"] if v.get("source") == "/var/run/docker.sock"]
    assert sock and sock[0]["read_only"] is True
    assert agent["read_only"] is True and agent["cap_drop"] == ["ALL"]


def test_the_db_service_is_postgresql_with_a_secret_password_on_a_pinned_volume(
    resolved_stack: dict[str, Any],
) -> None:
    """PostgreSQL from the stack's own db image: its cluster on a named volume of the storage
    node, the password from the same secret the API reads, probed by pg_isready, stopped
    before its successor starts (one server per data directory), as the image's user."""
    db, api = resolved_stack["services"]["db"], resolved_stack["services"]["api"]
    assert db["image"].endswith("/churnops-db:" + api["image"].rsplit(":", 1)[1])
    (mount,) = db["volumes"]
    assert mount == {"type": "volume", "source": "db_data", "target": "/var/lib/postgresql/data"}
    assert db["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
    assert {"source": "db_password_v1", "target": "db_password"} in db["secrets"]
    url = api["environment"]["DATABASE_URL"]
    user, name = db["environment"]["POSTGRES_USER"], db["environment"]["POSTGRES_DB"]
    assert url == f"postgresql+psycopg://{user}@db:5432/{name}"
    assert db["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert db["deploy"]["update_config"]["order"] == "stop-first"
    assert "node.labels.churnops.storage == true" in db["deploy"]["placement"]["constraints"]
    assert "user" not in db  # the image's user postgres
    assert "ports" not in db


def test_shipper_reads_the_api_database_as_the_api_does(resolved_stack: dict[str, Any]) -> None:
    """The outbox shipper: the API's image, database and volume; one unprivileged task."""
    services = resolved_stack["services"]
    api, shipper = services["api"], services["shipper"]
    assert shipper["image"] == api["image"]
    assert shipper["command"][:3] == ["churnops", "serve", "shipper"]
    for key in (
        "DATABASE_URL", "DATABASE_PASSWORD_FILE", "VAR_DIR", "ES_URL", "ES_USERNAME",
        "ES_PASSWORD_FILE",
    ):  # fmt: skip
        assert shipper["environment"][key] == api["environment"][key], key
    assert shipper["environment"]["ES_USERNAME"] == "churnops_writer"
    assert {"source": "es_writer_password_v1", "target": "es_writer_password"} in shipper["secrets"]
    api_volume = [v for v in api["volumes"] if v.get("source") == "api_var"]
    assert api_volume and api_volume == [v for v in shipper["volumes"] if v["type"] == "volume"]
    assert {"source": "db_password_v1", "target": "db_password"} in shipper["secrets"]
    assert "placement" not in shipper["deploy"] and "placement" not in api["deploy"]
    assert shipper["deploy"]["replicas"] == 1
    assert "user" not in shipper  # the image's user 10001
    assert "ports" not in shipper
    # the probe reads the heartbeat file the command writes
    heartbeat = shipper["command"][shipper["command"].index("--heartbeat") + 1]
    assert heartbeat in shipper["healthcheck"]["test"][-1]


def test_ports_match_the_architecture(resolved_stack: dict[str, Any]) -> None:
    """Published = target = the fixed ports of ARCHITECTURE.md, but for MLflow and Logstash
    (internal); nothing else is published."""
    published = {
        name: {p["published"] for p in service.get("ports", [])}
        for name, service in resolved_stack["services"].items()
    }
    assert {k: v for k, v in published.items() if v} == PORTS
    assert not any(published[name] for name in INTERNAL)
    for service in resolved_stack["services"].values():
        for port in service.get("ports", []):
            assert port["published"] == port["target"]


def test_the_uis_links_point_at_published_ports(resolved_stack: dict[str, Any]) -> None:
    """Links the UI gives the user's browser (API docs, Kibana, MLflow) name a published port,
    never a service name only the stack resolves; an internal tool gets no link at all."""
    published = {
        p["published"] for service in resolved_stack["services"].values()
        for p in service.get("ports", [])
    }  # fmt: skip
    ui_env = resolved_stack["services"]["ui"]["environment"]
    links = {
        name: ui_env.get(name) for name in ("API_PUBLIC_URL", "KIBANA_URL", "MLFLOW_PUBLIC_URL")
    }
    assert links["API_PUBLIC_URL"] and links["KIBANA_URL"]
    assert not links["MLFLOW_PUBLIC_URL"]  # MLflow is internal (see INTERNAL)
    for url in filter(None, links.values()):
        parsed = urlsplit(url)
        assert parsed.hostname == "localhost" and parsed.port in published, (url, published)


def test_configs_are_versioned_files_of_the_repo(resolved_stack: dict[str, Any]) -> None:
    for key, config in resolved_stack["configs"].items():
        assert VERSIONED.match(key), key
        path = Path(config["file"])
        assert path.is_relative_to(ROOT) and path.is_file(), f"{key}: {path} missing"
    used = {
        ref["source"] for s in resolved_stack["services"].values() for ref in s.get("configs", [])
    }
    assert used == set(resolved_stack["configs"])


def test_setup_mounts_every_template_and_dashboard(resolved_stack: dict[str, Any]) -> None:
    """Each committed ES template / Kibana ndjson is mounted where core.monitoring reads it."""
    configs = resolved_stack["configs"]
    mounted = {
        str(Path(configs[ref["source"]]["file"]).relative_to(ROOT)): ref["target"]
        for ref in resolved_stack["services"]["setup"]["configs"]
    }
    committed = [
        str(p.relative_to(ROOT))
        for folder in ("deploy/elasticsearch", "deploy/kibana")
        for p in sorted((ROOT / folder).rglob("*"))
        if p.is_file()
    ]
    assert committed
    for relative in committed:
        assert mounted.get(relative) == f"/app/{relative}", relative


def test_logstash_pipeline_comes_from_deploy_logstash(resolved_stack: dict[str, Any]) -> None:
    logstash = resolved_stack["services"]["logstash"]
    files = {
        str(Path(resolved_stack["configs"][ref["source"]]["file"]).relative_to(ROOT))
        for ref in logstash["configs"]
    }
    assert files and all(f.startswith("deploy/logstash/") for f in files)


def test_secrets_are_versioned_files_outside_git(resolved_stack: dict[str, Any]) -> None:
    secrets_dir = (ROOT / "secrets").resolve()
    for key, secret in resolved_stack["secrets"].items():
        assert VERSIONED.match(key), key
        path = Path(secret["file"])
        assert path.parent == secrets_dir, key
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", str(path)], cwd=ROOT, check=False
        ).returncode
        assert ignored == 0, f"{path} is not git-ignored"
    names = {s.removesuffix("_v1") for s in resolved_stack["secrets"]}
    assert {"es_password", "api_key", "smtp_password", "kibana_password"} <= names
    assert {"writer_key", "reader_key"} <= names


def test_secret_values_never_reach_environment_or_argv(resolved_stack: dict[str, Any]) -> None:
    for name, service in resolved_stack["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|API_KEY|TOKEN|SECRET", key) and value:
                assert key.endswith("_FILE") and value.startswith("/run/secrets/"), (name, key)


def test_api_and_ui_start_the_one_way_they_are_defined(resolved_stack: dict[str, Any]) -> None:
    """The stack does not restate how the API and the UI start: the images' CMD is
    `churnops serve api|ui` (ops/services.py, the same as make serve / make ui / make run)."""
    services = resolved_stack["services"]
    for kind in ("api", "ui"):
        assert services[kind]["image"].split("/")[-1].startswith(f"churnops-{kind}:")
        assert "command" not in services[kind]
        assert parse_dockerfile(DOCKERFILES[kind]).exec_form("CMD") == ["churnops", "serve", kind]


@pytest.mark.slow
def test_image_commands_exist_in_the_code(resolved_stack: dict[str, Any]) -> None:
    """Every command the churnops images run points at code and flags that exist."""
    services = resolved_stack["services"]
    serve_help = _help([str(BIN / "churnops"), "serve", "--help"])
    monitoring_help = _help([str(BIN / "churnops"), "monitoring", "--help"])
    for step in ("setup", "kibana-import", "export-mlflow", "agent", "ship"):
        assert step in monitoring_help, f"churnops monitoring has no {step!r} command"
    assert "{api,ui,shipper,exporter}" in serve_help
    served = {"shipper": services_module.shipper, "exporter": services_module.exporter}
    for name, definition in served.items():  # `churnops serve NAME ARGS` = the definition + ARGS
        command = next(
            c for s in services.values() if (c := s.get("command", []))[1:3] == ["serve", name]
        )
        step = list(definition(Settings(_env_file=None)).argv[3:5])  # [monitoring, STEP]
        step_help = _help([str(BIN / "churnops"), *step, "--help"])
        for flag in (c for c in command if c.startswith("--")):
            assert flag in step_help, f"churnops {' '.join(step)} has no {flag}"
    agent = next(
        c for s in services.values() if (c := s.get("command", []))[1:3] == ["monitoring", "agent"]
    )
    agent_help = _help([str(BIN / "churnops"), "monitoring", "agent", "--help"])
    assert all(flag in agent_help for flag in agent if flag.startswith("--"))
    # scripts the setup job runs are configs mounted under /app, from files of the repo
    setup = services["setup"]
    mounted = {ref["target"] for ref in setup["configs"]}
    for script in re.findall(r"python (\S+\.py)", " ".join(setup["command"])):
        assert f"/app/{script}" in mounted and (ROOT / script).is_file(), script


@pytest.mark.parametrize("service", ["api", "ui"])
def test_every_flag_of_the_service_definitions_exists_in_the_locked_tools(service: str) -> None:
    """uvicorn's and streamlit's flags as ops/services.py passes them exist in the locked tools."""
    definition = getattr(services_module, service)(Settings(_env_file=None))
    command = list(definition.argv)
    tool = command[2]  # python -m <tool>
    if tool == "streamlit":
        text = _help([str(BIN / tool), "config", "show"])
        for flag in (c.removeprefix("--") for c in command if c.startswith("--")):
            section, _, option = flag.partition(".")
            assert f"[{section}]" in text and f"{option} =" in text, flag
        return
    text = _help([str(BIN / tool), "--help"])
    for flag in (c for c in command if c.startswith("--")):
        assert flag in text, f"{tool} has no {flag}"


@pytest.mark.slow
def test_every_flag_of_mlflow_server_exists(resolved_stack: dict[str, Any]) -> None:
    command = resolved_stack["services"]["mlflow"]["command"]
    assert command[:2] == ["mlflow", "server"]
    text = _help([str(BIN / "mlflow"), "server", "--help"])
    for flag in (c for c in command if c.startswith("--")):
        assert flag in text, f"mlflow server has no {flag}"


def _help(command: list[str]) -> str:
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_swarm_object_names_fit_with_the_stack_name(resolved_stack: dict[str, Any]) -> None:
    """Swarm names a config/secret/volume `<stack>_<key>` and refuses names over 64 characters:
    every key fits with the documented stack name `churnops` (and the live test's `churntest`)."""
    keys = [*resolved_stack["configs"], *resolved_stack["secrets"], *resolved_stack["volumes"]]
    for stack in ("churnops", "churntest"):
        too_long = [k for k in keys if len(f"{stack}_{k}") > 64]
        assert not too_long, (stack, too_long)


def test_root_services_without_capabilities_write_where_root_owns(
    resolved_stack: dict[str, Any],
) -> None:
    """Root with every capability dropped cannot write into a folder another user owns: a volume
    mounted over one of the image's folders owned by its user (a new volume copies that owner)
    fails at the first write (the agent's spool did, on the first live deploy)."""
    text = DOCKERFILES["api"].read_text("utf-8")
    owned = set(re.findall(r"chown \S+ ((?:/\S+ ?)+)", text)[0].split())
    assert "/var/lib/churnops" in owned
    for name, service in resolved_stack["services"].items():
        if str(service.get("user", "")).split(":")[0] != "0" or "ALL" not in service.get(
            "cap_drop", []
        ):
            continue
        for volume in service.get("volumes", []):
            if volume["type"] == "volume":
                assert volume["target"] not in owned, (name, volume["target"])
                assert service["environment"]["VAR_DIR"] == volume["target"], name
