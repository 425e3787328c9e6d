"""ui.client over real HTTP against a tiny stub server: paths, headers, errors, timeouts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.settings import get_settings
from tests.net import free_port
from ui import client as ui_client
from ui.client import ApiClient, ApiError


class Stub(BaseHTTPRequestHandler):
    """Answers by path; records what it received."""

    seen: list[dict] = []

    def log_message(self, *args) -> None:  # keep pytest output clean
        del args

    def _send(self, status: int, body: object, ctype: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        Stub.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                          "body": body})  # fmt: skip
        return body

    def do_GET(self) -> None:  # noqa: N802  # pylint: disable=invalid-name  # http.server API
        self._record()
        routes = {
            "/health": (200, {"status": "ok"}),
            "/ready": (503, {"status": "not_ready", "reason": "no model", "model_version": None}),
            "/model/versions": (200, [{"version": "1"}, "junk"]),
            "/model/versions/1/curve": (200, {"version": "1", "points": [{"step": 1}]}),
            "/model/versions/1/plots/roc.png": (200, b"\x89PNG"),
            "/model": (200, ["not", "an", "object"]),
            "/notjson": (200, b"<html>"),
        }
        if self.path.startswith("/predictions"):
            self._send(200, {"items": [], "total": 0})
        elif self.path == "/slow":
            time.sleep(1.0)
            self._send(200, {})
        elif self.path == "/boom":
            self._send(500, b"Internal Server Error", "text/plain")
        elif self.path in routes:
            status, body = routes[self.path]
            self._send(status, body, "image/png" if isinstance(body, bytes) else "application/json")
        else:
            self._send(404, {"detail": "Not Found"})

    def do_POST(self) -> None:  # noqa: N802  # pylint: disable=invalid-name  # http.server API
        body = self._record()
        if self.path == "/predict":
            detail = [{"type": "less_than_equal", "loc": ["body", "account_length"],
                       "msg": "Input should be less than or equal to 400"}]  # fmt: skip
            self._send(422, {"detail": detail})
        elif self.path == "/predict/batch":
            rows = [{"row": i, "column": "state", "reason": "unknown value"} for i in range(7)]
            self._send(422, {"detail": rows})
        elif self.path == "/model/promote":
            ok = self.headers.get("X-API-Key") == "k"
            self._send(200 if ok else 401, {"version": "2"} if ok else {"detail": "bad key"})
        elif self.path == "/retrain":
            self._send(202, {"job_id": "j1"} if b"filename=" in body else {"job_id": "j0"})
        else:
            self._send(404, {"detail": "Not Found"})


@pytest.fixture(scope="module")
def stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def api(stub: str) -> ApiClient:
    Stub.seen.clear()
    return ApiClient(stub + "/", timeout=(1.0, 3.0))


def test_json_answers_and_query_params(api: ApiClient, stub: str) -> None:
    assert api.health() == {"status": "ok"}
    assert api.model_versions() == [{"version": "1"}]  # non-objects dropped
    assert api.model_curve("1") == [{"step": 1}]
    assert api.model_plot("1", "roc.png") == b"\x89PNG"
    api.predictions(limit=5, offset=0, label=None, model_version="", since="2025-01-01")
    assert Stub.seen[-1]["path"] == "/predictions?limit=5&offset=0&since=2025-01-01"
    assert api.url("/x") == f"{stub}/x"


def test_not_ready_is_an_answer_not_an_error(api: ApiClient) -> None:
    assert api.ready()["status"] == "not_ready"


def test_validation_errors_are_readable(api: ApiClient, stub: str) -> None:
    with pytest.raises(ApiError) as info:
        api.predict({"account_length": 9999})
    err = info.value
    assert (err.url, err.status) == (f"{stub}/predict", 422)
    assert err.message == "account_length: Input should be less than or equal to 400"
    with pytest.raises(ApiError) as info:
        api.predict_batch([{}])
    assert info.value.message.startswith("row 0 state: unknown value; row 1 state")
    assert info.value.message.endswith("(+2 more)") and len(info.value.details) == 7


def test_api_key_header_and_401(api: ApiClient) -> None:
    assert api.with_key("k").promote("2") == {"version": "2"}
    assert Stub.seen[-1]["headers"]["X-API-Key"] == "k"
    assert json.loads(Stub.seen[-1]["body"]) == {"version": "2"}
    with pytest.raises(ApiError) as info:
        api.with_key("wrong").promote("2")
    assert info.value.status == 401 and info.value.refused
    assert "check the API key" in info.value.message


def test_the_client_holds_no_key_of_its_own(api: ApiClient) -> None:
    """Only a keyed copy sends a key; the shared client never gets one."""
    keyed = api.with_key("k")
    assert api.api_key is None and keyed.api_key == "k"
    api.health()
    assert "X-API-Key" not in Stub.seen[-1]["headers"]
    assert api.with_key("").api_key is None


def test_retrain_with_and_without_csv(api: ApiClient) -> None:
    admin = api.with_key("k")
    assert admin.start_retrain() == "j0"
    assert admin.start_retrain(b"a,b\n1,2\n", "train.csv") == "j1"
    assert b'filename="train.csv"' in Stub.seen[-1]["body"]


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [("/boom", 500, "Internal Server Error"), ("/nope", 404, "Not Found")],
)
def test_http_errors(api: ApiClient, stub: str, path: str, status: int, message: str) -> None:
    with pytest.raises(ApiError) as info:
        api.request("GET", path)
    assert (info.value.url, info.value.status, info.value.message) == (stub + path, status, message)
    assert not info.value.unreachable


def test_unexpected_bodies(api: ApiClient) -> None:
    with pytest.raises(ApiError, match="not JSON"):
        api._json("GET", "/notjson")  # pylint: disable=protected-access
    with pytest.raises(ApiError, match="expected a JSON object"):
        api.model()


def test_timeout_and_refused_have_no_status(stub: str) -> None:
    slow = ApiClient(stub, timeout=(1.0, 0.2))
    with pytest.raises(ApiError) as info:
        slow.request("GET", "/slow")
    assert info.value.unreachable and "timeout" in info.value.message
    port = free_port()
    with pytest.raises(ApiError) as info:
        ApiClient(f"http://127.0.0.1:{port}").health()
    assert info.value.unreachable and info.value.url == f"http://127.0.0.1:{port}/health"
    assert "cannot reach the API" in str(info.value)


def test_get_client_follows_api_url(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    del settings
    monkeypatch.setenv("API_URL", "http://api.example:8123/")
    get_settings.cache_clear()
    assert ui_client.get_client().base_url == "http://api.example:8123"
    assert ui_client.get_client() is ui_client.get_client()
