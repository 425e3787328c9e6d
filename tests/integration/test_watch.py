"""``make watch`` (ops.watch) on a temporary copy of a project, with a fast fake pipeline command.

The watcher is real (watchdog's inotify observer, debouncing, subprocesses); only the pipeline
command is a fake: a tiny script that records which pipeline ran, and fails when told to.
"""

from __future__ import annotations

import _thread
import io
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ops import watch
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

DEBOUNCE_S = 0.4
FAKE_PIPELINE = """\
import pathlib, sys
name = sys.argv[1]
here = pathlib.Path(__file__).parent
with open(here / "runs.txt", "a", encoding="utf-8") as runs:
    runs.write(name + "\\n")
print(f"pipeline {name} output")
sys.exit(1 if (here / f"fail-{name}").exists() else 0)
"""


class Project:
    """A small project tree under ``tmp_path/proj`` plus the fake pipeline beside it."""

    def __init__(self, tmp_path: Path) -> None:
        self.base = tmp_path
        self.root = tmp_path / "proj"
        for rel, text in {
            "core/a.py": "A = 1\n",
            "tests/test_a.py": "def test_a():\n    pass\n",
            "data/raw/churn.csv": "state,churn\nKS,no\n",
            "Makefile": "all:\n",
            ".venv/lib/site.py": "",
            "var/keep": "",
            "mlruns/0/meta.yaml": "",
            "node_modules/x/index.js": "",
            "core/__pycache__/a.cpython-311.pyc": "",
        }.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        subprocess.run(["git", "init", "-q", str(self.root)], check=True)
        shutil.copy2(ROOT / ".gitignore", self.root / ".gitignore")
        script = tmp_path / "fake_pipeline.py"
        script.write_text(FAKE_PIPELINE, encoding="utf-8")
        self.command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {{name}}"

    def runs(self) -> list[str]:
        """The pipelines the fake command has run, in order."""
        path = self.base / "runs.txt"
        return path.read_text(encoding="utf-8").split() if path.exists() else []

    def touch(self, rel: str, times: int = 1) -> None:
        """Save a file ``times`` times in a quick burst (like an editor's save + format)."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for i in range(times):
            with path.open("a", encoding="utf-8") as handle:
                handle.write(f"# save {i}\n")
            time.sleep(0.05)

    def fail(self, name: str, failing: bool = True) -> None:
        """Make the fake pipeline ``name`` fail (or pass again)."""
        flag = self.base / f"fail-{name}"
        if failing:
            flag.touch()
        else:
            flag.unlink()


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Poll until ``condition`` holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {condition}")
        time.sleep(0.05)


def settle() -> None:
    """Long enough for any pending burst to be debounced and run."""
    time.sleep(DEBOUNCE_S * 4 + 0.5)


@pytest.fixture()
def project(tmp_path: Path) -> Project:
    """A fresh project copy for one test."""
    return Project(tmp_path)


@pytest.fixture()
def running(project: Project) -> Iterator[tuple[watch.Watcher, io.StringIO]]:
    """A watcher on the project copy, processing batches in a background thread."""
    out = io.StringIO()
    watcher = watch.Watcher(
        root=project.root, command=project.command, debounce_s=DEBOUNCE_S, out=out
    )
    watcher.start()
    thread = threading.Thread(target=watcher.loop, daemon=True)
    thread.start()
    try:
        yield watcher, out
    finally:
        watcher.stop()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the watcher did not stop"


def test_each_burst_runs_the_matching_pipeline_once(
    project: Project, running: tuple[watch.Watcher, io.StringIO]
) -> None:
    watcher, out = running

    project.touch("core/a.py", times=5)
    project.touch("tests/test_a.py", times=2)
    wait_for(lambda: len(project.runs()) >= 1)
    settle()
    assert project.runs() == ["code"]

    project.touch("data/raw/churn.csv", times=4)
    wait_for(lambda: len(project.runs()) >= 3)
    settle()
    assert project.runs() == ["code", "data", "train"]

    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines  # one compact status line per run
    assert "code" in lines[0] and "passed" in lines[0] and "core/a.py" in lines[0]
    assert "data" in lines[1] and "train" in lines[2]
    assert [o.name for o in watcher.outcomes] == ["code", "data", "train"]
    assert all(o.log_path.is_file() for o in watcher.outcomes)
    assert "pipeline train output" in watcher.outcomes[2].log_path.read_text(encoding="utf-8")


def test_ignored_folders_never_trigger(
    project: Project, running: tuple[watch.Watcher, io.StringIO]
) -> None:
    for rel in (
        ".venv/lib/site.py",
        "var/keep",
        "var/watch/some.log",
        "mlruns/0/meta.yaml",
        ".git/HEAD",
        "node_modules/x/index.js",
        "core/__pycache__/a.cpython-311.pyc",
        "core/.a.py.swp",
        ".mypy_cache/3.11/x.json",
        "coverage.xml",
    ):
        project.touch(rel, times=2)
    settle()
    assert project.runs() == []
    assert running[1].getvalue() == ""


def test_keeps_running_after_a_failure(
    project: Project, running: tuple[watch.Watcher, io.StringIO]
) -> None:
    _, out = running
    project.fail("code")
    project.touch("core/a.py")
    wait_for(lambda: "FAILED (exit 1)" in out.getvalue())

    project.fail("code", failing=False)
    project.touch("core/a.py")
    wait_for(lambda: "passed" in out.getvalue())
    assert project.runs() == ["code", "code"]

    project.fail("data")  # a failed data pipeline must not be followed by training
    project.touch("data/raw/churn.csv")
    wait_for(lambda: "train skipped: data failed" in out.getvalue())
    settle()
    assert project.runs() == ["code", "code", "data"]


def test_new_top_level_folders_are_watched(
    project: Project, running: tuple[watch.Watcher, io.StringIO]
) -> None:
    (project.root / "newpkg").mkdir()
    time.sleep(0.5)  # the observer schedules the new folder from the root's "created" event
    project.touch("newpkg/mod.py")
    wait_for(lambda: "newpkg/mod.py" in running[1].getvalue())
    assert project.runs() == ["code"]


def test_main_stops_cleanly_on_ctrl_c(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    """``churnops watch`` in-process: a change runs once, then Ctrl-C ends it with code 0."""

    def drive() -> None:
        time.sleep(0.5)
        project.touch("core/a.py", times=3)
        wait_for(lambda: len(project.runs()) == 1)
        time.sleep(1.0)  # let the watcher finish the run and print its status line
        _thread.interrupt_main()  # what Ctrl-C does

    previous = signal.getsignal(signal.SIGTERM)
    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        code = watch.main(
            [
                "--root",
                str(project.root),
                "--command",
                project.command,
                "--debounce",
                str(DEBOUNCE_S),
            ]
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    driver.join(timeout=5)
    assert code == 0
    out = capsys.readouterr().out
    assert "watching" in out
    assert "watch stopped: 1 run(s), 0 failed" in out
    assert project.runs() == ["code"]


def test_cli_process_runs_and_stops_on_sigint(project: Project) -> None:
    """The real ``churnops watch`` process: status line per run, clean stop on SIGINT."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "ops.cli", "watch", "--root", str(project.root)]
    argv += ["--command", project.command, "--debounce", str(DEBOUNCE_S)]
    with subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        lines: list[str] = []

        def reader() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        try:
            wait_for(lambda: any(line.startswith("watching") for line in lines))
            project.touch("data/raw/churn.csv", times=3)
            wait_for(lambda: sum(" train " in line for line in lines) == 1)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        thread.join(timeout=5)
    text = "".join(lines)
    assert project.runs() == ["data", "train"]
    assert "watch stopped: 2 run(s), 0 failed" in text
    assert "Traceback" not in text
