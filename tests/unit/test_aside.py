"""The evaluation's test baselines on a worker process (aside.py): the same numbers as in one
process, and no worker left behind, whatever happens to it or to the caller."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lstm_pipeline import aside, baseline_workers, pipeline, runtime
from lstm_pipeline.baselines import compute_by_split
from lstm_pipeline.config import FeatureConfig, ModelConfig, PipelineConfig, TrainConfig
from lstm_pipeline.data import FEATURES
from lstm_pipeline.errors import TrainingDivergedError, WorkerDiedError
from lstm_pipeline.features import build_window_sets
from lstm_pipeline.model import LSTMForecaster
from lstm_pipeline.train import FitResult
from tests.synthetic import make_prices

SERIAL = 10**12  # ASIDE_FROM that keeps every split in one process
LEVELS = (0.025, 0.1, 0.5, 0.9, 0.975)  # the 80% and 95% intervals the scores need


@pytest.fixture(scope="module")
def universe() -> dict[str, pd.DataFrame]:
    """Five synthetic tickers of different lengths (so the origins differ per ticker)."""
    return {
        f"T{i}": make_prices(300 + 40 * i, seed=i).set_index("Date").pipe(_dated) for i in range(5)
    }


def _dated(frame: pd.DataFrame) -> pd.DataFrame:
    frame.index = pd.DatetimeIndex(frame.index, name="Date")
    return frame[list(FEATURES)]


def _fitted(quantiles: tuple[float, ...], horizon: int = 3) -> FitResult:
    torch.manual_seed(0)
    net = LSTMForecaster(len(FEATURES), horizon, hidden_size=8, num_layers=1, quantiles=quantiles)
    return FitResult(net.eval(), best_epoch=1, stopped_epoch=1)


def _evaluate(result, windows, prices, monkeypatch, aside_from: int) -> pipeline.Evaluation:
    monkeypatch.setattr(aside, "ASIDE_FROM", aside_from)
    return pipeline.evaluate_model(result, windows, prices)


@pytest.mark.parametrize("quantiles", [LEVELS, ()], ids=["q", "point"])
def test_the_evaluation_with_a_worker_process_gives_exactly_the_serial_numbers(
    universe, monkeypatch, quantiles
):
    windows = build_window_sets(universe, FeatureConfig(window=10, horizon=3))
    result = _fitted(quantiles)
    started: list[str] = []
    real_call_aside = aside.call_aside

    def counting(purpose, *args, **options):
        started.append(purpose)
        return real_call_aside(purpose, *args, **options)

    monkeypatch.setattr(aside, "call_aside", counting)
    serial = _evaluate(result, windows, universe, monkeypatch, SERIAL)
    assert started == []
    aside_ = _evaluate(result, windows, universe, monkeypatch, 0)
    assert started == ["the evaluation's baselines"]  # the other path, really taken
    assert list(aside_.metrics) == list(serial.metrics)
    for key, value in serial.metrics.items():  # exactly, NaN where NaN
        assert np.array_equal(aside_.metrics[key], value, equal_nan=True), key
    for mine, theirs in zip(aside_.test, serial.test, strict=True):
        assert (mine is None and theirs is None) or np.array_equal(mine, theirs)
    for field in ("levels", "last_close", "rw", "ewma", "drift", "volatility"):
        mine, theirs = getattr(aside_.test_baselines, field), getattr(serial.test_baselines, field)
        assert np.array_equal(mine, theirs), field
    assert aside_.test_interval_rows == serial.test_interval_rows
    assert multiprocessing.active_children() == []


def test_a_failure_in_the_evaluation_raises_at_once_and_ends_the_worker(universe, monkeypatch):
    windows = build_window_sets(universe, FeatureConfig(window=10, horizon=3))
    result = _fitted(LEVELS)
    with torch.no_grad():
        result.model.head.weight.fill_(float("inf"))  # blown-up weights: val is not finite
    monkeypatch.setattr(aside, "ASIDE_FROM", 0)
    started = time.monotonic()
    with pytest.raises(TrainingDivergedError, match="val forecasts are not finite"):
        pipeline.evaluate_model(result, windows, universe)
    assert time.monotonic() - started < 30  # not waiting for a worker that never answers
    assert multiprocessing.active_children() == []


def _dies_on_a_worker(*args):
    """compute_by_split in this process; killed (as by the OOM killer) on a worker."""
    if multiprocessing.parent_process() is not None:
        signal.raise_signal(signal.SIGKILL)
    return compute_by_split(*args)


def test_a_killed_worker_is_an_error_naming_the_evaluation_not_a_hang(universe, monkeypatch):
    windows = build_window_sets(universe, FeatureConfig(window=10, horizon=3))
    monkeypatch.setattr(baseline_workers, "compute_by_split", _dies_on_a_worker)
    monkeypatch.setattr(aside, "ASIDE_FROM", 0)
    with pytest.raises(WorkerDiedError, match=r"^the evaluation's baselines: .* exit code -9"):
        pipeline.evaluate_model(_fitted(LEVELS), windows, universe)
    assert multiprocessing.active_children() == []


def test_an_error_raised_on_the_worker_is_raised_as_itself():
    with aside.call_aside("a test", int, "not a number") as pending:
        with pytest.raises(ValueError, match="invalid literal for int"):
            pending.result()
    assert multiprocessing.active_children() == []


def test_a_caller_that_fails_kills_a_worker_still_running():
    started = time.monotonic()
    with pytest.raises(KeyError, match="the caller's own"):
        with aside.call_aside("a test", time.sleep, 60):
            raise KeyError("the caller's own")
    assert time.monotonic() - started < 30
    assert multiprocessing.active_children() == []


def test_small_evaluations_and_daemonic_processes_stay_in_one_process(monkeypatch):
    assert not aside.worth_a_process(aside.ASIDE_FROM - 1)
    assert aside.worth_a_process(aside.ASIDE_FROM)
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True)
    assert not aside.worth_a_process(aside.ASIDE_FROM)


def _config(hidden_size: int, batch_size: int = 64) -> PipelineConfig:
    return PipelineConfig(
        features=FeatureConfig(window=10, horizon=3),
        model=ModelConfig(hidden_size=hidden_size, num_layers=1, quantiles=LEVELS),
        train=TrainConfig(batch_size=batch_size, device="cpu"),
    )


def test_baselines_made_ahead_during_a_one_thread_fit_give_exactly_the_serial_numbers(
    universe, monkeypatch
):
    cfg = _config(hidden_size=8)  # batch 64 x hidden 8: a one-thread fit
    windows = build_window_sets(universe, cfg.features)
    result = _fitted(LEVELS)
    serial = _evaluate(result, windows, universe, monkeypatch, SERIAL)
    monkeypatch.setattr(aside, "ASIDE_FROM", 0)
    monkeypatch.setattr(aside, "cpu_threads", lambda: 2)  # a core left beside the fit
    with baseline_workers.baselines_ahead(cfg, windows, universe) as ahead:
        assert ahead is not None and ahead.splits == ("val", "test")
        [worker] = multiprocessing.active_children()  # under way before the evaluation
        made = pipeline.evaluate_model(result, windows, universe, ahead)
    assert not worker.is_alive()
    assert made.metrics.keys() == serial.metrics.keys()
    for key, value in serial.metrics.items():
        assert np.array_equal(made.metrics[key], value, equal_nan=True), key
    for field in ("rw", "ewma", "drift", "volatility"):
        assert np.array_equal(
            getattr(made.test_baselines, field), getattr(serial.test_baselines, field)
        )
    assert multiprocessing.active_children() == []


def test_nothing_is_made_ahead_when_the_fit_takes_every_core_or_the_splits_are_small(
    universe, monkeypatch
):
    windows = build_window_sets(universe, FeatureConfig(window=10, horizon=3))
    monkeypatch.setattr(aside, "cpu_threads", lambda: 2)
    monkeypatch.setattr(runtime, "DEFAULT_THREADS", 2)
    monkeypatch.setattr(aside, "ASIDE_FROM", 0)
    with baseline_workers.baselines_ahead(
        _config(hidden_size=64, batch_size=256), windows, universe
    ) as ahead:
        assert ahead is None  # the default model's fit takes both cores
    monkeypatch.setattr(aside, "ASIDE_FROM", SERIAL)
    with baseline_workers.baselines_ahead(_config(hidden_size=8), windows, universe) as ahead:
        assert ahead is None  # too few windows to be worth a process
    assert multiprocessing.active_children() == []


def test_a_worker_runs_at_the_lower_priority_asked_for():
    with aside.call_aside("a test", os.nice, 0, niceness=5) as pending:
        assert pending.result() == min(os.nice(0) + 5, 19)
        assert pending.result() == min(os.nice(0) + 5, 19)  # asked again: the same answer


class _ReadOnceThere:
    """Unpickles (on the worker) only once `path` exists; a TimeoutError after 30 s."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return _wait_for, (str(self.path),)


def _wait_for(path: str) -> str:
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)
    return path


def _first(path: str, closes: np.ndarray) -> str:
    return path


def test_the_caller_goes_on_before_the_worker_has_read_a_large_call(tmp_path):
    gate = tmp_path / "go"
    closes = np.zeros(4_000_000)  # 32 MB: far more than a pipe holds
    with aside.call_aside("a test", _first, _ReadOnceThere(gate), closes) as pending:
        # reached only if call_aside returned before the worker had read its call (with the
        # call written by start(), this waited for the gate, and the gate for this)
        gate.touch()
        assert pending.result() == str(gate)
    assert multiprocessing.active_children() == []
