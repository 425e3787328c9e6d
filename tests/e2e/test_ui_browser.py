"""The UI in headless Chromium against the real API: form → same probability as ``POST /predict``,
CSV upload → scored download, feedback, retrain, and a screenshot of every page for the README."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from playwright.sync_api import expect

from core.schema import EXAMPLE_CHURNER, FEATURES
from tests.conftest import ROOT
from tests.e2e.conftest import (
    API_KEY,
    READER,
    READER_KEY,
    WRITER,
    WRITER_KEY,
    Stack,
    free_port,
    http_json,
    uuid_in,
)
from ui.components import pct

# the first test also waits for the session stack (API start + first training): allow for it
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

# `make screenshots` sets SCREENSHOT_DIR=docs/img to refresh the README pictures; a plain test run
# writes them in the session's own folder, never in the tracked files or the user's var/.
SHOTS = Path(os.environ.get("SCREENSHOT_DIR") or Path(os.environ["VAR_DIR"]) / "screenshots")
MAX_SHOT_BYTES = 300_000


def screenshot(page: Any, name: str, max_height: int = 2000) -> Path:
    """Save ``SHOTS/ui-<name>.png`` of the whole page (up to ``max_height`` px), < 300 KB."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"ui-{name}.png"
    page.wait_for_timeout(800)  # let charts finish their transition
    width = page.viewport_size["width"]
    height = page.evaluate(  # the tallest scroll container holds the page
        "() => Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": width, "height": min(max(int(height), 800), max_height)})
    page.wait_for_timeout(400)
    page.screenshot(path=str(path))
    if path.stat().st_size > MAX_SHOT_BYTES:
        with Image.open(path) as image:
            image.convert("RGB").quantize(colors=128).save(path, optimize=True)
    assert path.stat().st_size < MAX_SHOT_BYTES, path
    return path


def open_page(page: Any, stack: Stack, path: str, heading: str, key: str | None = None) -> None:
    """Open a page (a new UI session); with ``key``, type it in the sidebar's API key field, as
    a user of that role logs in."""
    page.goto(f"{stack.ui_url}/{path}")
    page.get_by_role("heading", name=heading, exact=True).wait_for()
    if key is not None:
        field = page.get_by_label("API key", exact=True)
        field.fill(key)
        field.press("Enter")
        page.get_by_role("heading", name=heading, exact=True).wait_for()


def idle(page: Any) -> None:
    """Wait until the app's script run triggered by the last interaction has finished (the status
    widget's running icon gone), so the next interaction is not typed into a page being redrawn
    (on a loaded machine a field filled during a rerun could be sent with its old value)."""
    page.wait_for_timeout(250)  # the rerun starts after the interaction's message is sent
    expect(page.get_by_test_id("stStatusWidgetRunningIcon")).to_have_count(0, timeout=60_000)


def metric(page: Any, label: str) -> str:
    box = page.get_by_test_id("stMetric").filter(has_text=label).first
    return str(box.get_by_test_id("stMetricValue").inner_text()).strip()


def no_traceback(page: Any) -> None:
    assert page.get_by_test_id("stException").count() == 0
    assert "Traceback" not in page.content()


def test_form_gives_the_probability_of_post_predict(page: Any, stack: Stack) -> None:
    open_page(page, stack, "", "Predict churn for one customer")
    page.get_by_role("button", name="Likely churner").click()
    account = page.get_by_role("spinbutton", name="Account length (days)", exact=True)
    expect(account).to_have_value(str(EXAMPLE_CHURNER["account_length"]))  # preset rerun done
    calls = page.get_by_role("spinbutton", name="Customer service calls (calls)", exact=True)
    day_minutes = page.get_by_role("spinbutton", name="Total day minutes (minutes)", exact=True)
    for field, value in ((account, "101"), (calls, "5"), (day_minutes, "250.5")):
        field.fill(value)
        field.press("Tab")
        idle(page)
    page.get_by_role("radiogroup", name="Voice mail plan").get_by_text("Yes").click()
    idle(page)
    page.get_by_role("combobox", name="State").click()
    page.get_by_role("option", name="CA", exact=True).click()
    idle(page)
    expect(account).to_have_value("101")
    expect(calls).to_have_value("5")
    expect(day_minutes).to_have_value("250.50")
    stored_before = http_json(f"{stack.api_url}/predictions?limit=1", headers=READER)["total"]
    predict = page.get_by_role("button", name="Predict churn")
    for _ in range(3):  # an impatient user: clicks during the run, on the same values
        predict.click()
    page.get_by_test_id("stMetric").filter(has_text="Churn probability").wait_for()
    page.get_by_text("What drives this prediction").wait_for()
    idle(page)
    no_traceback(page)
    # one customer, one stored prediction, however many clicks (the drivers come from
    # /predict/explain, which stores none)
    assert (
        http_json(f"{stack.api_url}/predictions?limit=1", headers=READER)["total"]
        == stored_before + 1
    )

    customer = {**EXAMPLE_CHURNER, "account_length": 101, "number_customer_service_calls": 5,
                "total_day_minutes": 250.5, "voice_mail_plan": "yes", "state": "CA"}  # fmt: skip
    direct = http_json(f"{stack.api_url}/predict", customer)
    assert metric(page, "Churn probability") == f"{direct['churn_probability'] * 100:.1f} %"
    assert metric(page, "Model version") == direct["model_version"]
    assert metric(page, "Decision") == ("Will churn" if direct["churn"] else "Will stay")
    caption = page.get_by_text(re.compile(r"^Prediction .* server latency")).inner_text()
    stored = http_json(f"{stack.api_url}/predictions/{uuid_in(caption)}", headers=READER)
    assert stored["features"] == customer  # the form sent exactly this customer
    assert stored["probability"] == pytest.approx(direct["churn_probability"], abs=1e-12)
    screenshot(page, "predict")


def _bigml(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["area_code"] = out["area_code"].str.removeprefix("area_code_").astype(int)
    for name in ("international_plan", "voice_mail_plan"):
        out[name] = out[name].map({"yes": "Yes", "no": "No"})
    out["churn"] = out["churn"].map({"yes": True, "no": False})
    return out.rename(columns={spec.name: spec.bigml for spec in FEATURES} | {"churn": "Churn"})


def test_csv_upload_scores_and_downloads(page: Any, stack: Stack, tmp_path: Path) -> None:
    rows = pd.read_csv(ROOT / "data" / "raw" / "churn.csv", nrows=40)
    bad = rows.iloc[[0]].assign(state="XX")
    upload = tmp_path / "customers-bigml.csv"
    _bigml(pd.concat([rows, bad], ignore_index=True)).to_csv(upload, index=False)

    open_page(page, stack, "batch", "Batch scoring")
    page.locator("input[type=file]").set_input_files(str(upload))
    page.get_by_test_id("stMetric").filter(has_text="Valid rows").wait_for()
    assert (metric(page, "Rows"), metric(page, "Valid rows")) == ("41", "40")
    page.get_by_text("skipped and keep their reason").wait_for()
    page.get_by_role("button", name="Score 40 valid rows").click()
    download_button = page.get_by_role("button", name="Download scored CSV")
    download_button.wait_for()
    assert metric(page, "Rows scored") == "40"
    # the histogram of the probabilities, drawn by Vega in the browser, with the threshold rule
    histogram = page.get_by_test_id("stVegaLiteChart").first
    histogram.locator("canvas, svg").first.wait_for()
    # the file's labels: the API's report of the whole file, figures and confusion matrix
    labelled = http_json(
        f"{stack.api_url}/predict/batch",
        rows[[spec.name for spec in FEATURES] + ["churn"]].to_dict(orient="records"),
    )["labelled"]
    assert metric(page, "F1") == pct(labelled["quality"]["f1"]["value"])
    page.get_by_text("Confusion matrix").wait_for()
    quality = labelled["quality"]
    page.get_by_text(f"n = {quality['n']:,} rows").first.wait_for()  # accuracy: every row
    # precision and recall each on their own rows: the predicted churners, the churners
    page.get_by_text(f"n = {quality['precision']['n']:,} predicted to churn").wait_for()
    page.get_by_text(f"n = {quality['recall']['n']:,} churners", exact=False).first.wait_for()
    no_traceback(page)
    screenshot(page, "batch")
    with page.expect_download() as info:
        download_button.click()
    scored = pd.read_csv(io.BytesIO(Path(info.value.path()).read_bytes()))
    assert info.value.suggested_filename == "customers-bigml-scored.csv"
    assert len(scored) == 41 and "Account length" in scored.columns  # the uploaded spelling
    records = rows[[spec.name for spec in FEATURES]].to_dict(orient="records")
    direct = http_json(f"{stack.api_url}/predict/batch", records)
    expected = [r["churn_probability"] for r in direct["results"]]
    assert scored["churn_probability"].iloc[:40].tolist() == pytest.approx(expected, abs=1e-9)
    assert pd.isna(scored["churn_probability"].iloc[40])
    assert "state: unknown value 'XX'" in scored["issues"].iloc[40]


def test_history_and_feedback(page: Any, stack: Stack) -> None:
    http_json(f"{stack.api_url}/predict", EXAMPLE_CHURNER)  # at least one prediction
    open_page(page, stack, "history", "Prediction history")  # no key: no stored customer shown
    page.get_by_text(re.compile("READER_KEY")).first.wait_for()
    assert page.get_by_test_id("stMetric").filter(has_text="Matching predictions").count() == 0
    open_page(page, stack, "history", "Prediction history", key=WRITER_KEY)
    page.get_by_test_id("stMetric").filter(has_text="Matching predictions").wait_for()
    newest = http_json(f"{stack.api_url}/predictions?limit=1", headers=READER)["items"][0]
    page.get_by_role("button", name="Save feedback").click()
    page.get_by_text("Saved: prediction").wait_for()
    assert (
        http_json(f"{stack.api_url}/predictions/{newest['id']}", headers=READER)["actual"] == "yes"
    )
    no_traceback(page)
    screenshot(page, "history")


def test_monitoring_reads_live_metrics_drift_and_host(page: Any, stack: Stack) -> None:
    direct = http_json(f"{stack.api_url}/predict", EXAMPLE_CHURNER)
    http_json(
        f"{stack.api_url}/feedback",
        {"prediction_id": direct["prediction_id"], "actual": "yes"},
        headers=WRITER,
    )
    jobs = [  # one drift run over the predictions so far and one host sample (make drift / agent)
        subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", "ops.cli", "monitoring", *args], cwd=ROOT, env=stack.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for args in (["drift", "--no-notify"], ["agent", "--iterations", "1", "--interval", "0.1"])
    ]
    assert [job.wait(timeout=120) for job in jobs] == [0, 0]
    open_page(page, stack, "monitoring", "Monitoring", key=READER_KEY)
    page.get_by_test_id("stMetric").filter(has_text="Realized F1").wait_for()
    live = http_json(f"{stack.api_url}/metrics/live", headers=READER)
    realized, estimated = live["realized"], live["estimated"]
    assert realized["n"] >= 1 and estimated["n"] >= realized["n"]
    assert metric(page, "Realized F1 (from feedback)") == pct(realized["f1"]["value"])
    assert metric(page, "Estimated F1 (CBPE, before labels)") == pct(estimated["f1"]["value"])
    page.get_by_text(re.compile(rf"n = {realized['n']:,} labelled$")).wait_for()
    page.get_by_text(re.compile(rf"n = {estimated['n']:,} predictions$")).wait_for()
    drift = http_json(f"{stack.api_url}/monitoring/drift", headers=READER)
    page.get_by_test_id("stMetric").filter(has_text="CPU").wait_for()
    expected = {  # the page shows the API's verdict: a few e2e predictions are too few for one
        "not_enough_rows": re.compile(r"^Not enough rows for a verdict: \d+ recent rows"),
        "drift": re.compile(r"^Drift detected in \d+ feature"),
        "no_drift": re.compile(r"^No feature has drifted\.$"),
    }
    page.get_by_text(expected[drift["verdict"]]).wait_for()
    no_traceback(page)
    screenshot(page, "monitoring")


def test_retrain_runs_through_the_gate(page: Any, stack: Stack) -> None:
    open_page(page, stack, "retrain", "Retrain", key=API_KEY)
    page.get_by_role("button", name="Start retrain").click()
    page.get_by_text(re.compile(r"status \*?\*?(queued|running|succeeded)")).first.wait_for()
    page.get_by_role("heading", name="Gate decision").wait_for(timeout=240_000)
    no_traceback(page)
    job = re.search(r"Job (\S+)", page.get_by_text(re.compile(r"^Job \S+ — status")).inner_text())
    assert job
    status = http_json(f"{stack.api_url}/retrain/{job.group(1)}", headers=READER)
    assert status["status"] == "succeeded"
    verdict = "Promoted to champion" if status["result"]["promoted"] else "Not promoted"
    page.get_by_text(verdict).wait_for()
    champion = status["result"]["champion_score"]  # the stack has a champion before the retrain
    assert champion is not None
    metric_name = status["result"]["gate_metric"]
    page.get_by_test_id("stMetric").filter(has_text=f"Champion {metric_name}").filter(
        has_text=f"{champion:.4f}"
    ).wait_for()
    rows = status["result"]["compared_rows"]  # both scores on the same rows, neither model's
    page.get_by_test_id("stMetric").filter(has_text="Rows compared").filter(
        has_text=str(rows)
    ).wait_for()
    screenshot(page, "retrain")


def test_model_page_shows_champion_and_challenger(page: Any, stack: Stack) -> None:
    """Runs after the retrain test, so the registry holds a second version to compare."""
    open_page(page, stack, "model", "Model", key=READER_KEY)
    page.get_by_test_id("stMetric").filter(has_text="Champion version").wait_for()
    served = http_json(f"{stack.api_url}/model")
    assert metric(page, "Champion version") == served["version"]
    assert metric(page, "Inference path") == served["compiled"]
    no_traceback(page)
    page.get_by_role("tab", name="Versions").click()
    versions = page.get_by_test_id("stDataFrame").last
    versions.wait_for()
    champion_row = next(
        v
        for v in http_json(f"{stack.api_url}/model/versions", headers=READER)
        if "champion" in v["aliases"]
    )
    assert champion_row["gate"]["decision"] == "promoted" or champion_row["gate"]["promotion"]
    screenshot(page, "model")
    page.get_by_role("tab", name="Plots").click()
    page.get_by_test_id("stImage").first.wait_for()
    screenshot(page, "model-plots")


@pytest.mark.parametrize(("path", "ready_text"), [("docs", "/predict/batch"), ("redoc", "predict")])
def test_api_docs_render_with_the_network_off(
    page: Any, stack: Stack, path: str, ready_text: str
) -> None:
    """Swagger UI and ReDoc come from the API itself: with every request to another host
    blocked, the pages still render the operations (their scripts came from a CDN before). Only
    ReDoc's 'powered by' logo is an image from elsewhere, and missing it changes nothing."""
    blocked: list[tuple[str, str]] = []

    def only_loopback(route: Any) -> None:
        if route.request.url.startswith(("http://127.0.0.1", "http://localhost", "data:")):
            route.continue_()
        else:
            blocked.append((route.request.resource_type, route.request.url))
            route.abort()

    page.route("**/*", only_loopback)
    page.goto(f"{stack.api_url}/{path}")
    page.get_by_text(ready_text, exact=False).first.wait_for()
    assert "churnops API" in page.title()
    needed = [url for kind, url in blocked if kind != "image"]
    assert not needed, f"the docs page needs other hosts: {needed}"


def test_drift_computed_from_the_page(page: Any, stack: Stack) -> None:
    """An admin presses Compute drift now: the API runs the drift job on the recent predictions
    and the page shows the run it stored."""
    for _ in range(3):
        http_json(f"{stack.api_url}/predict", EXAMPLE_CHURNER)
    before = http_json(f"{stack.api_url}/monitoring/drift", headers=READER).get("run_id")
    open_page(page, stack, "monitoring", "Monitoring", key=API_KEY)
    page.get_by_role("button", name="Compute drift now").click()
    page.get_by_text(re.compile(r"^Drift computed on \d+ recent rows")).wait_for(timeout=120_000)
    stored = http_json(f"{stack.api_url}/monitoring/drift", headers=READER)
    assert stored["run_id"] != before
    page.get_by_text(re.compile(rf"^Computed {re.escape(str(stored['computed_at']))} ")).wait_for()
    no_traceback(page)


def test_links_absent_when_not_configured_and_api_docs_present(page: Any, stack: Stack) -> None:
    """The stack has no KIBANA_URL and no MLFLOW_PUBLIC_URL: no link to either; the API docs
    link points at the API the UI uses."""
    open_page(page, stack, "model", "Model", key=READER_KEY)
    page.get_by_test_id("stMetric").filter(has_text="Champion version").wait_for()
    assert page.get_by_role("link", name=re.compile("MLflow")).count() == 0
    docs = page.get_by_role("link", name="API docs")
    assert docs.get_attribute("href") == f"{stack.api_url}/docs"
    open_page(page, stack, "monitoring", "Monitoring", key=READER_KEY)
    page.get_by_test_id("stMetric").filter(has_text="CPU").wait_for()
    assert page.get_by_role("link", name=re.compile("Kibana")).count() == 0
    no_traceback(page)


@pytest.fixture()
def linked_ui(stack: Stack, tmp_path: Path) -> Iterator[Stack]:
    """A second UI on the same API, started as `make ui` starts it, with KIBANA_URL and
    MLFLOW_PUBLIC_URL set (nothing needs to answer there: the page only links to them)."""
    port = free_port()
    env = {**stack.env, "API_URL": stack.api_url, "UI_PORT": str(port),
           "KIBANA_URL": "http://kibana.example:5601/",
           "MLFLOW_PUBLIC_URL": "http://mlflow.example"}  # fmt: skip
    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        ui = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", "ops.cli", "serve", "ui"], cwd=ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            if ui.poll() is not None:
                pytest.fail(f"the UI exited:\n{log.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(1.0)
        yield Stack(stack.api_url, url, ui, log, stack.var_dir, env)
    finally:
        ui.terminate()
        ui.wait(timeout=30)


def test_links_to_mlflow_and_kibana_when_configured(page: Any, linked_ui: Stack) -> None:
    versions = http_json(f"{linked_ui.api_url}/model/versions", headers=READER)
    champion = next(v for v in versions if "champion" in v["aliases"])
    open_page(page, linked_ui, "model", "Model", key=READER_KEY)
    page.get_by_test_id("stMetric").filter(has_text="Champion version").wait_for()
    run = page.get_by_role("link", name="MLflow: champion run")
    assert run.get_attribute("href") == f"http://mlflow.example/#/runs/{champion['run_id']}"
    version = page.get_by_role("link", name="MLflow: champion model version")
    assert version.get_attribute("href") == (
        f"http://mlflow.example/#/models/churn-model/versions/{champion['version']}"
    )
    open_page(page, linked_ui, "monitoring", "Monitoring", key=READER_KEY)
    page.get_by_test_id("stMetric").filter(has_text="CPU").wait_for()
    view = "http://kibana.example:5601/app/dashboards#/view/churnops-"
    for name, key in (("model metrics", "model-metrics"), ("predictions", "predictions"),
                      ("drift", "drift"), ("host", "host")):  # fmt: skip
        link = page.get_by_role("link", name=f"Kibana: {name} dashboard")
        assert link.get_attribute("href") == f"{view}{key}"
    no_traceback(page)
    screenshot(page, "monitoring-links")
