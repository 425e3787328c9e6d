"""Copy a predictions history from one database into another (``churnops migrate-store``).

The upgrade path from the embedded SQLite file to PostgreSQL: every table of
:mod:`core.store.tables` (predictions with their feedback and ``shipped_at`` stamps, retrain jobs,
the model generation, the embedded monitoring tables) is read in chunks from the source and the
rows the target does not hold yet are inserted, one transaction per chunk. So:

* re-running copies nothing twice, and an interrupted copy is finished by running it again;
* a row is identified by its primary key, or, for the monitoring tables whose integer id is only a
  row number, by what the row is (``IDENTITY``): those ids are not copied, the target numbers the
  rows itself, so a target that already received rows of its own never collides with the history;
* rows the target already holds are left as they are (the target wins: feedback given or rows
  shipped after the switch are kept);
* each table is verified after the copy: every source row must be found in the target.

Both databases are opened with :func:`core.store.open_engine`, so both are at the newest schema
revision first (a SQLite file of an older churnops is migrated in place, as the API would do).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Engine, Table, and_, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from core.store.engine import StoreError, _describe, _sqlite_file, open_engine, store_url
from core.store.tables import DRIFT, HOST, METADATA, QUALITY, as_utc

log = logging.getLogger(__name__)

#: Rows read, looked up and inserted at a time.
CHUNK = 5_000
#: What a row of a table with a surrogate integer id *is* (its id is not copied), and the time
#: column the copy walks in order.
IDENTITY: dict[str, tuple[str, ...]] = {
    HOST.name: ("at", "host", "metricset", "name"),
    DRIFT.name: ("run_id", "feature"),
    QUALITY.name: ("at", "model_version"),
}
ORDER: dict[str, str] = {
    "prediction": "created_at",
    "retrain_job": "created_at",
    "model_generation": "id",
    HOST.name: "at",
    DRIFT.name: "computed_at",
    QUALITY.name: "at",
}


@dataclass(frozen=True)
class TableCopy:
    """The copy of one table.

    Attributes:
        table: its name.
        source: rows in the source.
        copied: rows inserted into the target by this run.
        present: source rows found in the target afterwards (== ``source`` when verified).
        target: rows in the target afterwards (may exceed ``source``: rows of its own).
    """

    table: str
    source: int
    copied: int
    present: int
    target: int

    @property
    def verified(self) -> bool:
        """Every source row is in the target."""
        return self.present == self.source


@dataclass(frozen=True)
class StoreCopy:
    """The copy of a whole predictions database (``tables`` in dependency order)."""

    source: str
    target: str
    tables: tuple[TableCopy, ...]

    @property
    def verified(self) -> bool:
        """Every row of every table is in the target."""
        return all(table.verified for table in self.tables)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready dict: the databases (passwords hidden), per-table counts, verified."""
        return {
            "from": self.source,
            "to": self.target,
            "tables": {
                t.table: {k: v for k, v in asdict(t).items() if k != "table"} for t in self.tables
            },
            "copied": sum(t.copied for t in self.tables),
            "verified": self.verified,
        }


class _Plan:
    """How one table is copied: its key columns, the columns inserted, the walk order."""

    def __init__(self, table: Table) -> None:
        self.table = table
        primary = [column.name for column in table.primary_key.columns]
        self.surrogate = table.name in IDENTITY
        self.key = IDENTITY[table.name] if self.surrogate else tuple(primary)
        self.columns: list[Column[Any]] = [
            column for column in table.columns if not (self.surrogate and column.name in primary)
        ]
        self.order = table.c[ORDER[table.name]]
        self.tiebreak = [table.c[name] for name in primary]

    def identity(self, row: dict[str, Any]) -> tuple[Any, ...]:
        """The row's key, comparable across back ends (timestamps in UTC)."""
        return tuple(
            as_utc(value) if isinstance(value, datetime) else value
            for value in (row[name] for name in self.key)
        )

    def chunks(self, engine: Engine) -> Iterator[list[dict[str, Any]]]:
        """The source rows, oldest first, ``CHUNK`` at a time (streamed, not all in memory)."""
        query = select(*self.columns).order_by(self.order, *self.tiebreak)
        with engine.connect() as conn:
            result = conn.execution_options(yield_per=CHUNK).execute(query)
            for partition in result.mappings().partitions(CHUNK):
                yield [dict(row) for row in partition]

    def present(self, engine: Engine, rows: Sequence[dict[str, Any]]) -> set[tuple[Any, ...]]:
        """Keys of ``rows`` the target already holds (looked up by the chunk's time range)."""
        low = min(row[self.order.name] for row in rows)
        high = max(row[self.order.name] for row in rows)
        query = select(*(self.table.c[name] for name in self.key)).where(
            and_(self.order >= low, self.order <= high)
        )
        with engine.connect() as conn:
            found = {self.identity(dict(row)) for row in conn.execute(query).mappings()}
        return found & {self.identity(row) for row in rows}


def _count(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def copy_table(source: Engine, target: Engine, table: Table) -> TableCopy:
    """Copy the rows of ``table`` that ``target`` does not hold yet, then verify.

    Raises:
        SQLAlchemyError: a database failed mid-copy (chunks already committed stay copied).
    """
    plan = _Plan(table)
    copied = 0
    for rows in plan.chunks(source):
        there = plan.present(target, rows)
        new = [row for row in rows if plan.identity(row) not in there]
        if new:
            with target.begin() as conn:
                conn.execute(insert(table), new)
            copied += len(new)
    present = sum(len(plan.present(target, rows)) for rows in plan.chunks(source))
    done = TableCopy(table.name, _count(source, table), copied, present, _count(target, table))
    log.info("%s: %d rows, %d copied, %d in the target", table.name, done.source, copied, present)
    return done


def copy_store(source_url: str, target_url: str) -> StoreCopy:
    """Copy every table of the predictions database at ``source_url`` into ``target_url``.

    Args:
        source_url: the history to copy (e.g. ``sqlite:///var/churnops.db``); it must exist.
        target_url: where it goes (e.g. ``postgresql+psycopg://…``); created or migrated first.

    Returns:
        What was copied and whether every row was found in the target afterwards.

    Raises:
        StoreError: the same database twice, a missing SQLite file, a database that cannot be
            opened, or a failure mid-copy (one line; running it again finishes the copy).
    """
    source_url, target_url = store_url(source_url), store_url(target_url)
    if source_url == target_url:
        raise StoreError(f"--from and --to are the same database ({source_url}): nothing to copy")
    path = _sqlite_file(source_url)
    if path is not None and not path.is_file():
        raise StoreError(f"no SQLite database at {path}: check --from (or VAR_DIR)")
    source, target = open_engine(source_url), open_engine(target_url)
    where = f"{_describe(source)} -> {_describe(target)}"
    tables: list[TableCopy] = []
    for table in METADATA.sorted_tables:
        try:
            tables.append(copy_table(source, target, table))
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise StoreError(
                f"copying {table.name} ({where}) failed: "
                f"{type(exc).__name__}: {reason[0] if reason else ''}; the chunks already "
                "copied stay, and running the same command again finishes the copy"
            ) from exc
    return StoreCopy(_describe(source), _describe(target), tuple(tables))
