"""What a flow run shows on its Artifacts tab in the Prefect UI.

The keys are fixed, so every scheduled run adds a version to the same two artifacts and the UI
lists their history side by side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import pandas as pd
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from lstm_pipeline import report
from lstm_pipeline.drift import DAYS, DRIFT_THRESHOLD, drifted
from lstm_pipeline.predict import BOUND_LEVELS, FORECAST_COLUMNS

if TYPE_CHECKING:
    from lstm_pipeline.tracking import Run

TRAINING_KEY = "training-summary"
FORECAST_KEY = "batch-forecasts"
DRIFT_KEY = "input-drift"
MAX_TABLE_ROWS = 2_000  # 400 tickers x 5 days; the file holds all, the UI needs a glance
MAX_DRIFT_ROWS = 10  # the most drifted tickers; the forecast table has every score


def publish_training_summary(
    run: Run,
    model_name: str,
    version: str,
    metrics: dict[str, float],
    promoted: bool,
    reason: str,
    by_ticker: str = "",
) -> None:
    """Scores beside naive, the promotion decision and a link to the MLflow run; with the
    per-ticker CSV (`by_ticker`), its worst and best tickers (a bounded table)."""
    link = run.store.run_link(run.run_id)
    markdown = report.run_summary(model_name, version, metrics, promoted, reason, link)
    if by_ticker:
        markdown += "\n".join(report.ticker_extremes(by_ticker)) + "\n"
    create_markdown_artifact(
        markdown, key=TRAINING_KEY, description=f"{model_name} v{version}, MLflow run {run.run_id}"
    )


def publish_forecasts(table: pd.DataFrame, path: str) -> None:
    """The forecasts as a table (the file's columns, dates as ISO text, prices to 4 decimals)."""
    prices = ["forecast", *BOUND_LEVELS, "last_close"]
    rounding = dict.fromkeys(prices, 4) | {"input_drift": 2}
    shown = table.head(MAX_TABLE_ROWS)[list(FORECAST_COLUMNS)].round(rounding)
    for column in ("as_of", "target_date"):
        shown[column] = pd.to_datetime(shown[column]).dt.strftime("%Y-%m-%d")
    rows = cast(list[dict[str, Any]], shown.to_dict("records"))  # column names are str
    more = f"; the first {len(shown)} of {len(table)} rows" if len(shown) < len(table) else ""
    create_table_artifact(rows, key=FORECAST_KEY, description=f"written to {path}{more}")
    publish_drift(table)


def publish_drift(table: pd.DataFrame) -> None:
    """The MAX_DRIFT_ROWS tickers whose recent inputs lie farthest from the model's training
    data, most drifted first; nothing for a model without a training profile."""
    scores = table.drop_duplicates("ticker").set_index("ticker")["input_drift"].dropna()
    if scores.empty:
        return
    top = drifted(scores, threshold=-1.0).head(MAX_DRIFT_ROWS)  # every score, most first
    rows = [
        {
            "ticker": ticker,
            "input_drift": round(float(score), 2),
            "drifted": score > DRIFT_THRESHOLD,
        }
        for ticker, score in top.items()
    ]
    above = int((scores > DRIFT_THRESHOLD).sum())
    create_table_artifact(
        rows,
        key=DRIFT_KEY,
        description=(
            f"{above} of {len(scores)} tickers above {DRIFT_THRESHOLD:g} (robust z of the last "
            f"{DAYS} days' volatility or volume against the training data); the "
            f"{len(rows)} most drifted"
        ),
    )
