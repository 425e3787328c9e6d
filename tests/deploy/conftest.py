"""Shared helpers of the deployment tests: the resolved stack, the Dockerfiles, the build context.

Docker cannot build or run images on these machines, so the stack is resolved offline with
``docker stack config`` and the Dockerfiles are checked as data (plus hadolint, plus a venv built
like the images' one in ``test_runtime.py``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, need

STACK_FILE = ROOT / "stack.yml"
ENV_EXAMPLE = ROOT / "deploy" / "stack.env.example"
DOCKERFILES = {"api": ROOT / "Dockerfile.api", "ui": ROOT / "Dockerfile.ui"}
STACK_VARIABLES = ("DOCKERHUB_USER", "IMAGE_TAG", "SECRETS_DIR")


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of an env file (comments and blank lines skipped, no quoting)."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", line):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def stack_environment(**overrides: str) -> dict[str, str]:
    """The process environment with the documented stack variables (and overrides) applied."""
    documented = read_env_file(ENV_EXAMPLE)
    env = {k: v for k, v in os.environ.items() if k not in documented}
    env.update(documented)
    env.update(overrides)
    return env


def docker_cli() -> str:
    """The docker CLI (it validates stacks offline); missing fails in CI."""
    docker = shutil.which("docker")
    need(docker is not None, "the docker CLI is needed for `docker stack config`")
    assert docker is not None
    return docker


def stack_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``docker stack config -c stack.yml`` (offline) with ``env``."""
    return subprocess.run(
        [docker_cli(), "stack", "config", "-c", str(STACK_FILE)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def resolved_stack() -> dict[str, Any]:
    """stack.yml as Swarm would deploy it with the documented env (deploy/stack.env.example)."""
    result = stack_config(stack_environment())
    assert result.returncode == 0, result.stderr
    stack = yaml.safe_load(result.stdout)
    assert isinstance(stack, dict)
    return stack


# --- Dockerfiles ---------------------------------------------------------------------------------
@dataclass
class Instruction:
    """One Dockerfile instruction (continuation lines joined, comments dropped)."""

    keyword: str
    args: str
    line: int


@dataclass
class Dockerfile:
    """The instructions of a Dockerfile, split in build stages."""

    path: Path
    instructions: list[Instruction] = field(default_factory=list)

    @property
    def stages(self) -> list[list[Instruction]]:
        """Instructions grouped per ``FROM`` (the ARGs before the first FROM are left out)."""
        out: list[list[Instruction]] = []
        for ins in self.instructions:
            if ins.keyword == "FROM":
                out.append([])
            if out:
                out[-1].append(ins)
        return out

    @property
    def runtime(self) -> list[Instruction]:
        """The final stage: what the image is."""
        return self.stages[-1]

    def exec_form(self, keyword: str) -> list[str]:
        """The JSON (exec) form of the last ``keyword`` of the final stage (CMD, ENTRYPOINT)."""
        found = [ins for ins in self.runtime if ins.keyword == keyword]
        assert found, f"{self.path.name}: no {keyword}"
        value = json.loads(found[-1].args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value

    def healthcheck(self) -> list[str]:
        """The HEALTHCHECK command (exec form) of the final stage."""
        found = [ins for ins in self.runtime if ins.keyword == "HEALTHCHECK"]
        assert found, f"{self.path.name}: no HEALTHCHECK"
        _, _, command = found[-1].args.partition(" CMD ")
        value = json.loads(command)
        assert isinstance(value, list)
        return [str(v) for v in value]

    def env(self) -> dict[str, str]:
        """ENV of the final stage (``KEY=VALUE`` pairs)."""
        values: dict[str, str] = {}
        for ins in self.runtime:
            if ins.keyword == "ENV":
                for pair in shlex.split(ins.args):
                    key, _, value = pair.partition("=")
                    values[key] = value
        return values

    def labels(self) -> dict[str, str]:
        """LABELs of the final stage."""
        values: dict[str, str] = {}
        for ins in self.runtime:
            if ins.keyword == "LABEL":
                for pair in shlex.split(ins.args):
                    key, _, value = pair.partition("=")
                    values[key] = value
        return values


@lru_cache(maxsize=None)
def parse_dockerfile(path: Path) -> Dockerfile:
    """Parse a Dockerfile into instructions (enough for the checks here, not a full parser)."""
    parsed = Dockerfile(path)
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        text = " ".join(pending)
        pending = []
        keyword, _, args = text.partition(" ")
        parsed.instructions.append(Instruction(keyword.upper(), args.strip(), start))
    return parsed


# --- .dockerignore --------------------------------------------------------------------------------
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (moby patternmatcher rules: ``**``, ``*``, ``?``)."""
    out = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out += "(?:.*/)?"
                i += 1
            else:
                out += ".*"
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        else:
            out += re.escape(char)
        i += 1
    return re.compile(f"^{out}$")


@lru_cache(maxsize=1)
def dockerignore_rules() -> tuple[tuple[bool, re.Pattern[str]], ...]:
    """(negated, regex) for each rule of .dockerignore, in order."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return tuple(rules)


def in_build_context(relative: str) -> bool:
    """Whether a repo-relative path reaches the image build context.

    The last matching rule wins, and a rule matching a parent folder matches everything below it.
    """
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for negated, regex in dockerignore_rules():
        if any(regex.match(candidate) for candidate in candidates):
            included = negated
    return included


def repo_files() -> list[str]:
    """Files of the working tree that git would consider (tracked + untracked, not git-ignored)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if line and (ROOT / line).is_file()]


def context_files() -> list[str]:
    """The repo files that the build context holds."""
    return [path for path in repo_files() if in_build_context(path)]


def churnops_image_services(stack: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    """(name, service) of the services that run one of the two churnops Python images (not the
    db image: PostgreSQL from Debian)."""
    for name, service in stack["services"].items():
        if re.search(r"/churnops-(api|ui):", service["image"]):
            yield name, service
