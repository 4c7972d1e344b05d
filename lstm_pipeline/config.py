"""Pipeline configuration: frozen pydantic models with defaults in code, optional YAML overrides."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lstm_pipeline.errors import InputError, one_line

Source = Literal["yfinance", "sample", "csv"]
Device = Literal["auto", "cpu", "cuda", "mps"]
Cell = Literal["lstm", "gru"]
Loss = Literal["mse", "huber", "mae"]  # a point model's loss; quantile models train on pinball
Precision = Literal["auto", "fp32", "bf16"]
# what started a training run; "degradation": the Prefect automation on a degraded model
Trigger = Literal["manual", "schedule", "backtest", "tune", "degradation"]
Interval = Literal["1d", "1h", "1wk"]

CACHE_ENV = "LSTM_PIPELINE_CACHE"
OPTUNA_STORAGE_ENV = "LSTM_PIPELINE_OPTUNA_STORAGE"  # tune's storage URL, kept out of parameters
DEFAULT_CACHE_DIR = "data/cache"

SAMPLE_TICKERS = ("AAPL", "AMZN", "GOOG", "MSFT", "NVDA", "SPY")
# Live prices unless asked otherwise: `lstm-pipeline train --tickers TSLA` means Yahoo's TSLA,
# and a scheduled job forecasts today's market. The offline demo, the Makefile's train and
# forecast and the docs' examples say `sample` (prices bundled in the package) explicitly.
DEFAULT_SOURCE: Source = "yfinance"
MODEL_NAME = "lstm-forecaster"  # the MLflow experiment and registered model, unless configured
DEFAULT_TRACKING_URI = "sqlite:///mlflow/mlflow.db"  # relative to the working directory
CHAMPION, CHALLENGER = "champion", "challenger"  # registry aliases: the model in use, a runner-up


def champion_uri(model_name: str) -> str:
    """The registry URI of `model_name`'s champion: what a forecast uses unless told otherwise."""
    return f"models:/{model_name}@{CHAMPION}"


DEFAULT_MODEL_URI = champion_uri(MODEL_NAME)
DEFAULT_FORECAST_OUTPUT = "forecasts/forecasts.csv"  # relative to the working directory
# every forecast run's rows, kept (history.py): any SQLAlchemy URL, e.g. postgresql://... for a team
DEFAULT_FORECAST_STORE = "sqlite:///forecasts/forecasts.db"  # relative to the working directory
FORECAST_STORE_ENV = "LSTM_PIPELINE_FORECAST_STORE"


def _path_text(text: str) -> str:
    """A folder name the OS could take: no NUL byte, no name over 255 bytes (else the first
    look at it raises ValueError or ENAMETOOLONG, not bad input)."""
    if "\0" in text:
        raise ValueError("a path cannot hold a NUL character")
    if any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in text.split("/")):
        raise ValueError("a path cannot hold a name longer than 255 bytes")
    return text


Folder = Annotated[str, AfterValidator(_path_text)]


# Upper bounds of the whole numbers a config may hold: each far above any sensible value, so
# that a typo such as 99999999999999999999999 is bad input at once, not an overflow deep in
# numpy or torch, a hang, or a number Prefect's database cannot store (int64) after the run.
DAYS_MAX = 36_600  # a century of calendar days
COUNT_MAX = 1_000_000  # epochs, bars, tickers
SECONDS_MAX = 86_400.0  # a day: a retry delay beyond it is a typo


class _Frozen(BaseModel):
    # no inf or nan in any float: `.inf` for lr or a delay is bad input, not a crash mid-run
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class DataConfig(_Frozen):
    tickers: tuple[str, ...] = SAMPLE_TICKERS  # upper-cased and checked before any path or request
    source: Source = DEFAULT_SOURCE
    data_dir: Folder | None = None  # directory of TICKER.csv files, for source "csv"
    cache_dir: Folder | None = None  # parquet price cache; None: $CACHE_ENV, DEFAULT_CACHE_DIR
    yfinance_cache_dir: Folder | None = None  # yfinance's tz/cookie caches; None: CACHE/yfinance
    interval: Interval = "1d"  # bar size fetched and cached; the model and forecast dates use 1d
    start: date | None = None  # first date used (inclusive); None = all the source has
    end: date | None = None  # last date used (inclusive); None = up to the latest finished bar
    overlap_days: int = Field(
        7, ge=0, le=DAYS_MAX
    )  # calendar days re-downloaded before the last cached bar
    min_tickers: int = Field(
        1, ge=1, le=COUNT_MAX
    )  # training refuses to start with fewer usable tickers
    # a flow fails when a larger share of its tickers failed; up to it, it warns and goes on
    max_failure_ratio: float = Field(0.5, ge=0, le=1)
    max_gap_days: int = Field(10, ge=1, le=DAYS_MAX)  # calendar days between bars before a warning
    zero_volume_bars: int = Field(
        3, ge=1, le=COUNT_MAX
    )  # consecutive zero-volume bars before a warning
    retry_attempts: int = Field(5, ge=1, le=100)  # yfinance calls per fetch, the first one included
    retry_base_delay: float = Field(
        2.0, ge=0, le=SECONDS_MAX
    )  # seconds before the first retry, doubled each time
    retry_max_delay: float = Field(60.0, ge=0, le=SECONDS_MAX)  # seconds, cap on one backoff delay
    retry_max_total: float = Field(
        300.0, ge=0, le=SECONDS_MAX
    )  # seconds, cap on the whole retry sequence
    # exchange calendar per ticker for forecast dates ({VOD: XLON}); else by suffix (calendars.py)
    calendars: dict[str, str] = Field(default_factory=dict)

    @field_validator("tickers")
    @classmethod
    def _symbols(cls, tickers: tuple[str, ...]) -> tuple[str, ...]:
        from lstm_pipeline.validate import validate_ticker  # imports pandas: not at --help

        # validate_ticker raises InputError, a ValueError: pydantic reports it for the field
        return tuple(dict.fromkeys(validate_ticker(t) for t in tickers))  # dedupe, keep order

    @field_validator("calendars")
    @classmethod
    def _known_calendars(cls, calendars: dict[str, str]) -> dict[str, str]:
        if not calendars:
            return {}
        from lstm_pipeline.calendars import check_calendars  # exchange_calendars: not at --help

        return check_calendars(calendars)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if not self.tickers:
            raise ValueError("at least one ticker is needed")
        if self.source == "csv" and not self.data_dir:
            raise ValueError("source 'csv' needs data_dir (a directory of TICKER.csv files)")
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self

    def cache_root(self) -> Path:
        """The price cache folder: cache_dir, else $CACHE_ENV, else DEFAULT_CACHE_DIR."""
        return Path(self.cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)

    def yfinance_cache(self) -> Path:
        """Where yfinance keeps its own caches (never the home directory)."""
        return Path(self.yfinance_cache_dir or self.cache_root() / "yfinance")


DEFAULT_QUANTILES = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)
# the levels the forecast file needs: the median and the bounds of the 80% and 95% intervals
REQUIRED_QUANTILES = (0.025, 0.1, 0.5, 0.9, 0.975)


def check_quantile_levels(levels: tuple[float, ...]) -> tuple[float, ...]:
    """Quantile levels a model can predict and calibrate: increasing, inside (0, 1), symmetric
    about the median (calibration scales each pair of levels tau, 1 - tau together) and holding
    REQUIRED_QUANTILES. () is a point model."""
    if not levels:
        return ()
    if any(not 0 < t < 1 for t in levels) or list(levels) != sorted(set(levels)):
        raise ValueError("quantile levels must increase strictly, each inside (0, 1)")
    if any(abs(a + b - 1) > 1e-9 for a, b in zip(levels, reversed(levels), strict=True)):
        raise ValueError("quantile levels must be symmetric about 0.5 (tau with 1 - tau)")
    missing = [t for t in REQUIRED_QUANTILES if not any(abs(t - x) < 1e-9 for x in levels)]
    if missing:
        shown = ", ".join(f"{t:g}" for t in missing)
        raise ValueError(f"quantile levels lack {shown} (the median and the 80%/95% bounds)")
    return levels


MAX_HELD_OUT = 0.9  # share of each ticker's rows the val, calib and test splits may take


class FeatureConfig(_Frozen):
    window: int = Field(60, ge=2, le=10_000)  # trading days per input window
    horizon: int = Field(5, ge=1, le=1_000)  # trading days forecast, direct multi-output 1..H
    val_frac: float = Field(0.15, gt=0, lt=0.5)  # chronological share of each ticker's rows
    # conformal calibration of the intervals: after validation, before test; neither trained
    # on nor used for early stopping (see calibrate.py)
    calib_frac: float = Field(0.1, gt=0, lt=0.5)
    test_frac: float = Field(0.15, gt=0, lt=0.5)

    @model_validator(mode="after")
    def _room_to_train(self) -> FeatureConfig:
        held_out = self.val_frac + self.calib_frac + self.test_frac
        if not held_out <= MAX_HELD_OUT:
            raise ValueError(
                f"val_frac + calib_frac + test_frac is {held_out:g}: it must be at most "
                f"{MAX_HELD_OUT:g} (at least a tenth of each ticker's rows trains)"
            )
        return self


class ModelConfig(_Frozen):
    cell: Cell = "lstm"
    hidden_size: int = Field(64, ge=1, le=8_192)
    num_layers: int = Field(2, ge=1, le=64)
    dropout: float = Field(0.2, ge=0, lt=1)  # between recurrent layers; ignored with one layer
    # add daily return, high-low range and open-close body channels, computed inside the graph
    derived_features: bool = False
    # levels of the log-return quantiles the model predicts (pinball loss), calibrated after
    # training; () = a point model trained on train.loss (no intervals)
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES

    @field_validator("quantiles")
    @classmethod
    def _quantile_levels(cls, levels: tuple[float, ...]) -> tuple[float, ...]:
        return check_quantile_levels(levels)


class TrainConfig(_Frozen):
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(256, ge=1, le=1 << 20)
    max_epochs: int = Field(30, ge=1, le=COUNT_MAX)
    patience: int = Field(5, ge=1, le=COUNT_MAX)  # epochs without val improvement before stopping
    min_delta: float = Field(0.0, ge=0)  # val-loss improvement that counts as one
    # a point model's loss (model.quantiles: []) on log returns in percent units; huber's delta
    # is 1 (percent); a quantile model trains on the pinball loss
    loss: Loss = "mse"
    weight_decay: float = Field(0.0, ge=0)  # AdamW's decoupled decay
    grad_clip: float = Field(1.0, ge=0)  # max gradient L2 norm; 0 = no clipping
    lr_schedule: Literal["plateau", "none"] = "plateau"  # reduce lr when val loss stalls
    lr_factor: float = Field(0.5, gt=0, lt=1)
    lr_patience: int = Field(
        2, ge=1, le=COUNT_MAX
    )  # epochs; keep below `patience` so it acts first
    # auto: bf16 autocast where the device runs bf16 natively and it is faster there (CUDA GPUs
    # with bf16 from hidden_size 256, CPUs with AMX or AVX-512 BF16 from a smaller size), else
    # fp32; bf16 without native support is an InputError. See runtime.choose_autocast
    precision: Precision = "auto"
    threads: int | None = Field(
        None, ge=1, le=4_096
    )  # CPU threads for torch; None: one for a small model, else torch's default (choose_threads)
    cuda_graphs: bool = True  # on CUDA, replay the captured training step (see train_step.py)
    seed: int = Field(42, ge=0, le=2**32 - 1)  # what numpy and torch seeding accept
    device: Device = "auto"


class TrackingConfig(_Frozen):
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else DEFAULT_TRACKING_URI
    experiment: str = Field(MODEL_NAME, min_length=1, max_length=500)  # MLflow's limits
    model_name: str = MODEL_NAME
    trigger: Trigger = "manual"  # logged as the run's `trigger` tag
    # the id of the Prefect event that started the run (a degradation), its `trigger_event` tag
    trigger_event: str | None = Field(None, min_length=1, max_length=200)
    # relative improvement the gate demands: val MASE <= 1 - margin, and <= (1 - margin) times
    # the champion's MASE on the same windows; 0 = no worse than naive and the champion
    promotion_margin: float = Field(0.0, ge=0, lt=1)

    @field_validator("model_name")
    @classmethod
    def _registrable(cls, name: str) -> str:
        # MLflow checks this only when registering: after the whole training
        if not name.strip() or "/" in name or ":" in name:
            raise ValueError(f"model name {name!r} must be non-blank, without '/' or ':'")
        return name


class MonitorConfig(_Frozen):
    """How live scores are judged (lstm_pipeline/live.py): a rolling window with at least
    `min_matured` matured forecasts is degraded when its MASE exceeds 1 + `mase_margin` or its
    80%-interval coverage leaves [`coverage_80_low`, `coverage_80_high`]."""

    # rolling windows of matured trading days (target dates), beside "live" (since inception)
    windows: tuple[Annotated[int, Field(ge=1, le=DAYS_MAX)], ...] = Field((20, 60), min_length=1)
    min_matured: int = Field(40, ge=1, le=COUNT_MAX)  # forecasts a window needs to raise an alert
    mase_margin: float = Field(0.1, ge=0, le=100)  # degraded when live MASE > 1 + margin
    coverage_80_low: float = Field(0.70, ge=0, le=1)  # degraded below this 80% coverage
    coverage_80_high: float = Field(0.90, ge=0, le=1)  # and above this one

    @field_validator("windows")
    @classmethod
    def _distinct(cls, windows: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(windows)) != len(windows):
            raise ValueError(f"windows {list(windows)} repeat a window: each must be distinct")
        return windows

    @model_validator(mode="after")
    def _coverage_band(self) -> MonitorConfig:
        if not self.coverage_80_low < self.coverage_80_high:
            raise ValueError(
                f"coverage_80_low {self.coverage_80_low:g} must be below"
                f" coverage_80_high {self.coverage_80_high:g}"
            )
        return self


class PipelineConfig(_Frozen):
    data: DataConfig = DataConfig()
    features: FeatureConfig = FeatureConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()
    monitor: MonitorConfig = MonitorConfig()  # live scores and degradation (live.py)

    def flat(self) -> dict[str, Any]:
        """Flattened `section.key -> value` view, the form logged as MLflow params."""
        out: dict[str, Any] = {}
        for section, values in self.model_dump(mode="json").items():
            for key, value in values.items():
                out[f"{section}.{key}"] = (
                    ",".join(map(str, value)) if isinstance(value, list) else value
                )
        return out


def with_trigger(cfg: PipelineConfig, trigger: Trigger) -> PipelineConfig:
    """`cfg` with the tracking trigger set (backtest and tune runs say what started them)."""
    return cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"trigger": trigger})})


def option_overrides(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options named like a config field (`seed`, `tracking_uri`, `interval`) as
    build_config's `section__key` overrides: one name, one meaning, so every such option of
    every command reaches its field, and one left out (None) leaves the file's value alone."""
    sections = {
        key: section
        for section, info in PipelineConfig.model_fields.items()
        for key in info.annotation.model_fields  # type: ignore[union-attr]
    }
    return {f"{sections[name]}__{name}": v for name, v in options.items() if name in sections}


def build_config(yaml_path: str | Path | None = None, **overrides: Any) -> PipelineConfig:
    """Defaults, then the YAML file, then non-None `section__key=value` overrides.

    Raises InputError (one line, naming the file and key) on unknown keys or bad values.
    """
    from_file = _read_yaml(Path(yaml_path)) if yaml_path is not None else {}
    tree = dict(from_file)  # its own top level: from_file says which sections the file set
    given = {tuple(dotted.split("__", 1)) for dotted, v in overrides.items() if v is not None}
    for section, key in given:
        keys = tree.get(section, {})
        if isinstance(keys, dict):  # else pydantic names the file's malformed section below
            tree[section] = {**keys, key: overrides[f"{section}__{key}"]}
    checked = _validated(tree, from_file, given, yaml_path)  # types first: data_dir a path
    scanned = _csv_tickers_by_default(tree)
    return checked if scanned is tree else _validated(scanned, from_file, given, yaml_path)


def _validated(
    tree: dict[str, Any],
    from_file: dict[str, Any],
    given: set[tuple[str, ...]],
    yaml_path: str | Path | None,
) -> PipelineConfig:
    """`tree` as a PipelineConfig, or InputError naming the first bad key (and the file, when
    the value came from it)."""
    try:
        return PipelineConfig.model_validate(tree)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(str(p) for p in first["loc"])
        # name the file only for a value that came from it, not from a command-line option
        in_file = bool(loc) and loc[0] in from_file and loc[:2] not in given
        where = f" (config {yaml_path})" if in_file else ""
        message = first["msg"].removeprefix("Value error, ")
        # a key the file made up may hold a newline: the one line stays one line
        key = ".".join(p if p.isprintable() else repr(p) for p in loc) or "config"
        raise InputError(f"invalid {key}{where}: {message}") from None


def _csv_tickers_by_default(tree: dict[str, Any]) -> dict[str, Any]:
    """With source csv and tickers set nowhere, every TICKER.csv in data_dir (sorted): the six
    sample tickers are no default for a folder of one's own prices."""
    data = tree.get("data")
    if not isinstance(data, dict) or data.get("source") != "csv" or "tickers" in data:
        return tree
    if not data.get("data_dir"):
        return tree  # DataConfig says that csv needs data_dir
    from lstm_pipeline.csv_files import price_files, shown, skipped_note  # pandas: not at --help

    folder = Path(data["data_dir"])
    tickers = tuple(sorted(price_files(folder)))
    if not tickers:  # one line: what was skipped, if anything, said here rather than warned
        raise InputError(
            f"data_dir {shown(folder)} holds no TICKER.csv files{skipped_note(folder)}:"
            " add some or pass tickers"
        )
    return tree | {"data": data | {"tickers": tickers}}


MAX_CONFIG_BYTES = 1 << 20  # a config file is a few hundred bytes; /dev/zero never ends


def _read_yaml(path: Path) -> dict[str, dict[str, Any]]:
    import yaml  # ~50 ms, and only a --config file needs it: not at --help

    text = _config_text(path)
    try:
        tree = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"config {path} is not valid YAML: {one_line(exc)}") from None
    except RecursionError:
        raise InputError(f"config {path} is nested too deeply") from None
    if not isinstance(tree, dict):
        raise InputError(f"config {path} must be a mapping of sections")
    return tree


def _config_text(path: Path) -> str:
    """The text of a config file: a regular file of at most MAX_CONFIG_BYTES, in UTF-8."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a device, a FIFO or a folder
            raise InputError(f"config {path} is not a regular file")
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)  # the size may have changed since stat
    except OSError as exc:
        raise InputError(f"cannot read config {path}: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise InputError(f"config {path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"config {path} is not UTF-8 text (byte {exc.start})") from None
