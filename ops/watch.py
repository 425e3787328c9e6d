"""``make watch``: run the pipeline that matches what changed, whenever a project file changes.

A watchdog observer watches the project (never ``.venv``, ``var/``, ``mlruns/``, caches, ``.git``,
``node_modules`` or the runs' own outputs). Saves arriving in a burst are debounced into one batch;
the batch's paths are mapped to pipelines (code/tests → ``code``; ``data/`` → ``data`` then
``train``; training configuration → ``train``) and each pipeline runs once, through a configurable
command (``make pipeline-{name}`` by default). One compact status line is printed per run; a failed
run is reported and watching goes on; Ctrl-C (or SIGTERM) stops it cleanly.

Subprocesses are started from argv lists, never through a shell (hence the bandit ``nosec``).
"""

from __future__ import annotations

import argparse
import fnmatch
import queue
import shlex
import signal
import subprocess  # nosec B404
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import TextIO

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

PIPELINE_ORDER = ("code", "data", "train")
DEFAULT_COMMAND = "make pipeline-{name}"

IGNORED_DIRS = frozenset(
    {
        ".git",
        ".venv",
        "venv",
        "var",
        "mlruns",
        "mlartifacts",
        "node_modules",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".ipynb_checkpoints",
        ".scannerwork",
        "htmlcov",
        "reports",
        "build",
        "dist",
        ".idea",
        ".vscode",
    }
)
# Generated files and editor droppings: saving one must never start a pipeline.
IGNORED_FILES = (
    "*.pyc",
    "*.pyo",
    "*.swp",
    "*.swx",
    "*.swo",
    "*~",
    ".#*",
    "#*#",
    "4913",
    "*.tmp",
    "*.log",
    "*.db",
    "*.db-*",
    "*.sqlite",
    ".coverage",
    ".coverage.*",
    "coverage.xml",
    ".DS_Store",
    "*.egg-info",
)
# Training configuration: a change retrains without re-running the code gates.
TRAIN_CONFIG = ("configs/*", "config/*", "conf/*", "params.yaml", "params.yml", "train.yaml")


def is_ignored(rel: PurePosixPath) -> bool:
    """True for paths under an ignored folder and for generated/editor files."""
    if any(part in IGNORED_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]):
        return True
    if rel.parts and rel.parts[0] in IGNORED_DIRS:
        return True
    return any(fnmatch.fnmatch(rel.name, pattern) for pattern in IGNORED_FILES)


def pipelines_for(rel: PurePosixPath) -> tuple[str, ...]:
    """Map one project-relative path to the pipelines it calls for (none when ignored)."""
    if not rel.parts or is_ignored(rel):
        return ()
    text = rel.as_posix()
    if rel.parts[0] == "data":
        return ("data", "train")
    if any(fnmatch.fnmatch(text, pattern) for pattern in TRAIN_CONFIG):
        return ("train",)
    # Code, tests, notebooks, Makefile/mk, Dockerfiles, workflows, docs: the code gates cover them.
    return ("code",)


def plan(paths: Iterable[PurePosixPath]) -> list[str]:
    """The pipelines to run for a batch of changed paths, each once, in canonical order."""
    wanted = {name for rel in paths for name in pipelines_for(rel)}
    return [name for name in PIPELINE_ORDER if name in wanted]


class _Collector(FileSystemEventHandler):
    """Puts the project-relative path of every relevant event on a queue."""

    def __init__(self, root: Path, changes: queue.Queue[PurePosixPath], on_new_dir: Watcher):
        super().__init__()
        self.root = root
        self.changes = changes
        self.watcher = on_new_dir

    def _relative(self, raw: str | bytes) -> PurePosixPath | None:
        path = Path(raw.decode() if isinstance(raw, bytes) else raw)
        try:
            return PurePosixPath(path.relative_to(self.root).as_posix())
        except ValueError:
            return None

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads are not changes
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            rel = self._relative(raw) if raw else None
            if rel is None or rel == PurePosixPath(".") or is_ignored(rel):
                continue
            if event.is_directory:
                if event.event_type in ("created", "moved") and len(rel.parts) == 1:
                    self.watcher.watch_top_level(self.root / rel)
                continue
            self.changes.put(rel)


@dataclass
class RunOutcome:
    """One pipeline run started by the watcher."""

    name: str
    returncode: int
    duration_s: float
    log_path: Path


@dataclass
class Watcher:
    """Debounce file events and run the matching pipelines (see the module docstring)."""

    root: Path
    command: str = DEFAULT_COMMAND
    debounce_s: float = 1.0
    log_dir: Path | None = None
    out: TextIO = sys.stdout
    verbose: bool = False
    outcomes: list[RunOutcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        if self.log_dir is None:
            self.log_dir = self.root / "var" / "watch"
        self.changes: queue.Queue[PurePosixPath] = queue.Queue()
        self.stopping = threading.Event()
        self._observer = Observer()
        self._handler = _Collector(self.root, self.changes, self)
        self._watched: set[Path] = set()

    # -- observer ----------------------------------------------------------------------------------
    def watch_top_level(self, path: Path) -> None:
        """Watch one top-level folder recursively (ignored folders never get an inotify watch)."""
        if path in self._watched or path.name in IGNORED_DIRS or not path.is_dir():
            return
        self._watched.add(path)
        self._observer.schedule(self._handler, str(path), recursive=True)

    def start(self) -> None:
        """Start watching: the root itself (not recursive) and each non-ignored top-level folder.

        Watching ``.venv`` recursively would cost thousands of inotify watches, hence the split.
        """
        self._observer.schedule(self._handler, str(self.root), recursive=False)
        for child in sorted(self.root.iterdir()):
            self.watch_top_level(child)
        self._observer.start()

    def stop(self) -> None:
        """Stop the observer and wait for its thread."""
        self.stopping.set()
        self._observer.stop()
        self._observer.join(timeout=5)

    # -- batching ----------------------------------------------------------------------------------
    def next_batch(self, poll_s: float = 0.2) -> list[PurePosixPath]:
        """Block until a change arrives, then until ``debounce_s`` passes with no new change."""
        batch: list[PurePosixPath] = []
        while not self.stopping.is_set() and not batch:
            try:
                batch.append(self.changes.get(timeout=poll_s))
            except queue.Empty:
                continue
        quiet_since = time.monotonic()
        while not self.stopping.is_set() and time.monotonic() - quiet_since < self.debounce_s:
            try:
                batch.append(self.changes.get(timeout=min(poll_s, self.debounce_s)))
                quiet_since = time.monotonic()
            except queue.Empty:
                continue
        return batch

    # -- running -----------------------------------------------------------------------------------
    def run(self, name: str, reason: Sequence[PurePosixPath]) -> RunOutcome:
        """Run one pipeline through the configured command and print its status line."""
        argv = shlex.split(self.command.format(name=name))
        log_dir = self.log_dir or self.root / "var" / "watch"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{name}.log"
        t0 = time.monotonic()
        with log_path.open("w", encoding="utf-8") as sink:
            try:
                # stdout to the log (or the console with --verbose), so the watcher's own output
                # stays one line per run.
                code = subprocess.call(  # nosec B603
                    argv,
                    cwd=self.root,
                    stdout=None if self.verbose else sink,
                    stderr=subprocess.STDOUT if not self.verbose else None,
                )
            except OSError as exc:
                sink.write(f"could not start {argv[0]}: {exc}\n")
                code = 127
        outcome = RunOutcome(name, code, time.monotonic() - t0, log_path)
        self.outcomes.append(outcome)
        shown = ", ".join(p.as_posix() for p in list(dict.fromkeys(reason))[:3])
        more = f" +{len(set(reason)) - 3}" if len(set(reason)) > 3 else ""
        status = "✓ passed" if code == 0 else f"✗ FAILED (exit {code})"
        self.out.write(
            f"[{time.strftime('%H:%M:%S')}] {name:<5} {status}  {outcome.duration_s:6.1f}s"
            f"  ← {shown}{more}  log: {log_path}\n"
        )
        self.out.flush()
        return outcome

    def run_batch(self, batch: Sequence[PurePosixPath]) -> list[RunOutcome]:
        """Run the batch's pipelines in order; a failed ``data`` run skips the ``train`` after."""
        outcomes: list[RunOutcome] = []
        failed: set[str] = set()
        for name in plan(batch):
            if self.stopping.is_set():
                break
            if name == "train" and "data" in failed:
                self.out.write(f"[{time.strftime('%H:%M:%S')}] train skipped: data failed\n")
                self.out.flush()
                continue
            reason = [rel for rel in batch if name in pipelines_for(rel)]
            outcome = self.run(name, reason)
            outcomes.append(outcome)
            if outcome.returncode != 0:
                failed.add(name)
        return outcomes

    def loop(self, max_batches: int | None = None) -> None:
        """Process batches until stopped (or until ``max_batches`` batches ran)."""
        done = 0
        while not self.stopping.is_set() and (max_batches is None or done < max_batches):
            batch = self.next_batch()
            if not batch or self.stopping.is_set():
                continue
            # Saves made while a pipeline runs queue up and form the next batch.
            self.run_batch(batch)
            done += 1


def main(argv: Sequence[str] | None = None) -> int:
    """``churnops watch``: watch the project and run the matching pipeline on each change."""
    parser = argparse.ArgumentParser(prog="churnops watch", description=main.__doc__)
    parser.add_argument("--root", type=Path, default=Path("."), help="project folder to watch")
    parser.add_argument(
        "--command",
        default=DEFAULT_COMMAND,
        help="pipeline command; {name} becomes code, data or train (default: %(default)s)",
    )
    parser.add_argument(
        "--debounce", type=float, default=1.5, help="seconds of quiet that end a burst of saves"
    )
    parser.add_argument("--log-dir", type=Path, default=None, help="default: <root>/var/watch")
    parser.add_argument("--verbose", action="store_true", help="stream pipeline output")
    args = parser.parse_args(argv)

    watcher = Watcher(
        root=args.root,
        command=args.command,
        debounce_s=args.debounce,
        log_dir=args.log_dir,
        verbose=args.verbose,
    )

    def _terminate(signum: int, frame: FrameType | None) -> None:
        del frame
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, _terminate)
    watcher.start()
    print(
        f"watching {watcher.root} (debounce {watcher.debounce_s:g}s, command "
        f"{args.command!r}); Ctrl-C to stop",
        flush=True,
    )
    try:
        watcher.loop()
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
    finally:
        watcher.stop()
    failures = sum(1 for outcome in watcher.outcomes if outcome.returncode != 0)
    print(f"watch stopped: {len(watcher.outcomes)} run(s), {failures} failed", flush=True)
    return 0
