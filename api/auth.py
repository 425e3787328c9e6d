"""Who may do what: the role of every route (one table), the keys of the roles, and the check.

Roles are ordered: ``admin`` ⊇ ``writer`` ⊇ ``reader`` ⊇ ``predict``; a key of a higher role
opens every route of the lower ones. The key of a role comes from its environment variable or
its Docker secret file (``*_FILE``, read the way :mod:`core.settings` reads every secret, and
read again when the file changes: a rotated secret takes effect without a restart). Keys are
compared in constant time (:func:`secrets.compare_digest`) against every configured key.

Defaults when a key is not set (OWASP API Security Top 10, API5 "broken function level
authorisation": closed unless decided otherwise):

* ``PREDICT_KEY`` unset: the predict routes are open to anyone (scoring holds no stored data).
* ``READER_KEY`` / ``WRITER_KEY`` unset: their routes take the key of a higher role only.
* ``API_KEY`` unset: ``ENV=prod`` refuses to start; in dev/test the admin key is ``dev-api-key``.
* ``ENV=dev`` with no key set at all (``make run`` on one's own machine): predict, reader and
  writer routes are open, and the API logs one line saying so; admin routes still need
  ``dev-api-key``.
* A route missing from :data:`ROUTE_ROLES` needs the admin key (and the intruder test fails).
"""

from __future__ import annotations

import enum
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from core.settings import DEV_API_KEY, PLACEHOLDER_SECRETS, Settings, read_secret_file

log = logging.getLogger(__name__)


class Role(enum.IntEnum):
    """Who may call a route; a higher role includes every lower one."""

    OPEN = 0
    PREDICT = 1
    READER = 2
    WRITER = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        """The role's name as the docs and messages write it."""
        return self.name.lower()


#: The setting (and, upper-cased, the environment variable) holding each role's key.
ROLE_KEYS: dict[Role, str] = {
    Role.PREDICT: "predict_key",
    Role.READER: "reader_key",
    Role.WRITER: "writer_key",
    Role.ADMIN: "api_key",
}

#: What each role is for, as the docs show it.
ROLE_PURPOSE: dict[Role, str] = {
    Role.OPEN: "liveness, readiness and the API docs",
    Role.PREDICT: "score customers (open unless `PREDICT_KEY` is set)",
    Role.READER: "read stored customers, live quality, monitoring, the registry and retrain jobs",
    Role.WRITER: "record true outcomes (feedback)",
    Role.ADMIN: "retrain, promote, roll back, reload the model, run the drift job now",
}

#: The role of every route, as ``"METHOD /path"`` (``WS`` for a WebSocket). The one table:
#: the routes take their guard from it, the docs render it, the tests enforce it.
#: The registry's versions, curves and figures are ``reader``: run ids, metrics and gate
#: decisions are internal details an anonymous caller does not need; the served model's own
#: card (``GET /model``) is ``predict``, as its version comes with every prediction anyway.
#: The one route that writes monitoring data (``POST /monitoring/drift``, a drift run now) is
#: ``admin``.
ROUTE_ROLES: dict[str, Role] = {
    "GET /health": Role.OPEN,
    "GET /ready": Role.OPEN,
    "GET /openapi.json": Role.OPEN,
    "GET /docs": Role.OPEN,
    "GET /docs/oauth2-redirect": Role.OPEN,
    "GET /redoc": Role.OPEN,
    "GET /static-offline-docs": Role.OPEN,
    "POST /predict": Role.PREDICT,
    "POST /predict/explain": Role.PREDICT,
    "POST /predict/batch": Role.PREDICT,
    "POST /predict/validate": Role.PREDICT,
    "WS /ws/predict": Role.PREDICT,
    "GET /model": Role.PREDICT,
    "GET /predictions": Role.READER,
    "GET /predictions/{prediction_id}": Role.READER,
    "GET /metrics/live": Role.READER,
    "GET /monitoring/summary": Role.READER,
    "GET /monitoring/drift": Role.READER,
    "GET /monitoring/host": Role.READER,
    "GET /model/versions": Role.READER,
    "GET /model/versions/{version}/curve": Role.READER,
    "GET /model/versions/{version}/plots": Role.READER,
    "GET /model/versions/{version}/plots/{name}": Role.READER,
    "GET /retrain/{job_id}": Role.READER,
    "WS /ws/events": Role.READER,
    "POST /feedback": Role.WRITER,
    "POST /retrain": Role.ADMIN,
    "POST /model/promote": Role.ADMIN,
    "POST /model/rollback": Role.ADMIN,
    "POST /model/reload": Role.ADMIN,
    "POST /monitoring/drift": Role.ADMIN,
}


def route_role(methods: Iterable[str], path: str) -> Role:
    """The role a route needs: the highest over its methods; a route not in the table needs
    the admin key (closed by default). ``HEAD`` follows ``GET``."""
    found = [
        ROUTE_ROLES.get(f"{'GET' if m.upper() == 'HEAD' else m.upper()} {path}", Role.ADMIN)
        for m in methods
    ]
    return max(found, default=Role.ADMIN)


def key_variable(role: Role) -> str:
    """The environment variable of a role's key (``API_KEY`` for admin)."""
    return ROLE_KEYS[role].upper()


def needs(role: Role) -> str:
    """What a refused caller is told they need, e.g. ``the reader key (READER_KEY)``."""
    higher = "" if role is Role.ADMIN else " or a higher role's key"
    return f"the {role.label} key ({key_variable(role)}){higher}"


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: 401 (no or unknown key) or 403 (a lower role's key)."""

    status: int
    detail: str


def decide(
    required: Role, given: str | None, keys: Mapping[Role, str], opened: Iterable[Role] = ()
) -> Refusal | None:
    """The decision for one request (``None``: allowed).

    Args:
        required: the route's role.
        given: the ``X-API-Key`` header (``None``/empty: none).
        keys: the configured key of each role (roles without a key are left out).
        opened: roles whose routes are open in this configuration (:func:`open_roles`).
    """
    if required is Role.OPEN or required in set(opened):
        return None
    caller = role_of(given, keys)
    if caller is None:
        return Refusal(401, f"missing or invalid X-API-Key: this route needs {needs(required)}")
    if caller < required:
        return Refusal(
            403, f"the {caller.label} key may not do this: this route needs {needs(required)}"
        )
    return None


def role_of(given: str | None, keys: Mapping[Role, str]) -> Role | None:
    """The highest role whose key is ``given`` (every key compared, in constant time)."""
    if not given:
        return None
    offered = given.encode("utf-8", "surrogatepass")
    found = None
    for role, key in keys.items():
        if secrets.compare_digest(offered, key.encode("utf-8")) and (found is None or role > found):
            found = role
    return found


class KeyRing:
    """The keys of the roles, as configured now (env, or a secret file re-read on change).

    Args:
        settings: the service settings (``API_KEY``/``*_KEY`` and their ``*_FILE``).

    Raises:
        ValueError: in prod mode, a missing or placeholder admin key or a placeholder role key.
    """

    def __init__(self, settings: Settings) -> None:
        self._env = settings.env
        self._values: dict[Role, str | None] = {}
        self._files: dict[Role, Path] = {}
        self._stamps: dict[Role, tuple[int, int] | None] = {}
        for role, attr in ROLE_KEYS.items():
            secret = getattr(settings, attr)
            self._values[role] = secret.get_secret_value() if secret is not None else None
            path = getattr(settings, f"{attr}_file")
            if path is not None:  # the secret file wins over the variable, as in Settings
                self._files[role] = path
                self._stamps[role] = _stamp(path)
                self._values[role] = read_secret_file(path) or self._values[role]
        if self._env == "prod":
            settings.require_api_key()
            for role, value in self._values.items():
                if value and value.lower() in PLACEHOLDER_SECRETS:
                    raise ValueError(f"{key_variable(role)} is a placeholder; set a real key")

    def _refresh(self) -> None:
        """Re-read a secret file whose size or modification time changed (rotation)."""
        for role, path in self._files.items():
            stamp = _stamp(path)
            if stamp != self._stamps[role]:
                self._stamps[role] = stamp
                self._values[role] = read_secret_file(path) or None
                log.info("%s changed; key of role %s reloaded", path, role.label)

    def keys(self) -> dict[Role, str]:
        """The usable key of each role now (a placeholder is no key in prod mode)."""
        if self._files:
            self._refresh()
        found = {role: value for role, value in self._values.items() if value}
        if self._env == "prod":
            found = {r: v for r, v in found.items() if v.lower() not in PLACEHOLDER_SECRETS}
        elif Role.ADMIN not in found:
            found[Role.ADMIN] = DEV_API_KEY
        return found

    def open_roles(self, keys: Mapping[Role, str]) -> set[Role]:
        """The roles open without a key now (see :func:`open_roles`)."""
        return open_roles(
            keys, dev_without_keys=self._env == "dev" and not any(self._values.values())
        )

    def refusal(self, required: Role, given: str | None) -> Refusal | None:
        """The decision for a request to a route of role ``required`` (``None``: allowed)."""
        if required is Role.OPEN:
            return None
        keys = self.keys()
        return decide(required, given, keys, self.open_roles(keys))

    def open_notice(self) -> str | None:
        """The one line the API logs when it runs open (dev, no key set), else ``None``."""
        if Role.READER not in self.open_roles(self.keys()):
            return None
        return (
            "ENV=dev and no key set: predict, reader and writer routes are open to anyone who "
            f"reaches this API (admin routes need {DEV_API_KEY!r}); set API_KEY, WRITER_KEY, "
            "READER_KEY (see docs/security.md) before exposing it"
        )


def open_roles(keys: Mapping[Role, str], *, dev_without_keys: bool = False) -> set[Role]:
    """Roles whose routes need no key: predict without a predict key; with ``ENV=dev`` and no
    key set at all, predict, reader and writer.

    Args:
        keys: the configured key of each role.
        dev_without_keys: dev mode with none of the keys set.
    """
    opened = set() if Role.PREDICT in keys else {Role.PREDICT}
    if dev_without_keys:
        opened |= {Role.PREDICT, Role.READER, Role.WRITER}
    return opened


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def role_table_markdown() -> str:
    """The role table as Markdown (docs/security.md shows it; a test keeps them equal)."""
    lines = [
        "| role | key (env / Docker secret) | may | routes |",
        "|---|---|---|---|",
    ]
    for role in Role:
        key = (
            "none" if role is Role.OPEN else f"`{key_variable(role)}` / `{key_variable(role)}_FILE`"
        )
        routes = ", ".join(f"`{route}`" for route, r in ROUTE_ROLES.items() if r is role)
        lines.append(f"| `{role.label}` | {key} | {ROLE_PURPOSE[role]} | {routes} |")
    return "\n".join(lines)
