"""Model page: champion vs challenger, curves, plots, versions, promote/rollback, API down."""

from __future__ import annotations

from core.settings import get_settings
from tests.ui.conftest import assert_clean, link_buttons, metric, texts


def test_champion_and_challenger_side_by_side(open_page, fake_api):
    at = open_page("model")
    assert_clean(at)
    assert metric(at, "Champion version") == "2"
    assert metric(at, "Inference path") == "numpy"
    table = at.dataframe[0].value
    assert list(table.columns) == ["champion v2", "challenger v3", "Δ (challenger − champion)"]
    assert table.loc["f1", "champion v2"] == 0.83 and table.loc["f1", "challenger v3"] == 0.79
    assert round(table.loc["f1", "Δ (challenger − champion)"], 4) == -0.04
    assert "rejected — f1 0.7900 does not beat champion v2" in texts(at)
    assert {c[1][0] for c in fake_api.calls if c[0] == "model_curve"} == {"2", "3"}
    assert len(at.get("image")) == 2  # both plots of the champion run
    assert len(at.get("vega_lite_chart")) == 1  # the training curves
    versions = at.dataframe[1].value
    assert versions["version"].tolist() == ["3", "2", "1"]
    assert versions["decision"].tolist() == ["rejected by the gate", "promoted by the gate", "—"]


def test_a_version_promoted_by_hand_says_so(open_page, fake_api, monkeypatch):
    """The gate's record and the manual promotion are both shown (the API keeps both)."""
    original = fake_api.model_versions

    def by_hand() -> list[dict]:
        versions = original()
        versions[0]["gate"]["promotion"] = {"forced": "true", "reason": "ops"}
        return versions

    monkeypatch.setattr(fake_api, "model_versions", by_hand)
    at = open_page("model")
    assert_clean(at)
    decisions = at.dataframe[1].value["decision"].tolist()
    assert decisions[0] == "rejected by the gate; promoted by hand"


def test_promote_needs_the_admin_key_and_says_so(open_page, fake_api):
    at = open_page("model", key=None)  # the registry needs a reader key: no actions offered
    assert "READER_KEY" in at.warning[0].value
    assert not [b for b in at.button if b.key == "model_promote"]

    at.sidebar.text_input(key="api_key").set_value("reader-key").run()  # a lower role: 403
    at.button(key="model_promote").click().run()
    assert_clean(at)
    assert "this key may not do this" in texts(at) and "API_KEY" in at.warning[-1].value

    at.sidebar.text_input(key="api_key").set_value("wrong").run()  # no role: 401
    assert "check the API key" in texts(at)
    assert fake_api.keys_seen[-1] == "wrong"

    at.sidebar.text_input(key="api_key").set_value("good-key").run()
    at.button(key="model_promote").click().run()
    assert_clean(at)
    assert fake_api.called("promote")[-1] == ("3", "good-key")
    assert "Version 3 is now the champion." in at.success[0].value


def test_rollback(open_page, fake_api):
    at = open_page("model", key="good-key")
    at.button(key="model_rollback").click().run()
    assert_clean(at)
    assert fake_api.called("rollback") == [("good-key",)]
    assert "champion is now v1" in at.success[0].value


def test_api_down(open_page, down_api):
    at = open_page("model")
    assert_clean(at)
    assert f"`{down_api.base_url}/model`" in at.main.error[0].value
    assert at.button(key="retry_read_the_served_model") is not None


def test_mlflow_links_to_the_champion_run_and_version_when_configured(
    open_page, fake_api, monkeypatch
):
    monkeypatch.setenv("MLFLOW_PUBLIC_URL", "http://mlflow.example:5000/")
    get_settings.cache_clear()
    at = open_page("model")
    assert_clean(at)
    links = link_buttons(at)
    mlflow = "http://mlflow.example:5000/#"
    assert links == {
        "MLflow: champion run": f"{mlflow}/runs/run2",
        "MLflow: champion model version": f"{mlflow}/models/churn-model/versions/2",
    }
    versions = at.dataframe[1].value
    assert (
        versions.set_index("version").loc["3", "mlflow"] == "http://mlflow.example:5000/#/runs/run3"
    )


def test_no_mlflow_link_without_its_url(open_page, fake_api):
    at = open_page("model")
    assert_clean(at)
    assert not at.get("link_button")
    assert "mlflow" not in at.dataframe[1].value.columns
