"""The evaluation's baselines on a worker process, which the evaluation (pipeline.py) takes.

The rw, ewma and drift baselines of a split need each ticker's closes, the windows' origins,
the horizon and the quantile levels: nothing from the model's weights. So where this process
has a core to spare they are made on a spawned worker (aside.py): from the fit's start when
the fit takes one thread (`baselines_ahead`), else, for a large test split, during the
evaluation while this process predicts and scores the validation split (`baselines_aside`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

import pandas as pd

from lstm_pipeline import aside
from lstm_pipeline.aside import Pending
from lstm_pipeline.baselines import Baselines, compute_by_split
from lstm_pipeline.config import DEFAULT_QUANTILES, PipelineConfig
from lstm_pipeline.features import WindowSet
from lstm_pipeline.model import LSTMForecaster
from lstm_pipeline.runtime import fit_threads, sharing_cores


def baseline_args(
    levels: tuple[float, ...], data: WindowSet, closes: Mapping[str, pd.Series]
) -> tuple[Any, ...]:
    """compute_baselines' arguments for a split: its tickers' closes (from `closes_of`), the
    windows' origins, the horizon and the model's levels (the baselines never depend on the
    model's weights)."""
    mine = {ticker: closes[ticker] for ticker in data.tickers}
    return mine, data.tickers, data.ticker_ids, data.as_of, data.targets.shape[1], levels


def closes_of(
    prices_by_ticker: Mapping[str, pd.DataFrame], splits: list[WindowSet]
) -> dict[str, pd.Series]:
    """The closes of the splits' tickers, each taken once (a column costs ~0.5 ms)."""
    tickers = dict.fromkeys(ticker for data in splits for ticker in data.tickers)
    return {ticker: prices_by_ticker[ticker]["Close"] for ticker in tickers}


EVALUATED = ("val", "test")  # the splits evaluate_model scores
AHEAD_NICENESS = 10  # below the fit's: work done ahead must not slow what runs now


class BaselinesAside(NamedTuple):
    """Some splits' baselines under way on a worker process."""

    pending: Pending[dict[str, Baselines]]
    splits: tuple[str, ...]

    def of(self, split: str) -> Callable[[], Baselines] | None:
        """What gives that split's baselines once they are made, or None if this worker makes
        none for it."""
        return (lambda: self.pending.result()[split]) if split in self.splits else None


@contextmanager
def _on_a_worker(
    levels: tuple[float, ...],
    windows: dict[str, WindowSet],
    splits: tuple[str, ...],
    prices_by_ticker: Mapping[str, pd.DataFrame],
    niceness: int = 0,
) -> Iterator[BaselinesAside]:
    closes = closes_of(prices_by_ticker, [windows[split] for split in splits])
    args = {split: baseline_args(levels, windows[split], closes) for split in splits}
    purpose = "the evaluation's baselines"
    with aside.call_aside(purpose, compute_by_split, args, niceness=niceness) as pending:
        yield BaselinesAside(pending, splits)


@contextmanager
def baselines_aside(
    model: LSTMForecaster,
    windows: dict[str, WindowSet],
    prices_by_ticker: Mapping[str, pd.DataFrame],
) -> Iterator[BaselinesAside | None]:
    """The test split's baselines, if it is large, under way on a worker process for the block
    (aside.py), so the evaluation uses a second core, which torch leaves to it meanwhile;
    None (computed in turn) below aside.ASIDE_FROM."""
    if not aside.worth_a_process(len(windows["test"])):
        yield None
        return
    levels = model.quantiles or DEFAULT_QUANTILES
    with (
        _on_a_worker(levels, windows, ("test",), prices_by_ticker) as made,
        sharing_cores(workers=1),
    ):
        yield made


@contextmanager
def baselines_ahead(
    cfg: PipelineConfig, windows: dict[str, WindowSet], prices_by_ticker: Mapping[str, pd.DataFrame]
) -> Iterator[BaselinesAside | None]:
    """The evaluation's baselines (val and test) under way for the block (the fit, then the
    evaluation) on a worker process of a lower priority, where the fit leaves this process a
    core (one thread for a small model: runtime.choose_threads) and the splits are worth a
    process (aside.ASIDE_FROM); None otherwise, and the evaluation sees to them. They need
    the closes, the origins, the horizon and the levels: nothing from the fit."""
    scored = sum(len(windows[split]) for split in EVALUATED)
    leaves_a_core = fit_threads(cfg.train, cfg.model.hidden_size) < aside.cpu_threads()
    if not (leaves_a_core and aside.worth_a_process(scored)):
        yield None
        return
    levels = cfg.model.quantiles or DEFAULT_QUANTILES
    with _on_a_worker(levels, windows, EVALUATED, prices_by_ticker, AHEAD_NICENESS) as made:
        yield made
