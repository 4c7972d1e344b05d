"""Batch inference with onnxruntime: no torch here, the ONNX file is the whole model."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd

from lstm_pipeline import drift
from lstm_pipeline.aside import cpu_threads
from lstm_pipeline.calendars import calendar_for, next_trading_days
from lstm_pipeline.data import FEATURES, latest_window, require_rows
from lstm_pipeline.errors import InputError, one_line
from lstm_pipeline.files import check_writable, write_atomic
from lstm_pipeline.model_metadata import (
    read_contract,
    read_hidden_size,
    read_input_profile,
    read_quantile_levels,
    shown,
)

log = logging.getLogger(__name__)

# the calibrated 80% and 95% intervals' bounds: forecast file column -> quantile level
BOUND_LEVELS = {"lower_95": 0.025, "lower_80": 0.1, "upper_80": 0.9, "upper_95": 0.975}
FORECAST_COLUMNS = (
    "ticker",
    "as_of",
    "horizon",
    "target_date",
    "forecast",  # the median
    *BOUND_LEVELS,  # prices; empty for a model without quantiles
    "last_close",
    "model_version",
    "run_id",
    "calendar",  # the exchange calendar the target dates come from
    "input_drift",  # the ticker's recent inputs against the training data's, see drift.py
)
QUANTILE_PREFIX = "quantile_"  # a .parquet file's columns of every level: quantile_0.025, ...


# Windows per session call. Small batches run faster per window: the LSTM keeps every step's
# gates for the whole call ([window, batch, 4 x hidden] floats), which at 1,000 windows of the
# default model (61 MB) spills out of the CPU caches, and at 32 (2 MB) does not; much smaller
# calls pay onnxruntime's per-call cost more often. A call holds about GATE_FLOATS (what 32
# windows of the default model hold, the size measured best for it: docs/results/benchmarks.md).
# Measured on one thread (2-core Xeon, 2026-12-05), windows/s by windows per call: window 60 x
# hidden 16: 45k at 32, 54k at 128; 30 x 32: 101k at 32, 124k at 128; the smoke model, 10 x 8:
# 211k at 32, 579k at 1,024 (`chunk_for`: 128, 128 and 1,024).
GATE_FLOATS = 2**19
CHUNK = 32  # for a model whose metadata lacks its hidden size (exported before it was written)
CHUNK_MAX = 2048


def chunk_for(window: int, hidden_size: int | None) -> int:
    """Windows per session call for a model of this window and LSTM hidden size."""
    if hidden_size is None:
        return CHUNK
    fits = GATE_FLOATS // (window * 4 * hidden_size)
    return min(CHUNK_MAX, max(CHUNK, 1 << max(fits.bit_length() - 1, 0)))


class OnnxForecaster:
    """One onnxruntime session over a model that maps raw windows [B, W, F] to prices [B, H].

    The session runs single-threaded; a batch is cut into calls of `chunk_for` windows that
    `threads` threads share (`InferenceSession.run` is thread-safe and releases the GIL). On 2
    cores that is 1.2x one call with 2 intra-op threads at batch 1,000
    (benchmarks/inference.py), and when other processes share the cores it degrades less (1.6x
    faster at batch 1 under load).
    """

    def __init__(
        self,
        model: str | Path | bytes,
        providers: list[str] | None = None,
        threads: int | None = None,
        name: str | None = None,
    ) -> None:
        """`name` says what the model is in errors (a registry URI); default: its file."""
        source = model if isinstance(model, bytes) else str(model)
        self.name = name or ("model bytes" if isinstance(model, bytes) else f"model file {model}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        # onnxruntime's own warnings and errors would reach stderr as extra lines beside ours;
        # what goes wrong is raised, and said in one line naming the model (fatal still logs)
        options.log_severity_level = 4
        try:
            self.session = ort.InferenceSession(
                source, options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise InputError(
                f"{self.name} is not a loadable ONNX model ({one_line(exc)})"
            ) from None
        self.threads = max(1, threads or cpu_threads())
        self._pool: ThreadPoolExecutor | None = None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.features, self.window, self.horizon = read_contract(self.metadata, self.name)
        # () for a point model, or an older one exported before intervals existed
        self.quantile_levels = read_quantile_levels(self.metadata, self.name)
        # None for a model exported before input drift was measured
        self.input_profile = read_input_profile(self.metadata, self.name)
        self.chunk = chunk_for(self.window, read_hidden_size(self.metadata, self.name))
        self._check_io(FEATURES)

    def _check_io(self, data_features: tuple[str, ...]) -> None:
        """InputError unless the model takes the features the data provides, in its order, and
        the graph takes `window` [batch, W, F] and gives `forecast` [batch, H] as its metadata
        says: a mismatch would only surface at the first forecast, as an onnxruntime error or
        as silently wrong prices, after the data was fetched."""
        if self.features != data_features:
            same_names = set(self.features) == set(data_features)
            order = " (the same names in another order)" if same_names else ""
            raise InputError(
                f"{self.name} takes features {shown(','.join(self.features), 200)}, but the "
                f"data provides {','.join(data_features)}{order}"
            )
        expected: dict[str, list[Dim]] = {
            "window": ["batch", self.window, len(self.features)],
            "forecast": ["batch", self.horizon],
        }
        if self.quantile_levels:
            expected["quantiles"] = ["batch", self.horizon, len(self.quantile_levels)]
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != ["window"]:
            raise InputError(
                f"{self.name} takes inputs {inputs}, but forecasts give it 'window' alone"
            )
        actual = {i.name: i for i in self.session.get_inputs()}
        actual.update({o.name: o for o in self.session.get_outputs()})
        for name, dims in expected.items():
            if name not in actual:
                raise InputError(
                    f"{self.name} has no '{name}' output, but its metadata calls for one "
                    f"of shape {_dims(dims)}"
                )
            if not shape_fits(actual[name].shape, dims):
                raise InputError(
                    f"{self.name}: '{name}' has shape {_dims(actual[name].shape)}, but its "
                    f"metadata calls for {_dims(dims)}"
                )
            if actual[name].type not in FLOAT_TENSORS:
                raise InputError(
                    f"{self.name}: '{name}' holds {actual[name].type}, not float prices"
                )

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Raw windows [B, W, F] float32 -> price forecasts [B, H] float32 (the median).

        A batch of 0 windows has 0 forecasts, [0, H], without a call: onnxruntime aborts the
        whole process (SIGABRT) on an empty batch. Input of another rank, window length,
        feature count or dtype is an InputError, never handed to onnxruntime.
        """
        return self._predict(windows, ["forecast"])[0]

    def predict_quantiles(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(forecasts [B, H], quantiles [B, H, Q] in the order of `quantile_levels`), prices;
        the quantiles are None for a model without them."""
        if not self.quantile_levels:
            return self.predict(windows), None
        forecast, quantiles = self._predict(windows, ["forecast", "quantiles"])
        return forecast, quantiles

    def _predict(self, windows: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        self._check_windows(windows)
        if len(windows) == 0:
            return [np.empty((0, *self._shape(name)[1:]), np.float32) for name in outputs]
        windows = np.ascontiguousarray(windows)
        size = self.chunk
        chunks = [windows[i : i + size] for i in range(0, len(windows), size)]

        def run(chunk: np.ndarray) -> list[np.ndarray]:
            return self._run(chunk, outputs)

        if len(chunks) == 1 or self.threads == 1:
            parts = [run(chunk) for chunk in chunks]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="onnx-forecast")
            parts = list(self._pool.map(run, chunks))
        return [np.concatenate([part[i] for part in parts]) for i in range(len(outputs))]

    def _shape(self, output: str, batch: int = 0) -> tuple[int, ...]:
        """The shape `output` has for `batch` windows, by the model's metadata."""
        if output == "quantiles":
            return (batch, self.horizon, len(self.quantile_levels))
        return (batch, self.horizon)

    def _check_windows(self, windows: np.ndarray) -> None:
        expected = (self.window, len(self.features))
        if not isinstance(windows, np.ndarray):
            raise InputError(f"windows must be a numpy array, not {type(windows).__name__}")
        if windows.ndim != 3 or windows.shape[1:] != expected:
            raise InputError(
                f"windows of shape {windows.shape} do not match the model's {expected}"
            )
        if windows.dtype != np.float32:
            raise InputError(f"windows must be float32, not {windows.dtype}")

    def _run(self, windows: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        try:
            results = self.session.run(outputs, {"window": windows})
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise InputError(f"{self.name} fails to run ({one_line(exc)})") from None
        checked = []
        for name, out in zip(outputs, results, strict=True):
            out = np.asarray(out)
            shape = self._shape(name, len(windows))
            if out.shape != shape:  # a graph whose output size is symbolic
                raise InputError(
                    f"{self.name} gives {name} of shape {list(out.shape)} for {len(windows)} "
                    f"windows, but its metadata calls for {_dims(['batch', *shape[1:]])}"
                )
            checked.append(out)
        return checked


FLOAT_TENSORS = ("tensor(float)", "tensor(double)")  # float32 by the contract; float64 reads too
Dim = int | str | None  # onnxruntime's view of one axis: a size, a symbolic name or unknown


def shape_fits(shape: list[Dim] | None, dims: list[Dim]) -> bool:
    """Whether a graph's shape can take `dims`: symbolic or unknown axes fit any size."""
    if shape is None or len(shape) != len(dims):
        return False
    return all(
        isinstance(want, str) or isinstance(have, str) or have in (want, None)
        for have, want in zip(shape, dims, strict=True)
    )


def _dims(shape: list[Dim] | None) -> str:
    return "none" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def rows_read(forecaster: OnnxForecaster) -> int:
    """The last rows of each ticker a forecast reads: one window, and at least the span input
    drift is measured over (a model's window may be shorter)."""
    return max(forecaster.window, drift.ROWS_NEEDED)


def forecast_table(
    forecaster: OnnxForecaster,
    prices_by_ticker: dict[str, pd.DataFrame],
    model_version: str,
    run_id: str,
    calendars: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per ticker and horizon from each ticker's latest window, in one batched call;
    target dates are trading days of each ticker's calendar (`calendars` overrides by ticker).
    FORECAST_COLUMNS (`input_drift` repeated on each of a ticker's rows), then a quantile
    model's every level (`quantile_0.025`, ...)."""
    for ticker, prices in prices_by_ticker.items():
        require_rows(prices, ticker, forecaster.window, "one input window")
    windows = np.stack([latest_window(p, forecaster.window) for p in prices_by_ticker.values()])
    forecasts, quantiles = forecaster.predict_quantiles(windows)  # [T, H], [T, H, Q] or None
    quantiles = usable_prices(forecaster, list(prices_by_ticker), forecasts, quantiles)
    bounds = interval_bounds(quantiles, forecaster.quantile_levels)  # [T, H, 4]
    drifts = input_drift(forecaster, prices_by_ticker)  # [T]
    rows = []
    for i, (ticker, prices) in enumerate(prices_by_ticker.items()):
        as_of = prices.index[-1]
        calendar = calendar_for(ticker, calendars or {})
        targets = next_trading_days(as_of, forecaster.horizon, calendar)
        last_close = float(prices["Close"].iloc[-1])
        for h, target in enumerate(targets):
            forecast = [float(forecasts[i, h]), *bounds[i, h].tolist()]  # median, bounds
            about = [last_close, model_version, run_id, calendar, drifts[i]]
            rows.append(
                [ticker, as_of, h + 1, target, *forecast, *about, *quantiles[i, h].tolist()]
            )
    # repr: the shortest exact spelling, so two levels never share a column name
    names = [f"{QUANTILE_PREFIX}{float(level)!r}" for level in forecaster.quantile_levels]
    return pd.DataFrame(rows, columns=[*FORECAST_COLUMNS, *names])


def input_drift(
    forecaster: OnnxForecaster, prices_by_ticker: Mapping[str, pd.DataFrame]
) -> list[float]:
    """Each ticker's drift score against the model's training profile (NaN for a model without
    one), and one warning line naming the tickers drifted above DRIFT_THRESHOLD."""
    profile = forecaster.input_profile
    if profile is None:
        return [math.nan] * len(prices_by_ticker)
    scores = drift.drift_scores(profile, prices_by_ticker)
    if warning := drift.drift_warning(scores, profile["days"]):
        log.warning("%s", warning)
    return [float(x) for x in scores]


def usable_prices(
    forecaster: OnnxForecaster,
    tickers: list[str],
    forecasts: np.ndarray,
    quantiles: np.ndarray | None,
) -> np.ndarray:
    """The quantiles [T, H, Q] once forecasts and quantiles are known to be usable prices, or
    [T, H, 0] with one warning for a model without quantiles (an older one)."""
    refuse_unusable(forecasts, tickers, forecaster.name)
    if quantiles is None:
        outputs = [o.name for o in forecaster.session.get_outputs()]
        lacks = "quantile_levels metadata" if "quantiles" in outputs else "quantiles output"
        log.warning(
            "%s has no %s: lower_95, lower_80, upper_80 and upper_95 are empty "
            "(retrain to get calibrated intervals)",
            forecaster.name,
            lacks,
        )
        return np.empty((*forecasts.shape, 0), np.float32)
    refuse_unusable(quantiles, tickers, forecaster.name, "quantile ")
    refuse_crossing(quantiles, tickers, forecaster.name)
    refuse_outside(forecasts, quantiles, forecaster.quantile_levels, tickers, forecaster.name)
    return quantiles


def interval_bounds(quantiles: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """The bounds' prices [T, H, 4] in BOUND_LEVELS' order from quantiles [T, H, Q] at `levels`;
    NaN where there are no levels (a model without quantiles)."""
    if not levels:
        return np.full((*quantiles.shape[:2], len(BOUND_LEVELS)), np.nan)
    at = [int(np.argmin(np.abs(np.array(levels) - t))) for t in BOUND_LEVELS.values()]
    return quantiles[:, :, at].astype(np.float64)


def refuse_unusable(values: np.ndarray, tickers: list[str], model: str, what: str = "") -> None:
    """InputError naming the model and the first ticker whose forecasts (values[ticker], of
    any shape) hold one that is not a finite positive price: a broken model's NaN, inf or
    negative prices are never written."""
    per_ticker = values.reshape(len(tickers), -1)  # [T, H] or [T, H * Q]
    usable = np.isfinite(per_ticker) & (per_ticker > 0)
    if not usable.all():
        ticker = int(np.flatnonzero(~usable.all(axis=1))[0])
        bad = per_ticker[ticker][~usable[ticker]][0]
        raise InputError(
            f"{model} forecasts {what}{bad} for {tickers[ticker]}: not a price; nothing was written"
        )


def refuse_crossing(quantiles: np.ndarray, tickers: list[str], model: str) -> None:
    """InputError naming the model and the first ticker whose quantiles [T, H, Q] decrease
    along the levels: such bounds are no interval."""
    crossing = (np.diff(quantiles, axis=2) < 0).any(axis=(1, 2))  # [T]
    if crossing.any():
        ticker = tickers[int(np.flatnonzero(crossing)[0])]
        raise InputError(
            f"{model} forecasts quantiles for {ticker} that decrease with their level; nothing "
            "was written"
        )


def refuse_outside(
    forecasts: np.ndarray,
    quantiles: np.ndarray,
    levels: tuple[float, ...],
    tickers: list[str],
    model: str,
) -> None:
    """InputError naming the model and the first ticker whose forecast [T, H] lies outside its
    own 80% interval: the forecast is the median, so such a file would be no distribution."""
    lower, upper = (interval_bounds(quantiles, levels)[..., i] for i in (1, 2))
    outside = ((forecasts < lower) | (forecasts > upper)).any(axis=1)  # [T]
    if outside.any():
        ticker = tickers[int(np.flatnonzero(outside)[0])]
        raise InputError(
            f"{model} forecasts a price for {ticker} outside its own 80% interval (the "
            "forecast is the median); nothing was written"
        )


def check_output(path: str | Path) -> str:
    """The forecast file's format, `.csv` or `.parquet`; InputError for any other name, or for
    a place the file cannot be written."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InputError(f"output {path}: use a .csv or .parquet file name")
    check_writable(path, "output")
    return suffix


def write_forecasts(table: pd.DataFrame, path: str | Path) -> Path:
    """Write CSV or Parquet (by extension) atomically: a crash leaves any previous file intact."""
    path = Path(path)
    if check_output(path) == ".csv":  # the file's own columns: every quantile is parquet's
        table = table.drop(columns=[c for c in table.columns if c.startswith(QUANTILE_PREFIX)])
        write_atomic(path, lambda tmp: table.to_csv(tmp, index=False, date_format="%Y-%m-%d"))
    else:
        write_atomic(path, lambda tmp: table.to_parquet(tmp, index=False))
    return path
