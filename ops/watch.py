"""``make watch``: run the pipeline that matches what changed, whenever a project file changes.

A watchdog observer watches the project; what git ignores is not a change (:class:`GitIgnore`), so
the pipelines' own outputs (``var/``, caches, ``.hypothesis/``...) never start another run. Saves
arriving in a burst are debounced into one batch; the batch's paths are mapped to pipelines
(code/tests → ``code``; ``data/`` → ``data`` then ``train``; training configuration → ``train``)
and each pipeline runs once, through a configurable command (``make pipeline-{name}`` by
default). One compact status line is printed per run; a failed
run is reported and watching goes on; Ctrl-C (or SIGTERM) stops it cleanly.

Subprocesses are started from argv lists, never through a shell (hence the bandit ``nosec``).
"""

from __future__ import annotations

import argparse
import fnmatch
import queue
import shlex
import subprocess  # nosec B404
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TextIO

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from core.arguments import doc_text, positive_float
from ops.interrupt import Interrupted, stop_on_signals

PIPELINE_ORDER = ("code", "data", "train")
DEFAULT_COMMAND = "make pipeline-{name}"

# Editors' temporary files (vim's 4913 probe and swap files, emacs locks...): they come with a
# save, never alone. What the pipelines themselves write is ignored because git ignores it.
EDITOR_FILES = ("*.swp", "*.swx", "*.swo", "*~", ".#*", "#*#", "4913", ".DS_Store")
# Training configuration: a change retrains without re-running the code gates.
TRAIN_CONFIG = ("configs/*", "config/*", "conf/*", "params.yaml", "params.yml", "train.yaml")


class NotAWorkTree(RuntimeError):
    """The watched folder is not inside a git work tree (the watcher ignores what git ignores)."""


class GitIgnore:
    """The watcher's one rule for what is not a change: what git ignores (``git check-ignore``:
    the project's .gitignore files, ``.git/info/exclude`` and the user's excludes), ``.git/``
    itself, and editors' temporary files. Whatever a pipeline writes (``var/``, caches,
    ``.hypothesis/``, coverage files) must therefore be git-ignored: a test checks that running
    the real code pipeline under ``make watch`` starts exactly one run.

    Raises:
        NotAWorkTree: when ``root`` is not in a git work tree.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        probe = self._git("rev-parse", "--is-inside-work-tree")
        if probe.returncode != 0 or probe.stdout.strip() != "true":
            raise NotAWorkTree(
                f"{root} is not in a git work tree: make watch ignores what git ignores, so it "
                "watches a clone (git clone … or git init)"
            )

    def _git(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # git from PATH, fixed argv  # nosec B603 B607
            ["git", "-C", str(self.root), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )

    def ignored(self, paths: Iterable[PurePosixPath]) -> set[PurePosixPath]:
        """The paths (relative to the root) that are not changes of the project."""
        paths = set(paths)
        out = {
            p
            for p in paths
            if not p.parts
            or p.parts[0] == ".git"
            or any(fnmatch.fnmatch(p.name, pattern) for pattern in EDITOR_FILES)
        }
        asked = sorted(p.as_posix() for p in paths - out)
        if asked:
            answer = self._git("check-ignore", "--stdin", "-z", stdin="\0".join(asked) + "\0")
            if answer.returncode not in (0, 1):  # 1: none is ignored
                raise NotAWorkTree(f"git check-ignore failed: {answer.stderr.strip()}")
            out |= {PurePosixPath(p) for p in answer.stdout.split("\0") if p}
        return out


def pipelines_for(rel: PurePosixPath) -> tuple[str, ...]:
    """Map one project-relative path (not ignored, see :class:`GitIgnore`) to its pipelines."""
    if not rel.parts:
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
        self.watcher = on_new_dir  # new top-level folders are handed to it (it asks git)

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
            if rel is None or rel == PurePosixPath(".") or rel.parts[0] == ".git":
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
        self.ignore = GitIgnore(self.root)
        self.stopping = threading.Event()
        self._observer = Observer()
        self._handler = _Collector(self.root, self.changes, self)

    # -- observer ----------------------------------------------------------------------------------
    def watch_top_level(self, path: Path) -> None:
        """Watch one top-level folder recursively (git-ignored folders never get a watch)."""
        watched = {Path(emitter.watch.path) for emitter in self._observer.emitters}
        if path in watched or not path.is_dir():
            return
        if self.ignore.ignored([PurePosixPath(path.relative_to(self.root).as_posix())]):
            return
        self._observer.schedule(self._handler, str(path), recursive=True)

    def start(self) -> None:
        """Start watching: the root itself (not recursive) and each non-ignored top-level folder.

        Watching ``.venv`` recursively would cost thousands of inotify watches, hence the split
        (and ``.venv`` is git-ignored).
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
        ignored = self.ignore.ignored(batch)
        return [rel for rel in batch if rel not in ignored]

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
    parser = argparse.ArgumentParser(prog="churnops watch", description=doc_text(main.__doc__))
    parser.add_argument("--root", type=Path, default=Path("."), help="project folder to watch")
    parser.add_argument(
        "--command",
        default=DEFAULT_COMMAND,
        help="pipeline command; {name} becomes code, data or train (default: %(default)s)",
    )
    parser.add_argument(
        "--debounce",
        type=positive_float,
        default=1.5,
        help="seconds of quiet that end a burst of saves",
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

    with stop_on_signals():
        watcher.start()
        print(
            f"watching {watcher.root} (debounce {watcher.debounce_s:g}s, command "
            f"{args.command!r}); Ctrl-C to stop",
            flush=True,
        )
        try:
            watcher.loop()
        except Interrupted:
            print("\nstopping…", flush=True)
        finally:
            watcher.stop()
    failures = sum(1 for outcome in watcher.outcomes if outcome.returncode != 0)
    print(f"watch stopped: {len(watcher.outcomes)} run(s), {failures} failed", flush=True)
    return 0
