"""Pipeline runner: run a pipeline's gates (make targets) in order, stop at the first failure.

``make pipeline-code`` calls ``churnops pipeline run code format-check lint ...``: each step
is one ``make <step>``, streamed to the console and captured to
``<var_dir>/pipelines/<stamp>-<name>/<nn>-<step>.log``, with its duration. At the end a
``summary.json`` is written next to the logs, a desktop notification says name, result and duration,
and an email goes out for ``pipeline-all`` and for every failure (failing step + the tail of its
log). The exit code is the failing step's.

Subprocesses are started from argv lists, never through a shell (hence the bandit ``nosec``).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import re
import shlex
import subprocess  # nosec B404
import sys
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from core import notify
from core.arguments import add_command, doc_text
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 60
EmailPolicy = Literal["auto", "always", "never"]


class StepResult(BaseModel):
    """One gate of a pipeline run."""

    name: str
    returncode: int
    duration_s: float
    log_path: Path

    @property
    def ok(self) -> bool:
        """True when the step exited 0."""
        return self.returncode == 0


class PipelineRun(BaseModel):
    """The outcome of one pipeline run (also written as ``summary.json``)."""

    name: str
    started_at: datetime
    duration_s: float = 0.0
    steps: list[StepResult] = Field(default_factory=list)
    log_dir: Path
    planned: list[str] = Field(default_factory=list)

    @property
    def failed_step(self) -> StepResult | None:
        """The step that stopped the run, if any."""
        return next((step for step in self.steps if not step.ok), None)

    @property
    def ok(self) -> bool:
        """True when every planned step ran and passed."""
        return self.failed_step is None and len(self.steps) == len(self.planned)

    @property
    def returncode(self) -> int:
        """0 on success, else the failing step's exit code (1 if it had none)."""
        failed = self.failed_step
        if failed is None:
            return 0 if self.ok else 1
        return failed.returncode or 1


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of a text file ('' when it does not exist)."""
    if not path.is_file():
        return ""
    with path.open(encoding="utf-8", errors="replace") as handle:
        return "".join(deque(handle, maxlen=lines))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "step"


def run_step(command: Sequence[str], log_path: Path, echo: bool = True) -> int:
    """Run one command, streaming its merged stdout/stderr to the console and to ``log_path``.

    Returns:
        The command's exit code (127 when it could not be started).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as sink:
        sink.write(f"$ {shlex.join(command)}\n")
        sink.flush()
        try:
            with subprocess.Popen(  # nosec B603
                list(command),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
            ) as proc:
                for line in proc.stdout or ():
                    sink.write(line)
                    if echo:
                        sys.stdout.write(line)
                        sys.stdout.flush()
                return proc.wait()
        except OSError as exc:
            sink.write(f"could not start {command[0]}: {exc}\n")
            return 127


def run_pipeline(
    name: str,
    steps: Sequence[str],
    settings: Settings,
    make: Sequence[str] = ("make",),
    echo: bool = True,
) -> PipelineRun:
    """Run ``make <step>`` for each step in order and stop at the first failure.

    Args:
        name: the pipeline's name (``code``, ``data``, ``train``, ``deploy``, ``all``).
        steps: make targets, in order.
        settings: ``var_dir`` decides where the logs go.
        make: the command that runs one step (the step is appended).
        echo: also stream each step's output to stdout.

    Returns:
        The run, with one :class:`StepResult` per step that ran.
    """
    started = datetime.now(timezone.utc)
    stamp = started.strftime("%Y%m%dT%H%M%S")
    log_dir = settings.var_dir / "pipelines" / f"{stamp}-{_slug(name)}"
    run = PipelineRun(name=name, started_at=started, log_dir=log_dir, planned=list(steps))
    t0 = time.monotonic()
    for index, step in enumerate(steps, start=1):
        print(f"==> [{name} {index}/{len(steps)}] {step}", flush=True)
        log_path = log_dir / f"{index:02d}-{_slug(step)}.log"
        s0 = time.monotonic()
        code = run_step([*make, step], log_path, echo=echo)
        result = StepResult(
            name=step, returncode=code, duration_s=time.monotonic() - s0, log_path=log_path
        )
        run.steps.append(result)
        print(
            f"<== [{name} {index}/{len(steps)}] {step}: "
            f"{'ok' if result.ok else f'FAILED (exit {code})'} in {result.duration_s:.1f}s",
            flush=True,
        )
        if not result.ok:
            break
    run.duration_s = time.monotonic() - t0
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "summary.json").write_text(run.model_dump_json(indent=2), encoding="utf-8")
    return run


def summary_text(run: PipelineRun) -> str:
    """A plain-text report of a run: one line per step, then the failing step's log tail."""
    lines = [
        f"pipeline {run.name}: {'passed' if run.ok else 'FAILED'} in {run.duration_s:.1f}s",
        f"started {run.started_at.isoformat(timespec='seconds')} on {platform.node()}",
        f"logs: {run.log_dir}",
        "",
    ]
    ran = {step.name for step in run.steps}
    for step in run.steps:
        status = "ok" if step.ok else f"FAILED (exit {step.returncode})"
        lines.append(f"  {step.name:<16} {status:<18} {step.duration_s:7.1f}s")
    lines.extend(f"  {name:<16} not run" for name in run.planned if name not in ran)
    failed = run.failed_step
    if failed is not None:
        lines += [
            "",
            f"failing step: {failed.name} (exit {failed.returncode})",
            f"last {LOG_TAIL_LINES} lines of {failed.log_path}:",
            "",
            tail(failed.log_path),
        ]
    return "\n".join(lines)


def run_title(run: PipelineRun) -> str:
    """``"pipeline code passed"`` / ``"pipeline code FAILED at lint"``."""
    failed = run.failed_step
    result = "passed" if run.ok else f"FAILED at {failed.name}" if failed else "FAILED"
    return f"pipeline {run.name} {result}"


def notify_run(
    run: PipelineRun, settings: Settings, email: EmailPolicy = "auto", desktop: bool = True
) -> None:
    """Desktop notification for every run; email for ``all`` and failures (``email="auto"``)."""
    title = run_title(run)
    if desktop:
        message = f"{len(run.steps)}/{len(run.planned)} steps in {run.duration_s:.0f}s"
        notify.notify_desktop(f"churnops: {title}", message)
    if email == "always" or (email == "auto" and (run.name == "all" or not run.ok)):
        notify.send_email(f"[churnops] {title}", summary_text(run), settings)


def main(argv: Sequence[str] | None = None) -> int:
    """``churnops pipeline``: run a pipeline, or print the champion's model version."""
    parser = argparse.ArgumentParser(prog="churnops pipeline", description=doc_text(main.__doc__))
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = add_command(sub, "run", "run make targets as one pipeline, then notify")
    run_p.add_argument("name", help="pipeline name: code, data, train, deploy, all")
    run_p.add_argument("steps", nargs="+", help="make targets, in order")
    run_p.add_argument(
        "--make",
        default=os.environ.get("MAKE", "make"),
        help="command that runs one step; the step is appended (default: $MAKE or make)",
    )
    run_p.add_argument(
        "--email",
        choices=["auto", "always", "never"],
        default="auto",
        help="auto: email for pipeline 'all' and for failures",
    )
    run_p.add_argument("--no-desktop", action="store_true", help="skip the desktop notification")
    run_p.add_argument("--quiet", action="store_true", help="do not stream step output")
    add_command(sub, "model-version", "print the champion's registered model version")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    if args.command == "model-version":
        # Imported here: mlflow is heavy and only this sub-command needs it.
        from core.registry import champion_version  # pylint: disable=import-outside-toplevel

        try:
            version = champion_version(settings)
        except (ConnectionError, RuntimeError) as exc:  # unreachable server, broken store
            print(f"no champion model version: {exc}", file=sys.stderr)
            return 1
        if version is None:
            print(f"no champion model version: no version of {settings.model_name} is champion",
                  file=sys.stderr)  # fmt: skip
            return 1
        print(version)
        return 0
    try:
        run = run_pipeline(
            args.name, args.steps, settings, make=shlex.split(args.make), echo=not args.quiet
        )
    except KeyboardInterrupt:
        print(f"pipeline {args.name}: interrupted", file=sys.stderr, flush=True)
        return 130
    print(summary_text(run), flush=True)
    notify_run(run, settings, args.email, desktop=not args.no_desktop)
    return run.returncode
