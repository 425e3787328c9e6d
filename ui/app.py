"""churnops UI entry point: ``streamlit run ui/app.py`` (``make ui``).

Kept light for a fast first paint: the pages (and pandas/altair) load only when they are shown, and
the sidebar's API status uses a short timeout. An unexpected error is logged and shown as a short
message — a user never sees a traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

# `streamlit run ui/app.py` puts only ui/ on sys.path; pages import the `ui` and `core` packages.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402  # pylint: disable=wrong-import-position
from streamlit.navigation.page import (  # noqa: E402  # pylint: disable=wrong-import-position
    StreamlitPage,
)

from core.logs import configure_logging  # noqa: E402  # pylint: disable=wrong-import-position
from core.settings import get_settings  # noqa: E402  # pylint: disable=wrong-import-position
from ui.components import (  # noqa: E402  # pylint: disable=wrong-import-position
    api_key_sidebar,
    api_state_banner,
    api_status_sidebar,
)
from ui.links import api_docs  # noqa: E402  # pylint: disable=wrong-import-position

# Not "pages/": a folder of that name next to the entry script switches Streamlit to its legacy
# multipage mode (MPA v1), which runs page files without this script around them.
PAGES_DIR = Path(__file__).resolve().parent / "views"
log = logging.getLogger("churnops.ui")


def build_navigation() -> StreamlitPage:
    """The six pages, grouped as the sidebar shows them."""
    page = st.Page
    return st.navigation(
        {
            "Score": [
                page(
                    PAGES_DIR / "predict.py",
                    title="Predict",
                    icon=":material/person_search:",
                    default=True,
                ),
                page(
                    PAGES_DIR / "batch.py",
                    title="Batch",
                    icon=":material/upload_file:",
                    url_path="batch",
                ),
                page(
                    PAGES_DIR / "history.py",
                    title="History",
                    icon=":material/history:",
                    url_path="history",
                ),
            ],
            "Operate": [
                page(
                    PAGES_DIR / "model.py",
                    title="Model",
                    icon=":material/model_training:",
                    url_path="model",
                ),
                page(
                    PAGES_DIR / "monitoring.py",
                    title="Monitoring",
                    icon=":material/monitoring:",
                    url_path="monitoring",
                ),
                page(
                    PAGES_DIR / "retrain.py",
                    title="Retrain",
                    icon=":material/autorenew:",
                    url_path="retrain",
                ),
            ],
        }
    )


@st.cache_resource
def logging_configured() -> bool:
    """Configure logging once per UI process (``LOG_JSON``: ECS JSON lines, ``LOGSTASH_HOST``)."""
    settings = get_settings()
    configure_logging(settings, service="churnops-ui")
    log.info("churnops UI started; API at %s", settings.api_url)
    return True


def main() -> None:
    """Configure the page, draw the sidebar and run the selected page."""
    logging_configured()
    st.set_page_config(page_title="churnops", page_icon=":material/trending_down:", layout="wide")
    st.set_option("client.showErrorDetails", "none")
    st.set_option("client.toolbarMode", "minimal")
    navigation = build_navigation()
    st.sidebar.caption("Telecom churn prediction")
    if api_status_sidebar() not in ("ready", "degraded"):
        api_state_banner()
    api_key_sidebar()
    st.sidebar.markdown(f"[API docs]({api_docs(get_settings())})")
    try:
        navigation.run()
    except Exception:  # pylint: disable=broad-exception-caught  # last resort: no traceback in UI
        log.exception("unexpected error on page %s", getattr(navigation, "title", "?"))
        st.error(
            "Unexpected error on this page. It has been logged; please retry or report it.",
            icon=":material/bug_report:",
        )
        st.button("Retry", key="retry_unexpected")


main()
