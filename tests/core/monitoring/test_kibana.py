"""Kibana saved objects validated offline, and the import client against a local stand-in."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core.monitoring import kibana
from tests.core.monitoring import kibana_checks
from core.monitoring.indices import DEPLOY_DIR, ELASTIC_VERSION, load_templates

KIBANA_DIR = DEPLOY_DIR / "kibana"


def test_committed_ndjson_is_the_rendered_specs() -> None:
    rendered = kibana.render_all()
    committed = {p.name: p.read_text(encoding="utf-8") for p in KIBANA_DIR.glob("*.ndjson")}
    assert committed == rendered, "run `make kibana-render` and commit deploy/kibana"


@pytest.mark.parametrize("name", sorted(p.name for p in KIBANA_DIR.glob("*.ndjson")))
def test_ndjson_parses_references_resolve_fields_exist(name: str) -> None:
    objects = kibana_checks.parse_ndjson((KIBANA_DIR / name).read_text(encoding="utf-8"))
    assert objects
    assert kibana_checks.validate_objects(objects, load_templates()) == []
    for obj in objects:
        if obj["type"] == "dashboard":
            panels = json.loads(obj["attributes"]["panelsJSON"])
            assert all(p["version"] == ELASTIC_VERSION for p in panels)


def test_dashboards_cover_the_issue() -> None:
    titles = {d.title for d in kibana.DASHBOARDS}
    assert {"Model metrics", "Predictions", "Drift", "Host"} <= {t.split(" · ")[1] for t in titles}
    views = {kibana.data_view_object(v)["attributes"]["title"] for v in kibana.DATA_VIEWS}
    assert views == {f"{name}*" for name in load_templates().indices}


def test_validation_catches_problems() -> None:
    board = kibana.DASHBOARDS[0]
    lens = kibana.lens_object(board, board.panels[0])
    lens["attributes"]["state"]["query"]["query"] = "nope.field:1"
    dashboard = kibana.dashboard_object(board)
    problems = kibana_checks.validate_objects([lens, dashboard], load_templates())
    assert any("not in the file" in p for p in problems)
    view = kibana.data_view_object("model-metrics")
    problems = kibana_checks.validate_objects([view, lens, lens], load_templates())
    assert "duplicate (type, id)" in problems
    assert any("nope.field" in p for p in problems)
    with pytest.raises(ValueError):
        kibana_checks.parse_ndjson("{}\n{not json")
    with pytest.raises(KeyError):
        kibana_checks.find_panel("host", "nope")


class _Kibana(BaseHTTPRequestHandler):
    status_calls = 0
    answer: dict[str, Any] = {}

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        type(self).status_calls += 1
        level = "available" if self.status_calls > 1 else "degraded"
        self._send(200, {"status": {"overall": {"level": level}}})

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        ok = b"churnops-" in body and "overwrite=true" in self.path
        ok = ok and self.headers.get("kbn-xsrf") is not None
        self._send(200, self.answer if ok else {"success": False})

    def log_message(self, *args: Any) -> None:
        del args


@pytest.fixture()
def fake_kibana() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Kibana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_import_waits_for_available_and_checks_errors(fake_kibana: str) -> None:
    files = sorted(KIBANA_DIR.glob("*.ndjson"))
    _Kibana.status_calls = 0
    _Kibana.answer = {"success": True, "successCount": 3, "errors": []}
    imported = kibana.import_saved_objects(fake_kibana, files[:2], timeout=10, poll_interval=0.05)
    assert imported == 6
    assert _Kibana.status_calls >= 2
    _Kibana.answer = {"success": False, "successCount": 0, "errors": [{"id": "x", "error": {}}]}
    with pytest.raises(kibana.KibanaError, match="import failed"):
        kibana.import_saved_objects(fake_kibana, files[:1], timeout=10, poll_interval=0.05)
    with pytest.raises(kibana.KibanaError, match="not available"):
        kibana.wait_available("http://127.0.0.1:9", timeout=0.2, interval=0.1)
