"""OpenAPI: documented examples, and schemathesis against /openapi.json of a real uvicorn server.

Schemathesis generates requests from the schema for every operation (≥ 1,000 cases in all) and
checks: no server error, responses conform to the declared schemas and content types.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest
import schemathesis
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr
from schemathesis import checks

from api.main import create_app
from core.persist import ModelBundle
from core.registry import LoadedModel
from core.schema import EXAMPLE_CHURNER, EXAMPLE_LOYAL, FEATURE_NAMES
from core.settings import Settings
from tests.api.conftest import Champion
from tests.net import free_port

MIN_CASES = 1000


def test_docs_show_a_churner_and_a_loyal_customer(client: TestClient) -> None:
    """Every field documented; both examples visible on /predict in /docs."""
    spec = client.get("/openapi.json").json()
    customer = spec["components"]["schemas"]["Customer"]
    assert set(customer["properties"]) == set(FEATURE_NAMES)
    assert customer["additionalProperties"] is True  # other fields come back in `passthrough`
    assert "passthrough" in customer["description"]
    for name, prop in customer["properties"].items():
        assert prop.get("description"), name
        assert prop.get("examples"), name
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/Customer"}
    examples = {name: ex["value"] for name, ex in body["examples"].items()}
    assert examples == {"churner": EXAMPLE_CHURNER, "loyal": EXAMPLE_LOYAL}
    response = spec["paths"]["/predict"]["post"]["responses"]
    assert {"200", "413", "415", "422", "503"} <= set(response)
    for path, item in spec["paths"].items():
        if path.startswith("/monitoring"):
            continue  # documented by the monitoring area
        for method, operation in item.items():
            assert operation.get("summary") and operation.get("description"), (method, path)
    assert "swagger-ui" in client.get("/docs").text


class ThreadServer:
    """A real uvicorn server (httptools + uvloop) in a thread of the test process."""

    def __init__(self, settings: Settings, bundle: ModelBundle) -> None:
        app = create_app(settings, loader=Champion(LoadedModel(bundle, "1", {})))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, port=self.port, loop="uvloop", http="httptools", log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory, bundle: ModelBundle) -> Iterator[str]:
    """A real server on a free port, every store in a tmp dir, for the whole module."""
    var = Path(tmp_path_factory.mktemp("schemathesis"))
    settings = Settings(var_dir=var, env="test", api_key=SecretStr("test-key"))
    with ThreadServer(settings, bundle) as server:
        yield server.url


def test_feedback_s_documented_schema_is_what_it_accepts(module_client: TestClient) -> None:
    """A client generated from the docs may send every spelling the API accepts, and none it
    refuses: each value is checked against the documented request schema and the real route."""
    document = module_client.get("/openapi.json").json()
    body = document["paths"]["/feedback"]["post"]["requestBody"]["content"]["application/json"]
    actual = body["schema"]["properties"]["actual"]  # the route documents its body inline
    accepted: list[object] = ["yes", "no", "True.", "FALSE", "1", "0", "oui", "non", True, 0, 1]
    for value in accepted:
        jsonschema.validate(value, actual)  # documented
        answer = module_client.post("/feedback", json={"prediction_id": "nope", "actual": value})
        assert answer.status_code == 404, (value, answer.text)  # valid body, unknown prediction
    for value in ["maybe", "", 2, None, ["yes"]]:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(value, actual)
        answer = module_client.post("/feedback", json={"prediction_id": "nope", "actual": value})
        assert answer.status_code == 422, (value, answer.text)


CHECKS = [
    checks.not_a_server_error,
    checks.response_schema_conformance,
    checks.content_type_conformance,
]


@pytest.mark.integration
def test_schemathesis(live_url: str) -> None:
    """≥ 1,000 generated cases over every operation: 0 server errors, 0 schema violations."""
    api = schemathesis.openapi.from_url(f"{live_url}/openapi.json")
    count = {"cases": 0}
    failures: list[str] = []
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 20
    per_operation = max(60, MIN_CASES // len(operations) + 20)
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=per_operation,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            count["cases"] += 1
            case.call_and_validate(checks=CHECKS, timeout=30)

        try:
            run()  # pylint: disable=no-value-for-parameter  # hypothesis supplies `case`
        except Exception as exc:  # pylint: disable=broad-exception-caught  # collect them all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert count["cases"] >= MIN_CASES, count
    assert httpx.get(f"{live_url}/health").status_code == 200


@pytest.mark.integration
def test_the_live_server_stores_in_its_own_folder(live_url: str) -> None:
    """The module's real server answers and stores the prediction in the store it was given."""
    answer = httpx.post(f"{live_url}/predict", json=EXAMPLE_CHURNER, timeout=30)
    assert answer.status_code == 200
    stored = httpx.get(
        f"{live_url}/predictions/{answer.json()['prediction_id']}",
        headers={"X-API-Key": "test-key"},  # reading stored predictions needs a reader's key
        timeout=30,
    )
    assert stored.status_code == 200 and stored.json()["label"] == answer.json()["label"]
