# UI (issue 5): the Streamlit app alone, and `make run` = API + UI together (scripts/run.py trains
# first when the registry has no champion; with ES_URL set, the prediction shipper too; Ctrl-C stops
# them all, no orphan processes).

UI_PORT ?= 8501
UI_HOST ?= 127.0.0.1
API_PORT ?= 8000
API_WORKERS ?= 2

.PHONY: ui
ui: $(STAMP) ## Serve the Streamlit UI alone in the foreground (UI_PORT=8501) against API_URL
	exec $(RUN)/streamlit run ui/app.py --server.address $(UI_HOST) --server.port $(UI_PORT) \
	  --server.headless true --browser.gatherUsageStats false --client.toolbarMode minimal

.PHONY: run
run: $(STAMP) ## Install if needed, train if there is no champion, serve API + UI (+ shipper with ES_URL); Ctrl-C stops all
	exec $(PY) scripts/run.py --host $(UI_HOST) --api-port $(API_PORT) --ui-port $(UI_PORT) \
	  --train-args "$(TRAIN_ARGS)" \
	  --workers $(API_WORKERS)

.PHONY: test-ui
test-ui: $(STAMP) ## The UI tests: AppTest pages (tests/ui) and real-Chromium end-to-end (tests/e2e)
	$(RUN)/pytest -q tests/ui tests/e2e

.PHONY: screenshots
screenshots: $(STAMP) ## Refresh the README's UI screenshots (docs/img/ui-*.png) from a real e2e run
	SCREENSHOT_DIR=docs/img $(RUN)/pytest -q tests/e2e
