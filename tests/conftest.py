"""Shared fixtures. No network: yfinance is patched where used; Prefect and MLflow run locally."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

# Before prefect or mlflow are imported by any test module: keep their state out of $HOME.
# One folder per test process (each xdist worker has its own), removed when the process ends.
_STATE = Path(tempfile.mkdtemp(prefix="lstm-pipeline-tests-"))
atexit.register(shutil.rmtree, _STATE, ignore_errors=True)
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("LSTM_PIPELINE_DASK_ADDRESS", None)  # flows default to threads in tests
os.environ["LSTM_PIPELINE_TEST_STATE"] = str(_STATE)
os.environ["LSTM_PIPELINE_CACHE"] = str(_STATE / "price-cache")  # never the repo's data/cache
# One torch (OpenMP) thread per process, this one and the CLIs it starts: the models here are
# tiny, and with two test workers on two shared cores a second thread mostly spin-waits for a
# core (the unit layer took 50 s and 53 s of CPU with two threads, 32 s and 23 s with one).
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lstm_pipeline.config import (  # noqa: E402
    DEFAULT_QUANTILES,
    DataConfig,
    PipelineConfig,
    build_config,
)
from tests.fake_yahoo import FakeYahoo  # noqa: E402
from tests.synthetic import make_prices  # noqa: E402, F401 (tests import it from here)


def make_learnable_prices(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Like make_prices, but a strong 25-day cycle under little noise: a tiny LSTM learns it
    in seconds and beats the naive forecast by far (validation MASE ~0.25), every time."""
    frame = make_prices(n, seed)
    rng = np.random.default_rng(100 + seed)
    t = np.arange(n)
    close = np.exp(np.log(50 + 10 * seed) + 0.08 * np.sin(t / 4 + seed) + rng.normal(0, 0.003, n))
    frame["Open"] = close * np.exp(rng.normal(0, 0.002, n))
    frame["High"] = np.maximum(frame["Open"], close) * 1.003
    frame["Low"] = np.minimum(frame["Open"], close) * 0.997
    frame["Close"], frame["Adj Close"] = close, close
    return frame


# Trains to a validation MASE far below 1 on make_learnable_prices (about 0.25).
LEARNABLE_CONFIG = """\
features: {window: 10, horizon: 3}
model: {hidden_size: 8, num_layers: 1, dropout: 0.0}
train: {max_epochs: 10, batch_size: 64, lr: 0.03, patience: 3}
"""


def write_price_csvs(folder: Path, make: Callable[..., pd.DataFrame]) -> Path:
    """AAA.csv and BBB.csv in `folder`, from `make(seed=0)` and `make(seed=1)`."""
    folder.mkdir()
    for seed, ticker in enumerate(("AAA", "BBB")):
        make(seed=seed).to_csv(folder / f"{ticker}.csv", index=False)
    return folder


@pytest.fixture
def learnable_csv_dir(tmp_path: Path) -> Path:
    """TICKER.csv files for AAA and BBB with a pattern worth learning."""
    return write_price_csvs(tmp_path / "learnable", make_learnable_prices)


@pytest.fixture
def csv_dir(tmp_path: Path) -> Path:
    """A directory of TICKER.csv files for two synthetic tickers."""
    return write_price_csvs(tmp_path / "prices", make_prices)


@pytest.fixture
def yf_cfg(tmp_path: Path) -> DataConfig:
    """The yfinance source for AAPL, its cache in tmp_path, retries that never sleep."""
    return DataConfig(
        tickers=("AAPL",),
        source="yfinance",
        cache_dir=str(tmp_path / "cache"),
        retry_attempts=4,
        retry_base_delay=0.0,
    )


@pytest.fixture
def fake_yahoo(monkeypatch: pytest.MonkeyPatch) -> FakeYahoo:
    """yfinance.download replaced by a FakeYahoo serving no ticker yet (fill its `history`)."""
    import yfinance

    fake = FakeYahoo({})
    monkeypatch.setattr(yfinance, "download", fake.download)
    return fake


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/mlflow/mlflow.db"


@pytest.fixture(scope="session")
def empty_store_file(tmp_path_factory) -> Path:
    """An MLflow sqlite store with its tables made: making them costs seconds, a copy nothing."""
    from lstm_pipeline.tracking import Store

    path = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    Store.open(f"sqlite:///{path}").client.search_experiments()
    return path


@pytest.fixture
def store(tracking_uri: str, empty_store_file: Path):
    """A throwaway sqlite tracking store at `tracking_uri`, its tables made."""
    from lstm_pipeline.tracking import Store

    store = Store.open(tracking_uri)
    assert store.sqlite_file is not None
    store.sqlite_file.parent.mkdir(parents=True)
    shutil.copyfile(empty_store_file, store.sqlite_file)
    return store


@pytest.fixture
def tiny_cfg(csv_dir: Path, tracking_uri: str) -> PipelineConfig:
    """Seconds-long training on the synthetic csv tickers, tracked in a temporary store."""
    return build_config(
        data__tickers=("AAA", "BBB"),
        data__source="csv",
        data__data_dir=str(csv_dir),
        features__window=10,
        features__horizon=3,
        model__hidden_size=8,
        model__num_layers=1,
        model__dropout=0.0,
        train__max_epochs=3,
        train__batch_size=64,
        train__patience=2,
        tracking__tracking_uri=tracking_uri,
    )


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[str]:
    """Prefect's test harness for the session: a Prefect server process on a temporary database;
    flows in this process run on it. Yields its API URL (CLI processes can use it too)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


def export_tiny_model(
    path: Path,
    window: int = 10,
    horizon: int = 3,
    seed: int = 0,
    quantiles: tuple[float, ...] = (),
) -> np.ndarray:
    """Export an untrained tiny price model to `path` (a point model unless `quantiles` are
    given); returns 40 real raw windows [40, W, F]."""
    import torch

    from lstm_pipeline.data import FEATURES
    from lstm_pipeline.export import export_onnx
    from lstm_pipeline.model import LSTMForecaster

    torch.manual_seed(seed)
    frame = make_prices(window + 50).set_index("Date")[list(FEATURES)]
    series = torch.tensor(frame.to_numpy(np.float32))
    sample = series.unfold(0, window, 1).transpose(1, 2)[:40]  # [40, W, F]
    net = LSTMForecaster(
        len(FEATURES),
        horizon=horizon,
        hidden_size=8,
        num_layers=1,
        dropout=0.0,
        quantiles=quantiles,
    )
    export_onnx(net, sample, path, {"run_id": "tiny", "data_cutoff": "2020-03-24"})
    return sample.numpy()


def alter_metadata(source: Path, target: Path, changes: dict[str, str | None]) -> Path:
    """A copy of the ONNX file `source` at `target` with its metadata changed as a broken or
    foreign exporter would have written it: each key set to its value, or removed for None."""
    import onnx

    model = onnx.load_model(str(source))
    props = {p.key: p.value for p in model.metadata_props} | changes
    onnx.helper.set_model_props(model, {k: v for k, v in props.items() if v is not None})
    onnx.save_model(model, str(target))
    return target


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A tiny exported price model (window 10, horizon 3) and a batch-2 input example."""
    path = tmp_path_factory.mktemp("tiny") / "model.onnx"
    return path, export_tiny_model(path)[:2]


@pytest.fixture(scope="session")
def tiny_quantile_onnx(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """Like `tiny_onnx`, but a quantile model: outputs `forecast` and `quantiles` [B, 3, 9] at
    the default levels (metadata `quantile_levels`)."""
    path = tmp_path_factory.mktemp("tiny-quantile") / "model.onnx"
    return path, export_tiny_model(path, quantiles=DEFAULT_QUANTILES)[:2]


def cli_command(args: tuple[str, ...], prelude: str = "") -> list[str]:
    """`lstm-pipeline ARGS` as a fresh interpreter's command line (optionally after `prelude`)."""
    code = f"import sys\n{prelude}\nfrom flows.cli import main\nsys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, *args]


@pytest.fixture(autouse=True)
def forecast_history(tmp_path_factory, monkeypatch) -> str:
    """Each test's forecasts go to a history of its own, not the repository's
    forecasts/forecasts.db that every xdist worker would share (the CLI processes a test starts
    inherit it too); a test of the default location removes the variable."""
    from lstm_pipeline.config import FORECAST_STORE_ENV

    url = f"sqlite:///{tmp_path_factory.mktemp('history')}/forecasts.db"
    monkeypatch.setenv(FORECAST_STORE_ENV, url)
    return url


# Variables every CLI process of the current test gets on top of this environment; the
# integration fixture `clis_on_prefect_server` puts the harness's Prefect API URL here.
CLI_ENV: dict[str, str] = {}


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment for a CLI process, minus the tracking URI that in-process tests leave in
    it (mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI), plus CLI_ENV and `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**env, "PYTHONPATH": str(ROOT), **CLI_ENV, **(extra or {})}


def run_cli(
    *args: str, cwd: Path, prelude: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`lstm-pipeline ARGS` in a fresh interpreter, run to its end; `env` adds variables."""
    return subprocess.run(
        cli_command(args, prelude),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=cli_env(env),
    )


def start_cli(
    *args: str, cwd: Path, prelude: str = "", env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`lstm-pipeline ARGS` started in a fresh interpreter and its own process group (so the
    temporary Prefect server it starts can be stopped with it), stdout and stderr piped."""
    return subprocess.Popen(
        cli_command(args, prelude),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(env),
        start_new_session=True,
    )


# Parallel runs (`make test`: pytest-xdist, --dist loadscope --no-loadscope-reorder) hand whole
# modules to the workers in this order, so the long integration modules start first and the short
# unit modules fill the gaps at the end. A module stays on one worker: its module fixtures (one
# bad-inputs batch, one Dask cluster) are built once. Integration modules by their time on a
# 2-core machine, longest first; unlisted ones after them.
LONGEST_FIRST = (
    "test_schedules.py",  # mostly waits for the cron minute: overlaps well with the others
    "test_monitoring_e2e.py",  # ~45 CLI runs day by day, two trainings: the longest module
    "test_faults.py",
    "test_scoring.py",  # about 25 CLI runs (forecast and score, day by day): ~5 min on 2 busy cores
    "test_mlflow_server.py",
    "test_security.py",
    "test_cli.py",
    "test_benchmarks.py",
    "test_bad_inputs.py",
    "test_csv_fuzz_cli.py",  # 40 generated csv folders through the CLI, about 60 s
    "test_flows_e2e.py",
    "test_alerts.py",  # a prefect server, a served deployment, an automation firing: ~50 s
    "test_leftover_processes.py",
    "test_progress.py",
    "test_dask.py",
    "test_run_record.py",
    "test_model_consumers.py",
)
LAYERS = ("integration", "model", "unit")  # folders of tests/, in the order they start
TESTS = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> tuple[int, int]:
        path = Path(item.path)
        layer = path.parts[len(TESTS.parts)] if path.is_relative_to(TESTS) else ""
        layer_rank = LAYERS.index(layer) if layer in LAYERS else len(LAYERS)
        module_rank = LONGEST_FIRST.index(path.name) if path.name in LONGEST_FIRST else 99
        return layer_rank, module_rank if layer == "integration" else 0

    items.sort(key=rank)  # stable: each module keeps its own order
