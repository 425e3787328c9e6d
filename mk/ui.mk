# UI: the Streamlit app alone, and `make run` = API + UI together (ops/launcher.py: stores prepared
# once, a first champion trained when the registry has none, the prediction shipper with ES_URL;
# Ctrl-C stops them all, no orphan processes). Ports and hosts: API_PORT, UI_PORT, API_HOST,
# UI_HOST, API_WORKERS (see the README's configuration table).

.PHONY: ui
ui: $(STAMP) ## Serve the Streamlit UI alone in the foreground (UI_PORT=8501) against API_URL
	exec $(CLI) serve ui

.PHONY: run
run: $(STAMP) ## Install if needed, train if there is no champion, serve API + UI (+ shipper with ES_URL); Ctrl-C stops all
	exec $(CLI) run

.PHONY: test-ui
test-ui: $(DEV_STAMP) ## The UI tests: AppTest pages (tests/ui) and real-Chromium end-to-end (tests/e2e)
	$(RUN)/pytest -q tests/ui tests/e2e

.PHONY: screenshots
screenshots: $(DEV_STAMP) ## Refresh the README's UI screenshots (docs/img/ui-*.png) from a real e2e run
	SCREENSHOT_DIR=docs/img $(RUN)/pytest -q tests/e2e
