# The project's verbs. `make demo` and `make test` create .venv themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
MLFLOW_PORT ?= 5000
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_LOGGING_EXTRA_LOGGERS ?= lstm_pipeline

.PHONY: setup demo test test-fast lint format train forecast mlflow-ui clean check

setup: $(STAMP)

# torch goes in first, pinned: it is a CPU wheel on this machine's disk, while an open
# range asked for before torch exists would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(PY) -m flows.demo

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

check: lint test

train: setup
	$(VENV)/bin/lstm-pipeline train --source sample

forecast: setup
	$(VENV)/bin/lstm-pipeline forecast --source sample

mlflow-ui: setup
	mkdir -p mlflow
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port $(MLFLOW_PORT) \
		--backend-store-uri sqlite:///mlflow/mlflow.db

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info forecasts
