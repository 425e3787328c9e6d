"""The intruder test: every route of the real app has a decided role, and the API enforces it.

Every route (HTTP and WebSocket, the docs included) is enumerated from the app itself, so a route
added without a role in :data:`api.auth.ROUTE_ROLES` fails here. Each is called as a stranger
(no key, a wrong key, bodies of every kind), with the key of each role, and the answers are held
to the table: 401 for a stranger, 403 for a lower role, neither for the right role; never a 5xx,
a traceback, a file path or a library version.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.routing import Mount
from starlette.websockets import WebSocketDisconnect

from api.auth import ROLE_KEYS, ROUTE_ROLES, Role, key_variable, role_table_markdown
from api.main import create_app
from core.persist import ModelBundle
from core.registry import LoadedModel
from core.settings import Settings
from tests.api.conftest import AppFactory, Champion, shared_settings
from tests.conftest import ROOT

KEYS = {
    Role.PREDICT: "predict-key-1234",
    Role.READER: "reader-key-1234",
    Role.WRITER: "writer-key-1234",
    Role.ADMIN: "admin-key-1234",
}
PATH_VALUES = {
    "{prediction_id}": "no-such-id",
    "{version}": "1",
    "{name}": "roc_curve",
    "{job_id}": "no-such-job",
}
# What a stranger may send: nothing, JSON, broken JSON, text, a file.
BODIES: dict[str, dict[str, Any]] = {
    "none": {},
    "json": {"json": {"prediction_id": "x", "actual": "yes", "version": "1"}},
    "bad-json": {"content": b"{not json", "headers": {"content-type": "application/json"}},
    "text": {"content": b"a=1", "headers": {"content-type": "text/plain"}},
    "file": {"files": {"file": ("t.csv", b"a,b\n1,2\n", "text/csv")}},
}
LEAKS = [
    re.compile(r"Traceback|File \"", re.I),
    re.compile(r"(/[\w.-]+)+\.py\b|site-packages|/work/|/home/|/tmp/|/usr/"),
    re.compile(r"\b(fastapi|starlette|uvicorn|pydantic|python|mlflow|sklearn|scikit-learn|"
               r"sqlalchemy)[ /-]?v?\d+\.\d+", re.I),
]  # fmt: skip


def app_routes(app: FastAPI) -> list[tuple[str, Any]]:
    """Every route the app answers, as ``("METHOD /path", route)`` (``WS`` for a WebSocket)."""
    found: list[tuple[str, Any]] = []
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:  # an included router
            for context in contexts():
                original = context.original_route
                path = context.path or original.path
                methods = context.methods or {"WS"}
                found += [(f"{m} {path}", original) for m in methods if m != "HEAD"]
        elif isinstance(route, Mount):
            found.append((f"GET {route.path}", route))
        else:
            methods = getattr(route, "methods", None) or {"WS"}
            path = getattr(route, "path", "")
            found += [(f"{m} {path}", route) for m in methods if m != "HEAD"]
    return found


def concrete(route: str) -> tuple[str, str]:
    """The method and a concrete URL of a route of the table."""
    method, path = route.split(" ", 1)
    for name, value in PATH_VALUES.items():
        path = path.replace(name, value)
    if path == "/static-offline-docs":
        path += "/swagger-ui.css"
    return method, path


def assert_no_leak(text: str) -> None:
    """No traceback, file path or library version in an answer."""
    for pattern in LEAKS:
        assert not pattern.search(text), f"answer leaks {pattern.pattern!r}: {text[:300]}"


def keyed_settings(settings: Settings, **extra: Any) -> Settings:
    """The test's tmp settings with a distinct key for every role."""
    keys = {ROLE_KEYS[role]: SecretStr(key) for role, key in KEYS.items()}
    return settings.model_copy(update={**keys, **extra})


@pytest.fixture(scope="module")
def keyed(
    bundle: ModelBundle, empty_registry_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """An app with all four role keys set, the model loaded; its registry is the session's empty
    MLflow store (every call here leaves it empty: promote and rollback are refused).

    One app serves the module's tests (about 50), not one start each: they hold the status and
    the text of each answer to the role table, and no call changes what a later one sees (the
    bodies sent are refused, 4xx; the one call that acts reloads the same model).
    """
    conf = shared_settings(tmp_path_factory)
    app = create_app(
        keyed_settings(conf, mlflow_tracking_uri=empty_registry_uri),
        loader=Champion(LoadedModel(bundle, "1", {"source": "test"})),
        watch_interval=0.05,
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def call(client: TestClient, route: str, key: str | None, body: str = "none") -> tuple[int, str]:
    """Call one route as ``key``; a WebSocket refused before it is accepted is a 403."""
    method, url = concrete(route)
    headers: dict[str, Any] = {"X-API-Key": key.encode()} if key is not None else {}
    if method == "WS":
        try:
            with client.websocket_connect(url, headers=headers) as socket:
                socket.close()
            return 101, ""
        except WebSocketDisconnect as exc:
            assert exc.code == 1008, exc
            return 403, str(exc.reason)
    kwargs = dict(BODIES[body]) if method == "POST" else {}
    kwargs["headers"] = {**kwargs.get("headers", {}), **headers}
    answer = client.request(method, url, **kwargs)
    return answer.status_code, answer.text


def test_every_route_has_a_decided_role() -> None:
    """The table and the app's routes are the same set: no route without a decided role, no
    stale row."""
    app = create_app(Settings(_env_file=None, env="test", api_key=SecretStr("k")))
    routes = {name for name, _ in app_routes(app)}
    assert routes - set(ROUTE_ROLES) == set(), "routes without a role in api.auth.ROUTE_ROLES"
    assert set(ROUTE_ROLES) - routes == set(), "rows of ROUTE_ROLES no route answers"
    for name, route in app_routes(app):  # the guard each route runs is the table's
        if hasattr(route, "role"):
            assert route.role is ROUTE_ROLES[name], name


def test_routes_that_always_need_a_key_parse_no_body_before_it() -> None:
    """FastAPI parses a declared body parameter before the dependencies: a route of reader role
    or above reads its body itself, after the guard."""
    app = create_app(Settings(_env_file=None, env="test", api_key=SecretStr("k")))
    for name, route in app_routes(app):
        if ROUTE_ROLES[name] >= Role.READER:
            assert getattr(route, "body_field", None) is None, f"{name} parses a body first"


@pytest.mark.parametrize("route", sorted(ROUTE_ROLES))
def test_a_stranger_gets_401_and_nothing_else(keyed: TestClient, route: str) -> None:
    """No key, a wrong key, a key differing by one character, every body: 401 on every route
    that needs a key (all of them here: PREDICT_KEY is set), 2xx only on the open ones."""
    role = ROUTE_ROLES[route]
    bodies = list(BODIES) if route.startswith("POST") else ["none"]
    strangers = [None, "", "wrong", KEYS[Role.ADMIN][:-1], KEYS[Role.ADMIN] + "x", "ключ"]
    for key in strangers:
        for body in bodies:
            status, text = call(keyed, route, key, body)
            assert status < 500, (route, key, body, status, text)
            assert_no_leak(text)
            if role is Role.PREDICT and status == 415:
                continue  # predict routes check the content type header first (no body read)
            if role is Role.OPEN:
                assert status < 400, (route, status, text)
            else:
                assert status in (401, 403) if route.startswith("WS") else status == 401, (
                    route, key, body, status, text,
                )  # fmt: skip


@pytest.mark.parametrize("route", sorted(r for r, role in ROUTE_ROLES.items() if role))
def test_each_role_opens_its_routes_and_no_more(keyed: TestClient, route: str) -> None:
    """The route's own role and every higher one get past the guard; every lower one gets 403."""
    needed = ROUTE_ROLES[route]
    for role, key in KEYS.items():
        status, text = call(keyed, route, key, "json")  # /retrain: 415, no job is started
        assert_no_leak(text)
        if role >= needed:
            assert status not in (401, 403), (route, role, status, text)
        else:
            assert status == 403, (route, role, status, text)
            assert key_variable(needed) in text


def test_predict_is_open_without_predict_key(client: TestClient) -> None:
    """Without PREDICT_KEY anyone scores; the stored predictions still need a key."""
    client.headers["X-API-Key"] = ""  # a stranger
    customer = {"state": "KS"}
    assert client.post("/predict", json=customer).status_code == 422  # judged, not refused
    assert client.post("/predict/explain", json=customer).status_code == 422
    assert client.post("/predict/batch", json=[]).status_code not in (401, 403)
    assert client.get("/model").status_code == 200
    assert client.get("/predictions").status_code == 401


def test_unset_reader_and_writer_keys_fall_back_to_higher_roles(
    make_app: AppFactory, settings: Settings
) -> None:
    """With only API_KEY (and WRITER_KEY) set, reader routes take the writer or admin key."""
    app = make_app(settings=settings.model_copy(update={"writer_key": SecretStr("w-key")}))
    with TestClient(app) as client:
        assert client.get("/predictions").status_code == 401
        assert client.get("/predictions", headers={"X-API-Key": "w-key"}).status_code == 200
        assert client.get("/predictions", headers={"X-API-Key": "test-key"}).status_code == 200
        refused = client.post("/model/reload", headers={"X-API-Key": "w-key"})
        assert refused.status_code == 403 and "API_KEY" in refused.json()["detail"]


def test_dev_without_any_key_is_open_and_says_so(
    make_app: AppFactory, settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    """ENV=dev with no key at all (`make run` at home): reader and writer routes open, admin
    routes behind dev-api-key, and one log line saying so."""
    dev = settings.model_copy(update={"env": "dev", "api_key": None})
    with TestClient(make_app(settings=dev)) as client:
        assert client.get("/predictions").status_code == 200
        assert client.get("/metrics/live").status_code == 200
        assert client.post("/model/reload").status_code == 401
        ok = client.post("/model/reload", headers={"X-API-Key": "dev-api-key"})
        assert ok.status_code == 200
    logged = capfd.readouterr().err
    assert logged.count("open to anyone") == 1, logged[-2000:]


def test_dev_with_one_key_is_closed(make_app: AppFactory, settings: Settings) -> None:
    """A single key set in dev closes the reader routes (no half-open configuration)."""
    dev = settings.model_copy(update={"env": "dev", "api_key": None, "reader_key": SecretStr("r")})
    with TestClient(make_app(settings=dev)) as client:
        assert client.get("/predictions").status_code == 401
        assert client.get("/predictions", headers={"X-API-Key": "r"}).status_code == 200


def test_a_rotated_secret_file_takes_effect_without_restart(
    make_app: AppFactory, settings: Settings, tmp_path: Path
) -> None:
    """READER_KEY_FILE is read again when it changes: the old key stops working at once."""
    secret = tmp_path / "reader_key"
    secret.write_text("first-reader-key\n", encoding="utf-8")
    app = make_app(settings=settings.model_copy(update={"reader_key_file": secret}))
    with TestClient(app) as client:
        first = {"X-API-Key": "first-reader-key"}
        assert client.get("/predictions", headers=first).status_code == 200
        secret.write_text("second-reader-key-longer\n", encoding="utf-8")
        assert client.get("/predictions", headers=first).status_code == 401
        second = {"X-API-Key": "second-reader-key-longer"}
        assert client.get("/predictions", headers=second).status_code == 200


def test_prod_refuses_a_placeholder_role_key(settings: Settings) -> None:
    """ENV=prod refuses to start with a placeholder key of any role."""
    prod = settings.model_copy(
        update={
            "env": "prod",
            "api_key": SecretStr("a-real-admin-key"),
            "reader_key": SecretStr("changeme"),
        }
    )
    with pytest.raises(ValueError, match="READER_KEY"):
        create_app(prod)


def test_openapi_shows_the_key_on_guarded_routes_only(keyed: TestClient) -> None:
    """The APIKeyHeader scheme is on every guarded operation, with its 401 and 403."""
    spec = keyed.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    for route, role in ROUTE_ROLES.items():
        method, path = route.split(" ", 1)
        operation = spec["paths"].get(path, {}).get(method.lower())
        if operation is None:
            continue  # the docs pages and the WebSockets are not operations
        assert bool(operation.get("security")) is (role is not Role.OPEN), route
        if role is not Role.OPEN:
            assert {"401", "403"} <= set(operation["responses"]), route


def test_the_docs_show_the_role_table() -> None:
    """docs/security.md holds the table as :func:`api.auth.role_table_markdown` renders it, and
    the README's configuration table lists every role's key."""
    security = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    assert role_table_markdown() in security, "paste api.auth.role_table_markdown() in"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for role in ROLE_KEYS:
        assert f"`{key_variable(role)}` / `{key_variable(role)}_FILE`" in readme
    assert "docs/security.md" in readme
