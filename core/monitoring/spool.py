"""An on-disk spool of events not yet in Elasticsearch: NDJSON segment files under ``var/spool/``.

A segment is written to a ``.tmp`` file and renamed, so readers only see whole segments. A reader
*claims* a segment by renaming it (atomic: with several API worker processes sharing the folder,
only one sends it), deletes it once delivered, or releases it for a later retry. Claims left by a
process that died are released when the next spool opens the folder.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

Record = dict[str, Any]
SEGMENT = ".ndjson"
CLAIM = ".claimed-"


class Spool:
    """A folder of NDJSON segments, safe to share between threads and processes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._release_stale_claims()

    def _release_stale_claims(self) -> None:
        for path in self.folder.glob(f"*{SEGMENT}{CLAIM}*"):
            owner = path.name.rsplit(CLAIM, 1)[1]
            if (
                not owner.isdigit()
                or not psutil.pid_exists(int(owner))
                or int(owner) == os.getpid()
            ):
                self._rename(path, path.with_name(path.name.split(CLAIM, 1)[0]))

    @staticmethod
    def _rename(src: Path, dst: Path) -> bool:
        try:
            src.rename(dst)
        except FileNotFoundError:
            return False
        return True

    def write(self, records: Sequence[Record]) -> Path | None:
        """Append ``records`` as one new segment; return its path (``None`` when empty)."""
        if not records:
            return None
        with self._lock:
            name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq):06d}{SEGMENT}"
        final = self.folder / name
        tmp = final.with_name(name + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, separators=(",", ":"), default=str))
                out.write("\n")
        tmp.rename(final)
        return final

    def segments(self) -> list[Path]:
        """Unclaimed segments, oldest first."""
        return sorted(self.folder.glob(f"*{SEGMENT}"))

    def claim(self) -> tuple[Path, list[Record]] | None:
        """Claim the oldest segment and read it; ``None`` when the spool is empty."""
        for path in self.segments():
            claimed = path.with_name(f"{path.name}{CLAIM}{os.getpid()}")
            if self._rename(path, claimed):
                with claimed.open(encoding="utf-8") as src:
                    return claimed, [json.loads(line) for line in src if line.strip()]
        return None

    @staticmethod
    def done(claimed: Path) -> None:
        """Forget a delivered segment."""
        claimed.unlink(missing_ok=True)

    def release(self, claimed: Path) -> None:
        """Give a claimed segment back for a later retry."""
        self._rename(claimed, claimed.with_name(claimed.name.split(CLAIM, 1)[0]))

    def pending_records(self) -> int:
        """Records waiting in unclaimed segments (reads the files: for tests and status)."""
        total = 0
        for path in self.segments():
            with path.open(encoding="utf-8") as src:
                total += sum(1 for line in src if line.strip())
        return total
