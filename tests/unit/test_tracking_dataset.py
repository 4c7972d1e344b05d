"""A run's dataset input: the schema MLflow would infer, without reading every row."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.data.pandas_dataset import from_pandas
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lstm_pipeline.config import MODEL_NAME as MODEL
from lstm_pipeline.data import FEATURES
from lstm_pipeline.pipeline import dataset_sample, training_frame
from lstm_pipeline.tracking.dataset import schema_rows

FLOAT_COLUMNS = ("Open", "Close", "Volume")


def long_frame(tickers: int, rows: int, seed: int) -> pd.DataFrame:
    """A training_frame-like frame: Date, ticker, prices."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "Date": np.tile(pd.date_range("2020-01-01", periods=rows).to_numpy(), tickers),
            "ticker": np.repeat([f"T{i}" for i in range(tickers)], rows),
            **{name: rng.random(tickers * rows) for name in FLOAT_COLUMNS},
        }
    )


@settings(max_examples=40, deadline=None)
@given(
    tickers=st.integers(1, 4),
    rows=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    holes=st.lists(st.tuples(st.integers(0, 23), st.sampled_from(["Date", "ticker", "Close"]))),
    missing=st.sampled_from([None, np.nan]),
)
def test_the_schema_rows_give_the_schema_of_the_whole_frame(tickers, rows, seed, holes, missing):
    frame = long_frame(tickers, rows, seed)
    for row, column in holes:
        frame.loc[row % len(frame), column] = missing
    assert from_pandas(schema_rows(frame)).schema == from_pandas(frame).schema


def test_an_object_column_keeps_every_row():
    frame = pd.DataFrame({"mixed": [1, True, 1.0], "x": [0.0, 1.0, 2.0]})  # 1 == True == 1.0
    assert schema_rows(frame).equals(frame)
    assert from_pandas(schema_rows(frame)).schema == from_pandas(frame).schema


# the expected dataset, built here as MLflow builds it, resolves a local path two ways and warns
@pytest.mark.filterwarnings("ignore:The specified dataset source can be")
def test_the_logged_dataset_is_mlflows_own_but_inferred_from_one_row_per_ticker(store, monkeypatch):
    import mlflow.data.pandas_dataset as pandas_dataset

    frame = long_frame(tickers=3, rows=400, seed=1)
    expected = from_pandas(frame, source="/data", name="prices-abc", digest="abc")
    expected_entity = expected._to_mlflow_entity()
    inferred_rows = []
    infer = pandas_dataset._infer_schema

    def counting(df):
        inferred_rows.append(len(df))
        return infer(df)

    monkeypatch.setattr(pandas_dataset, "_infer_schema", counting)
    with store.start_run(MODEL, "a-run", {}, {}).closing() as run:
        run.log_dataset(frame, len(frame), "abc", "/data", "training")
    assert inferred_rows and max(inferred_rows) <= 3  # not the 1,200 rows
    (logged,) = MlflowClient(store.uri).get_run(run.run_id).inputs.dataset_inputs
    assert logged.dataset.schema == expected_entity.schema
    assert json.loads(logged.dataset.profile) == {"num_rows": 1200, "num_elements": 6000}
    assert (logged.dataset.name, logged.dataset.digest) == ("prices-abc", "abc")
    assert logged.dataset.source == expected_entity.source


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 8), min_size=1, max_size=5),
    names=st.lists(st.text(min_size=1, max_size=6), min_size=5, max_size=5, unique=True),
)
def test_the_training_frame_equals_a_frame_per_ticker_concatenated(lengths, names):
    prices = {
        name: pd.DataFrame(
            {c: np.arange(n, dtype=float) + k for k, c in enumerate(FEATURES)},
            index=pd.DatetimeIndex(pd.bdate_range("2021-01-01", periods=n), name="Date"),
        )
        for name, n in zip(names, lengths, strict=False)
    }
    expected = pd.concat(
        [p.reset_index().assign(ticker=t) for t, p in prices.items()], ignore_index=True
    ).loc[:, ["Date", "ticker", *FEATURES]]
    frame = training_frame(prices)
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    assert len(schema_rows(frame)) == len(prices)  # one row per ticker decides its schema


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 8), min_size=1, max_size=4),
    holes=st.lists(st.tuples(st.integers(0, 31), st.sampled_from(FEATURES)), max_size=4),
)
def test_the_dataset_sample_gives_the_whole_frames_schema_and_size(lengths, holes):
    prices = {
        f"T{i}": pd.DataFrame(
            {c: np.arange(n, dtype=float) + k for k, c in enumerate(FEATURES)},
            index=pd.DatetimeIndex(pd.bdate_range("2021-01-01", periods=n), name="Date"),
        )
        for i, n in enumerate(lengths)
    }
    frames = list(prices.values())
    for row, column in holes:  # missing values make a column optional in the schema
        frame = frames[row % len(frames)]
        frame.loc[frame.index[row % len(frame)], column] = np.nan
    whole = training_frame(prices)
    sample, rows = dataset_sample(prices)
    assert rows == len(whole) and len(sample) <= len(whole)
    assert from_pandas(sample).schema == from_pandas(whole).schema


def test_a_run_that_loses_the_race_to_create_its_dataset_links_to_the_winners(store):
    """Two trainings on the same data: the store checks for the dataset, then inserts it, so
    the second can fail on the unique key (seen on a shared server): it links to the dataset."""
    frame = long_frame(tickers=2, rows=50, seed=2)
    with store.start_run(MODEL, "winner", {}, {}).closing() as winner:
        winner.log_dataset(frame, len(frame), "abc", "/data", "training")
    with store.start_run(MODEL, "loser", {}, {}).closing() as loser:
        real, calls = loser.client.log_inputs, []

        def racing(*args, **kwargs):
            calls.append(1)
            if len(calls) == 1:
                raise MlflowException(
                    "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id,"
                    " datasets.name, datasets.digest"
                )
            return real(*args, **kwargs)

        loser.client.log_inputs = racing
        loser.log_dataset(frame, len(frame), "abc", "/data", "training")
        assert len(calls) == 2
        loser.client.log_inputs = lambda *a, **k: (_ for _ in ()).throw(MlflowException("down"))
        with pytest.raises(MlflowException, match="down"):  # any other failure is raised
            loser.log_dataset(frame, len(frame), "abc", "/data", "training")
    client = MlflowClient(store.uri)
    datasets = [client.get_run(r.run_id).inputs.dataset_inputs[0].dataset for r in (winner, loser)]
    assert [(d.name, d.digest) for d in datasets] == [("prices-abc", "abc")] * 2
