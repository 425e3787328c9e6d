"""CI files: GitHub workflows lint clean, and every make target that CI, Jenkins or a pipeline calls
exists (listed by ``make help``, so it also has its ``## description``)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, need
from tests.net import free_port

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
JENKINSFILE = ROOT / "Jenkinsfile"
AUTOMATION_MK = ROOT / "mk" / "automation.mk"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SHELL_SPLIT = re.compile(r"\|\||&&|[|;\n]|\bthen\b|\bdo\b")


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run make in the project (no network, no side effects for the targets used here)."""
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


@cache
def help_targets() -> frozenset[str]:
    """Every target ``make help`` lists."""
    result = make("-s", "help")
    assert result.returncode == 0, result.stderr
    return frozenset(
        line.split()[0] for line in ANSI.sub("", result.stdout).splitlines() if line.strip()
    )


def make_targets_in(command: str) -> list[str]:
    """The targets of every ``make ...`` call in a shell command (options and VAR=x skipped)."""
    targets: list[str] = []
    for segment in SHELL_SPLIT.split(command):
        try:
            words = shlex.split(segment.split(">")[0], comments=True)
        except ValueError:  # an unbalanced quote across a split point: not a make call
            continue
        while words and words[0] in ("if", "!", "then", "else", "time", "exec"):
            words = words[1:]
        if not words or words[0] != "make":
            continue
        targets += [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    return targets


def load_workflow(path: Path) -> dict[Any, Any]:
    """A workflow as a dict (PyYAML reads the ``on`` key as True: normalised back to "on")."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    if True in data:
        data["on"] = data.pop(True)
    return data


def workflow_commands(data: dict[Any, Any]) -> list[str]:
    """Every ``run:`` script of a workflow."""
    return [
        step["run"]
        for job in data["jobs"].values()
        for step in job.get("steps", [])
        if "run" in step
    ]


def jenkins_commands() -> list[str]:
    """Every ``sh`` script of the Jenkinsfile (comments stripped first)."""
    text = "\n".join(
        re.sub(r"\s//.*$", "", line)
        for line in JENKINSFILE.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("//")
    )
    found = re.findall(r"""sh\s*\(?\s*(?:'''(.*?)'''|'([^']*)'|"([^"]*)")""", text, re.S)
    return [next(part for part in groups if part) for groups in found]


def test_the_parser_finds_make_targets() -> None:
    assert make_targets_in('make test-code PYTEST_ARGS="--x=1" | tee x') == ["test-code"]
    assert make_targets_in("if ! make -s model-version > v.txt; then\n make train\nfi") == [
        "model-version",
        "train",
    ]
    assert make_targets_in("make install\nmake tools && echo make-believe") == ["install", "tools"]
    assert make_targets_in("echo no make here") == []


def test_expected_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} >= {"code.yml", "data.yml", "train.yml", "docker.yml"}


def test_workflow_triggers_and_uv_cache() -> None:
    flows = {p.stem: load_workflow(p) for p in WORKFLOWS}
    assert {"push", "pull_request"} <= set(flows["code"]["on"])
    assert "data/**" in flows["data"]["on"]["push"]["paths"]
    assert {"workflow_dispatch", "schedule"} <= set(flows["train"]["on"])
    docker_push = flows["docker"]["on"]["push"]
    assert docker_push["branches"] == ["main"] and docker_push["tags"]
    for name, flow in flows.items():
        for job in flow["jobs"].values():
            steps = job.get("steps", [])
            if any("make install" in step.get("run", "") for step in steps):
                uv = [s for s in steps if str(s.get("uses", "")).startswith("astral-sh/setup-uv")]
                assert uv and uv[0]["with"]["enable-cache"] is True, f"{name}: no uv cache"


def test_train_workflow_uploads_the_mlflow_run() -> None:
    steps = load_workflow(ROOT / ".github/workflows/train.yml")["jobs"]["train"]["steps"]
    upload = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert upload and "var/mlartifacts/" in upload[0]["with"]["path"]


def test_docker_workflow_tags_images_with_sha_and_model_version() -> None:
    jobs = load_workflow(ROOT / ".github/workflows/docker.yml")["jobs"]
    images = jobs["images"]
    assert images["strategy"]["matrix"]["image"] == ["api", "ui"]
    meta = next(s for s in images["steps"] if s.get("id") == "meta")
    assert "type=sha" in meta["with"]["tags"] and "model-v" in meta["with"]["tags"]
    login = next(s for s in images["steps"] if "login-action" in str(s.get("uses", "")))
    assert "secrets.DOCKERHUB_TOKEN" in login["with"]["password"]
    for step in images["steps"]:
        if "build-push-action" in str(step.get("uses", "")):
            assert (ROOT / f"Dockerfile.{'api'}").is_file() and (ROOT / "Dockerfile.ui").is_file()
            assert step["with"]["file"] == "Dockerfile.${{ matrix.image }}"


def test_workflows_match_the_github_schema() -> None:
    tool = ROOT / ".venv" / "bin" / "check-jsonschema"
    result = subprocess.run(
        [str(tool), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def actionlint_path() -> str | None:
    """$ACTIONLINT, actionlint on PATH, or the copy `make tools` builds under TOOLS_DIR."""
    if os.environ.get("ACTIONLINT"):
        return os.environ["ACTIONLINT"]
    version = re.search(r"^ACTIONLINT_VERSION \?= (\S+)$", AUTOMATION_MK.read_text(), re.M)
    assert version is not None
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    built = Path(cache_home) / "churnops" / "tools" / f"actionlint-{version[1]}" / "actionlint"
    if built.is_file():
        return str(built)
    return shutil.which("actionlint")


def test_workflows_pass_actionlint() -> None:
    tool = actionlint_path()
    need(tool is not None, "actionlint is not installed: run `make tools` (needs Go)")
    assert tool is not None
    result = subprocess.run(
        [tool, "-no-color", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_jenkinsfile_is_declarative_with_the_same_stages_and_email() -> None:
    text = JENKINSFILE.read_text(encoding="utf-8")
    assert text.count("{") == text.count("}")
    stages = re.findall(r"stage\('([^']+)'\)", text)
    assert stages == ["Install", "Code", "Data", "Train", "Deploy"]
    post = text[text.rindex("\n    post {") :]
    assert "failure" in post and "emailext" in post and "BUILD_LOG" in post


@pytest.mark.parametrize(
    "source",
    [*(p.name for p in WORKFLOWS), "Jenkinsfile"],
)
def test_every_make_target_called_by_ci_exists(source: str) -> None:
    if source == "Jenkinsfile":
        commands = jenkins_commands()
    else:
        commands = workflow_commands(load_workflow(ROOT / ".github" / "workflows" / source))
    called = {target for command in commands for target in make_targets_in(command)}
    assert called, f"{source} calls no make target"
    missing = sorted(called - help_targets())
    assert not missing, f"{source} calls make targets that do not exist: {missing}"


@pytest.mark.parametrize("pipeline", ["code", "data", "train", "deploy", "all"])
def test_every_pipeline_step_exists(pipeline: str) -> None:
    result = make("-n", f"pipeline-{pipeline}", "DEPLOY=1")
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if "churnops pipeline run" in ln)
    words = shlex.split(line)
    steps = words[words.index(pipeline, words.index("run")) + 1 :]
    assert steps, line
    missing = sorted(set(steps) - help_targets())
    assert not missing, f"pipeline-{pipeline} runs make targets that do not exist: {missing}"


def test_pipelines_are_listed_in_help() -> None:
    expected = {f"pipeline-{name}" for name in ("code", "data", "train", "deploy", "all")}
    assert expected | {"watch", "hooks", "sonar", "test-code", "test-data"} <= help_targets()


def test_pre_commit_config_runs_the_venv_tools() -> None:
    config = ROOT / ".pre-commit-config.yaml"
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "pre-commit"), "validate-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    hooks = {
        hook["id"]: hook
        for repo in yaml.safe_load(config.read_text(encoding="utf-8"))["repos"]
        for hook in repo["hooks"]
    }
    assert {"black", "flake8", "mypy", "bandit"} <= set(hooks)
    for hook in hooks.values():
        assert (ROOT / hook["entry"].split()[0]).is_file(), hook["entry"]


def test_sonar_properties_match_the_reports_make_writes() -> None:
    props = dict(
        line.split("=", 1)
        for line in (ROOT / "sonar-project.properties").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert props["sonar.python.coverage.reportPaths"] == "var/coverage.xml"
    recipe = AUTOMATION_MK.read_text(encoding="utf-8")
    for key in ("pylint", "flake8", "bandit"):
        assert props[f"sonar.python.{key}.reportPaths"] in recipe
    assert "coverage.xml" in (ROOT / "Makefile").read_text(encoding="utf-8")


def test_sonar_without_a_server_is_skipped_with_a_message() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SONAR_HOST_URL"}
    result = make("sonar", env=env)
    assert result.returncode == 0, result.stderr
    assert "sonar: skipped: SONAR_HOST_URL is not set" in result.stdout


def test_deploy_without_docker_fails_with_a_clear_message(tmp_path: Path) -> None:
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    result = make("docker-check", env=env)
    assert result.returncode != 0
    assert "make docker-check needs a running Docker engine" in result.stderr
    for target in ("deploy", "docker-build", "swarm-init"):  # each says so first, no raw error
        result = make(target, env=env)
        assert result.returncode != 0, target
        assert f"make {target} needs a running Docker engine" in result.stderr, result.stderr
        assert "Cannot connect" not in result.stderr, target


@pytest.mark.parametrize(
    "source", [".github/workflows/code.yml", "Jenkinsfile", ".ci/run", "mk/automation.mk"]
)
def test_every_ci_runs_the_one_list_of_gates(source: str) -> None:
    """The gates are listed once (GATES in the Makefile); each CI entry point runs `make gates`
    and none of them lists a gate of its own."""
    text = (ROOT / source).read_text(encoding="utf-8")
    assert re.search(r"\bgates\b", text), f"{source} does not run make gates"
    for gate in ("format-check", "typecheck", "make lint", "make security"):
        assert gate not in text, f"{source} lists the gate {gate!r} itself"


def test_stack_train_without_a_stack_says_so_in_one_line(tmp_path: Path) -> None:
    """No stack answering: one line naming the API's URL and what to check, no traceback."""
    (tmp_path / "api_key").write_text("k")
    url = f"http://127.0.0.1:{free_port()}"
    result = make("stack-train", f"SECRETS_DIR={tmp_path}", f"STACK_API_URL={url}")
    assert result.returncode != 0
    assert f"stack-train: the API at {url} did not answer" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_docker_push_without_a_token_says_so_before_anything_else(tmp_path: Path) -> None:
    """An engine answers but DOCKERHUB_TOKEN is unset: the token's message comes first, before
    the champion lookup that names the model tag (it would start the CLI and open a store)."""
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k != "DOCKERHUB_TOKEN"}
    env |= {"PATH": f"{fake.parent}{os.pathsep}{env['PATH']}", "VAR_DIR": str(var)}
    result = make("docker-push", env=env)
    assert result.returncode != 0
    assert "set DOCKERHUB_TOKEN" in result.stderr
    assert not var.exists()  # no store was opened to name a tag


def test_docker_push_with_the_example_s_placeholder_user_says_so(tmp_path: Path) -> None:
    """A token but DOCKERHUB_USER still deploy/stack.env.example's placeholder: refused before
    the login (which would fail at Docker Hub with a less helpful message) and the lookup."""
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    example = dict(
        line.split("=", 1)
        for line in (ROOT / "deploy" / "stack.env.example").read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    )
    env = {k: v for k, v in os.environ.items() if k != "DOCKERHUB_USER"}
    env |= {
        "PATH": f"{fake.parent}{os.pathsep}{env['PATH']}",
        "VAR_DIR": str(tmp_path / "var"),
        "DOCKERHUB_TOKEN": "t",
    }
    result = make("docker-push", "STACK_ENV=deploy/stack.env.example", env=env)
    assert result.returncode != 0
    assert (
        f"DOCKERHUB_USER is the placeholder of deploy/stack.env.example "
        f"({example['DOCKERHUB_USER']})" in result.stderr
    )
    assert not (tmp_path / "var").exists()
