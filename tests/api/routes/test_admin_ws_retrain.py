"""Admin key, model swaps, background retrain jobs and the WebSockets (TestClient)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.persist import ModelBundle
from core.pipelines import TrainResult
from core.registry import LoadedModel
from core.schema import EXAMPLE_CHURNER, EXAMPLE_LOYAL
from core.settings import Settings, get_settings
from tests.api.conftest import API_KEY, AppFactory, Champion
from tests.factories import train_result

ADMIN = {"X-API-Key": API_KEY}


def _wait(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@pytest.mark.parametrize("path", ["/model/reload", "/model/rollback", "/retrain"])
@pytest.mark.parametrize("key", [None, "wrong", "test-ke", "test-key-longer", "ключ"])
def test_admin_needs_the_key(module_client: TestClient, path: str, key: str | None) -> None:
    """401 without or with a wrong X-API-Key (constant-time compare, non-ASCII safe)."""
    headers = {"X-API-Key": key.encode("utf-8") if key is not None else b""}
    answer = module_client.post(path, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "APIKey"


BODIES: list[dict[str, Any]] = [
    {"json": {"version": "2"}},
    {"content": b"{not json", "headers": {"content-type": "application/json"}},
    {"content": b"version=2", "headers": {"content-type": "text/plain"}},
    {"content": b"\x00\xff", "headers": {"content-type": "application/octet-stream"}},
    {"files": {"file": ("t.csv", b"a,b\n1,2\n", "text/csv")}},
]


@pytest.mark.parametrize("path", ["/retrain", "/model/promote"])
@pytest.mark.parametrize("body", BODIES, ids=["json", "bad-json", "text", "binary", "multipart"])
@pytest.mark.parametrize("key", [None, "wrong"])
def test_admin_authenticates_before_it_looks_at_the_body(
    module_client: TestClient, path: str, body: dict[str, Any], key: str | None
) -> None:
    """401 first, whatever the content type or the body: never 415 or 422 to a stranger."""
    headers = {**body.get("headers", {}), "X-API-Key": key or ""}
    answer = module_client.post(path, **{**body, "headers": headers})
    assert answer.status_code == 401, answer.text
    state = module_client.app.state.churnops  # type: ignore[attr-defined]
    assert not (state.settings.var_dir / "uploads").exists()


def test_with_the_key_the_content_type_and_body_are_judged(client: TestClient) -> None:
    """After the key: 415 for a content type the route does not take, 422 for a bad body."""
    assert client.post("/retrain", json={"x": 1}, headers=ADMIN).status_code == 415
    assert client.post("/model/promote", data={"v": "2"}, headers=ADMIN).status_code == 415
    bad = client.post(
        "/model/promote",
        content=b"{not json",
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][0] == "body"
    wrong = client.post("/model/promote", json={"version": "x"}, headers=ADMIN)
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["column"] == "version"


def test_promote_validation_and_registry_errors(
    make_app: AppFactory, settings: Settings, empty_registry_uri: str
) -> None:
    """Promote validates the body; registry failures are 409/502, never 500. The registry is the
    session's empty MLflow store (promote and rollback are refused: it stays empty)."""
    app = make_app(settings=settings.model_copy(update={"mlflow_tracking_uri": empty_registry_uri}))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert (
            client.post("/model/promote", json={"version": "x"}, headers=ADMIN).status_code == 422
        )
        answer = client.post("/model/promote", json={"version": "999"}, headers=ADMIN)
        assert answer.status_code in (409, 502)
        assert client.post("/model/rollback", headers=ADMIN).status_code in (409, 502)
        assert client.get("/model/versions", headers=ADMIN).status_code in (200, 502)


def test_prod_refuses_placeholder_key(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside dev, the app refuses to start with a missing or placeholder key."""
    for value in ("changeme", ""):
        monkeypatch.setenv("ENV", "prod")
        monkeypatch.setenv("API_KEY", value)
        get_settings.cache_clear()
        with pytest.raises(ValueError, match="API_KEY"):
            create_app(get_settings())
    del settings


def test_key_from_docker_secret_file(
    make_app: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """API_KEY_FILE (a Docker secret) provides the key."""
    secret = tmp_path / "api_key"
    secret.write_text("from-secret-file\n", encoding="utf-8")
    monkeypatch.delenv("API_KEY")
    monkeypatch.setenv("API_KEY_FILE", str(secret))
    get_settings.cache_clear()
    with TestClient(make_app(settings=get_settings())) as client:
        assert client.post("/model/reload", headers=ADMIN).status_code == 401
        ok = client.post("/model/reload", headers={"X-API-Key": "from-secret-file"})
        assert ok.status_code == 200


def test_reload_swaps_atomically_and_announces(
    client: TestClient, champion: Champion, small_bundle: ModelBundle
) -> None:
    """POST /model/reload: new version served; /ws/events says model_swapped."""
    with client.websocket_connect("/ws/events") as events:
        hello = events.receive_json()
        assert hello["type"] == "hello" and hello["model_version"] == "1"
        champion.loaded = LoadedModel(small_bundle, "2", {"source": "test"}, True, "cache")
        answer = client.post("/model/reload", headers=ADMIN)
        assert answer.status_code == 200
        assert answer.json() == {
            "status": "ok",
            "action": "reload",
            "version": "2",
            "generation": 1,
        }
        swapped = events.receive_json()
        assert swapped["type"] == "model_swapped" and swapped["model_version"] == "2"
    assert client.post("/predict", json=EXAMPLE_LOYAL).json()["model_version"] == "2"
    info = client.get("/model").json()
    assert info["version"] == "2" and info["degraded"] is True and info["compiled"] == "onnx"
    assert client.get("/ready").json() == {
        "status": "degraded",
        "reason": "cache",
        "model_version": "2",
    }


def test_reload_failure_keeps_the_old_model(client: TestClient, champion: Champion) -> None:
    """A failing reload answers 502 and keeps serving the previous model."""

    def broken(settings: Settings) -> LoadedModel:
        raise RuntimeError("registry down")

    client.app.state.churnops.manager._loader = broken  # type: ignore[attr-defined]
    answer = client.post("/model/reload", headers=ADMIN)
    assert answer.status_code == 502 and "registry down" in answer.json()["detail"]
    assert client.post("/predict", json=EXAMPLE_LOYAL).json()["model_version"] == "1"
    del champion


def test_generation_bump_from_elsewhere_is_followed(
    client: TestClient, champion: Champion, small_bundle: ModelBundle
) -> None:
    """Another worker's promotion (a DB generation bump) reaches this worker by itself."""
    from core.store import bump_generation  # pylint: disable=import-outside-toplevel

    state = client.app.state.churnops  # type: ignore[attr-defined]
    champion.loaded = LoadedModel(small_bundle, "7", {})
    bump_generation(state.engine, "promoted by another worker")
    _wait(lambda: client.get("/model").json()["version"] == "7")
    assert client.get("/model").json()["generation"] == 1


class FakeTrainer:
    """A retrain that reports progress, can be held, and promotes a new champion."""

    def __init__(self, champion: Champion, new: LoadedModel, promoted: bool = True) -> None:
        self.champion = champion
        self.new = new
        self.promoted = promoted
        self.release = threading.Event()
        self.release.set()
        self.seen_data: list[Path] = []

    def __call__(self, settings: Settings, on_progress: Any) -> TrainResult:
        self.seen_data.append(settings.data_path)
        on_progress("load", 0.1)
        self.release.wait(30)
        on_progress("train", 0.5)
        if self.promoted:
            self.champion.loaded = self.new
        return train_result(promoted=self.promoted, model_version=self.new.version, reason="test")


def test_retrain_job_gate_and_hot_swap(
    make_app: AppFactory, champion: Champion, small_bundle: ModelBundle
) -> None:
    """202 + job id; 409 while running; progress; promoted → swapped; events on the socket."""
    trainer = FakeTrainer(champion, LoadedModel(small_bundle, "2", {}))
    trainer.release.clear()
    with TestClient(make_app(trainer=trainer), headers=ADMIN) as client:
        with client.websocket_connect("/ws/events") as events:
            assert events.receive_json()["type"] == "hello"
            started = client.post("/retrain", headers=ADMIN)
            assert started.status_code == 202
            job = started.json()["job_id"]
            assert client.post("/retrain", headers=ADMIN).status_code == 409
            running = client.get(f"/retrain/{job}").json()
            assert running["status"] in ("queued", "running")
            # predictions keep flowing during the retrain
            for _ in range(20):
                assert client.post("/predict", json=EXAMPLE_CHURNER).status_code == 200
            trainer.release.set()
            _wait(lambda: client.get(f"/retrain/{job}").json()["status"] == "succeeded")
            # This worker announces its own swap at once; progress comes with the next poll of
            # the jobs table, so the two may arrive in either order.
            kinds = set()
            while not {"model_swapped", "retrain_progress"} <= kinds:
                kinds.add(events.receive_json()["type"])
        done = client.get(f"/retrain/{job}").json()
        assert done["result"]["promoted"] is True
        assert [p["step"] for p in done["progress"]] == ["load", "train", "swap", "done"]
        assert client.post("/predict", json=EXAMPLE_LOYAL).json()["model_version"] == "2"
        assert client.get("/retrain/nope").status_code == 404


def test_retrain_not_promoted_keeps_model(make_app: AppFactory, champion: Champion) -> None:
    """A challenger that fails the gate changes nothing."""
    trainer = FakeTrainer(champion, champion.loaded, promoted=False)
    with TestClient(make_app(trainer=trainer), headers=ADMIN) as client:
        job = client.post("/retrain", headers=ADMIN).json()["job_id"]
        _wait(lambda: client.get(f"/retrain/{job}").json()["status"] == "succeeded")
        assert client.get(f"/retrain/{job}").json()["result"]["promoted"] is False
        assert client.get("/model").json()["generation"] == 0


def test_retrain_failure_is_reported(make_app: AppFactory) -> None:
    """An exception in training: status failed with the error, the next retrain may start."""

    def broken(settings: Settings, on_progress: Any) -> TrainResult:
        raise ValueError("no data")

    with TestClient(make_app(trainer=broken), headers=ADMIN) as client:
        job = client.post("/retrain", headers=ADMIN).json()["job_id"]
        _wait(lambda: client.get(f"/retrain/{job}").json()["status"] == "failed")
        assert "no data" in client.get(f"/retrain/{job}").json()["error"]
        assert client.post("/retrain", headers=ADMIN).status_code == 202


def test_retrain_on_uploaded_csv(
    make_app: AppFactory, champion: Champion, holdout: tuple[pd.DataFrame, Any]
) -> None:
    """An uploaded training CSV is validated, stored and used; an invalid one is 422."""
    trainer = FakeTrainer(champion, champion.loaded, promoted=False)
    frame = holdout[0].assign(churn=["yes" if v else "no" for v in holdout[1]])
    with TestClient(make_app(trainer=trainer), headers=ADMIN) as client:
        bad = client.post(
            "/retrain", headers=ADMIN, files={"file": ("t.csv", "a,b\n1,2\n", "text/csv")}
        )
        assert bad.status_code == 422
        answer = client.post(
            "/retrain", headers=ADMIN, files={"file": ("t.csv", frame.to_csv(index=False))}
        )
        assert answer.status_code == 202
        job = answer.json()["job_id"]
        _wait(lambda: client.get(f"/retrain/{job}").json()["status"] == "succeeded")
    used = trainer.seen_data[-1]
    assert used.is_file() and pd.read_csv(used).shape == frame.shape


def _uploads(settings: Settings) -> list[Path]:
    folder = settings.var_dir / "uploads"
    return sorted(folder.iterdir()) if folder.exists() else []


def _labelled(holdout: tuple[pd.DataFrame, Any]) -> pd.DataFrame:
    return holdout[0].assign(churn=["yes" if v else "no" for v in holdout[1]])


def test_retrain_refuses_up_front_what_it_cannot_train_on_and_keeps_nothing(
    make_app: AppFactory, champion: Champion, settings: Settings, holdout: tuple[pd.DataFrame, Any]
) -> None:
    """422 with the reasons before any job (bad rows, too few rows of a class); no upload kept."""
    trainer = FakeTrainer(champion, champion.loaded, promoted=False)
    frame = _labelled(holdout)
    bad = frame.astype({"state": object}).copy()
    bad.loc[bad.index[3], "state"] = "ZZ"
    few = pd.concat(
        [frame[frame["churn"] == "no"].head(30), frame[frame["churn"] == "yes"].head(4)]
    )
    with TestClient(make_app(trainer=trainer), headers=ADMIN) as client:
        answer = client.post(
            "/retrain", headers=ADMIN, files={"file": ("t.csv", bad.to_csv(index=False))}
        )
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["row"] == 3
        assert "unknown value 'ZZ'" in answer.json()["detail"][0]["reason"]
        answer = client.post(
            "/retrain", headers=ADMIN, files={"file": ("t.csv", few.to_csv(index=False))}
        )
        assert answer.status_code == 422
        assert "4 'yes' row(s); at least 10 of each class" in answer.json()["detail"][0]["reason"]
        assert not _uploads(settings) and not trainer.seen_data


def test_retrain_drop_invalid_rows_trains_on_the_valid_rows_and_says_how_many(
    make_app: AppFactory, champion: Champion, settings: Settings, holdout: tuple[pd.DataFrame, Any]
) -> None:
    """drop_invalid_rows=true: 202, the count dropped, the job trains on the valid rows only;
    Excel's empty rows at the end are not rows at all."""
    trainer = FakeTrainer(champion, champion.loaded, promoted=False)
    frame = _labelled(holdout).astype({"state": object})
    frame.loc[frame.index[[3, 8]], "state"] = "ZZ"
    text = frame.to_csv(index=False, sep=";", decimal=",") + ";" * 19 + "\n" + ";" * 19 + "\n"
    with TestClient(make_app(trainer=trainer), headers=ADMIN) as client:
        answer = client.post(
            "/retrain?drop_invalid_rows=true",
            headers=ADMIN,
            files={"file": ("t.csv", text.encode(), "text/csv")},
        )
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert (body["rows"], body["dropped_rows"]) == (len(frame) - 2, 2)
        assert body["read_as"] == "read as ;-separated, decimal comma, UTF-8"
        assert "2 empty row(s) ignored" in body["warnings"]
        _wait(lambda: client.get(f"/retrain/{body['job_id']}").json()["status"] == "succeeded")
    stored = pd.read_csv(trainer.seen_data[-1])
    assert len(stored) == len(frame) - 2 and "ZZ" not in set(stored["state"])


def test_a_refused_retrain_409_keeps_no_upload(
    make_app: AppFactory, champion: Champion, settings: Settings, holdout: tuple[pd.DataFrame, Any]
) -> None:
    """While a job runs, a second upload is refused (409) and its file is not kept."""
    trainer = FakeTrainer(champion, champion.loaded, promoted=False)
    trainer.release.clear()
    upload = {"file": ("t.csv", _labelled(holdout).to_csv(index=False))}
    with TestClient(make_app(trainer=trainer), headers=ADMIN) as client:
        first = client.post("/retrain", headers=ADMIN, files=upload)
        assert first.status_code == 202
        kept = _uploads(settings)
        assert len(kept) == 1
        assert client.post("/retrain", headers=ADMIN, files=upload).status_code == 409
        assert _uploads(settings) == kept
        trainer.release.set()
        _wait(
            lambda: client.get(f"/retrain/{first.json()['job_id']}").json()["status"] != "running"
        )


def test_ws_predict(client: TestClient) -> None:
    """Customers in, predictions out; bad messages get an error and the socket stays open."""
    with client.websocket_connect("/ws/predict") as socket:
        socket.send_json(EXAMPLE_CHURNER)
        first = socket.receive_json()
        assert first["type"] == "prediction" and first["label"] == "yes"
        socket.send_text("{not json")
        assert socket.receive_json()["type"] == "error"
        socket.send_text('{"total_day_minutes": NaN}')
        assert socket.receive_json()["type"] == "error"
        socket.send_json({**EXAMPLE_LOYAL, "state": "XX"})
        error = socket.receive_json()
        assert error["type"] == "error" and error["detail"][0]["column"] == "state"
        socket.send_json([])
        assert socket.receive_json()["type"] == "error"
        socket.send_json({"id": "abc", "customer": EXAMPLE_LOYAL})
        tagged = socket.receive_json()
        assert tagged["id"] == "abc" and tagged["label"] == "no"
        socket.send_json([EXAMPLE_LOYAL, EXAMPLE_CHURNER])
        many = socket.receive_json()
        assert [p["label"] for p in many["predictions"]] == ["no", "yes"]
        socket.send_bytes(b"\xff\xfe")
        assert socket.receive_json()["type"] == "error"
        socket.send_bytes(b'{"x": 1}')
        assert socket.receive_json()["type"] == "error"
        socket.send_text("x" * 1_000_001)
        assert "over" in socket.receive_json()["detail"]
        socket.send_json(EXAMPLE_LOYAL)
        assert socket.receive_json()["type"] == "prediction"


def test_worker_without_model_retries_until_the_registry_answers(
    make_app: AppFactory, champion: Champion
) -> None:
    """A worker that started while the registry was down loads the champion once it is back."""
    calls = {"n": 0}

    def flaky(settings: Settings) -> LoadedModel:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("registry down at start")
        return champion(settings)

    with TestClient(make_app(loader=flaky), headers=ADMIN) as client:
        assert client.get("/ready").status_code == 503
        client.app.state.churnops.manager.retry_after = 0.05  # type: ignore[attr-defined]
        _wait(lambda: client.get("/ready").status_code == 200)
        assert client.post("/predict", json=EXAMPLE_LOYAL).status_code == 200
