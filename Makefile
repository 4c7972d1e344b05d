# The project's verbs. `make demo` and `make test` create .venv themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
MLFLOW_PORT ?= 5000
SERVE_PORT  ?= 5001
PREFECT_PORT ?= 4200
TEST_WORKERS ?= 2
# the registry `serve-model` reads: $MLFLOW_TRACKING_URI, else the local store. The store and
# the model name written below are lstm_pipeline/config.py's DEFAULT_TRACKING_URI and MODEL_NAME.
TRACKING_URI ?= $(or $(MLFLOW_TRACKING_URI),sqlite:///mlflow/mlflow.db)
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_LOGGING_EXTRA_LOGGERS ?= lstm_pipeline

.PHONY: setup demo test test-fast lint format golden bench bench-inference bench-e2e bench-scale train forecast mlflow-ui mlflow-server serve-model \
	prefect-server serve clean check docs

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

# the docs site first (seconds: a broken link or a page missing from the nav fails), then the
# whole suite on $(TEST_WORKERS) workers (pytest-xdist), a module at a time, in conftest's order
test: setup docs
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# The fast layers: tests/unit and tests/model, no servers and no subprocesses; under a minute.
test-fast: setup
	$(PY) -m pytest -q tests/unit tests/model

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Rebuild tests/golden (the model as shipped); only for a change of meaning, shown in the diff.
golden: setup
	$(PY) -m tests.golden.make_golden

check: lint test

# The documentation site (docs/, mkdocs.yml) into site/; --strict fails on any broken link.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# Speed and accuracy benchmarks: JSON in benchmarks/results/ (with the machine and its load),
# tables in docs/results/. Timings are only comparable on a quiet machine.
bench: setup bench-inference bench-e2e bench-scale bench-live
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/train_sample.py
	$(PY) benchmarks/backtest_sample.py

bench-inference: setup
	$(PY) benchmarks/inference.py

# the demo's training and forecast flows against a real Prefect server, split by stage
bench-e2e: setup
	$(PY) benchmarks/e2e.py

# forecast time and memory for 10-1,000 tickers, training throughput for 6-384 tickers
bench-scale: setup
	$(PY) benchmarks/scale.py

# a score run (read from a SQLite store, live scores, degradation, scores written) over 500
# tickers x 250 days x 5 horizons (625k forecast rows)
.PHONY: bench-live
bench-live: setup
	$(PY) benchmarks/live_scoring.py

# the CLI's training and forecast flows on 50, 500 and 5,000 synthetic tickers x 10 years, with
# and without a Prefect server (about 20 minutes; not part of `make bench`). UNIVERSE_ARGS adds
# options, e.g. --data-root DIR (keep the csv folders), --default-model (+10 min or more)
.PHONY: bench-universe
bench-universe: setup
	$(PY) benchmarks/universe.py $(UNIVERSE_ARGS)

# ours beside Darts and NeuralForecast on the sample (same split and shapes): windows/s and
# test MASE. The peers live in benchmarks/.peers-venv, which the script creates on first use.
.PHONY: bench-peers
bench-peers: setup
	$(PY) benchmarks/peers.py

# The README's Monitoring screenshots (docs/monitoring-*.png) from a real run: real MLflow and
# Prefect servers, the CLI day by day (train, then append a bar, forecast, score; a regime break
# part-way), then headless Chromium on both UIs. The browser is Debian's (apt-get install
# chromium), driven by playwright from its own venv: a tool, not a project dependency.
SHOTS_VENV := .shots-venv
.PHONY: screenshots
screenshots: setup
	test -x $(SHOTS_VENV)/bin/python || $(PYTHON) -m venv $(SHOTS_VENV)
	$(SHOTS_VENV)/bin/python -c 'import playwright' 2>/dev/null \
		|| $(SHOTS_VENV)/bin/pip install -q --disable-pip-version-check playwright
	test -x /usr/bin/chromium || { echo 'screenshots: needs /usr/bin/chromium (apt-get install chromium)'; exit 1; }
	OMP_NUM_THREADS=1 $(PY) docs/screenshots.py --browser-python $(SHOTS_VENV)/bin/python

# On the bundled sample, offline; without --source the CLI reads live prices from yfinance.
train: setup
	$(VENV)/bin/lstm-pipeline train --source sample

forecast: setup
	$(VENV)/bin/lstm-pipeline forecast --source sample

mlflow-ui: setup
	mkdir -p mlflow
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port $(MLFLOW_PORT) \
		--backend-store-uri sqlite:///mlflow/mlflow.db

# A tracking server over the local store, loopback only: point every command at it with
# --tracking-uri http://127.0.0.1:$(MLFLOW_PORT). Artifacts stay plain files in mlflow/artifacts,
# so runs logged through the server and straight to the sqlite file share one store.
mlflow-server: setup
	mkdir -p mlflow/artifacts
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow server \
		--host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1 \
		--backend-store-uri sqlite:///mlflow/mlflow.db \
		--default-artifact-root mlflow/artifacts --no-serve-artifacts

# Online forecasts from the registry's champion: POST raw windows to /invocations.
# The venv's bin goes first on PATH: mlflow starts its uvicorn from there.
serve-model: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" MLFLOW_TRACKING_URI=$(TRACKING_URI) \
		$(VENV)/bin/mlflow models serve -m models:/lstm-forecaster@champion \
		--env-manager local --host 127.0.0.1 --port $(SERVE_PORT)

# The Prefect server and UI (http://127.0.0.1:$(PREFECT_PORT)) that schedules need: the
# temporary server a plain flow run starts accepts deployments but never runs them. The UI
# calls the API on the same port (else on 4200, or on whatever $$PREFECT_API_URL says).
prefect-server: setup
	PREFECT_UI_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api \
		$(VENV)/bin/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

# Weekly retraining and weekday forecasts on the sample data, served until Ctrl-C.
serve: setup
	PREFECT_API_URL=$(or $(PREFECT_API_URL),http://127.0.0.1:$(PREFECT_PORT)/api) \
		$(VENV)/bin/lstm-pipeline serve --source sample

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info forecasts site
