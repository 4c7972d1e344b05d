"""The flows on a real local Dask cluster (two worker processes) give what they give on threads."""

import time
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.slow

SCORES = ("test_mae", "test_mase", "naive_test_mae", "val_mase", "test_directional_accuracy")


@pytest.fixture(scope="module")
def dask_client() -> Iterator:
    """A client of a two-process LocalCluster on loopback, no dashboard; closed after."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def executed(client) -> dict[str, int]:
    """Tasks each worker has run so far."""
    return client.run(lambda dask_worker: dask_worker.state.executed_count)


def on_runner(flow, **runner):
    from flows.runners import task_runner

    return flow.with_options(task_runner=task_runner(**runner))


def test_training_on_dask_fetches_on_the_workers_and_matches_threads(
    prefect_harness, tiny_cfg, dask_client
):
    from flows.training import train_flow

    started = time.perf_counter()
    threads = on_runner(train_flow, kind="threads")(tiny_cfg)
    middle = time.perf_counter()
    before = executed(dask_client)
    dask = on_runner(train_flow, address=dask_client.scheduler.address)(tiny_cfg)
    after = executed(dask_client)
    print(f"train: threads {middle - started:.1f} s, dask {time.perf_counter() - middle:.1f} s")
    assert sum(after.values()) - sum(before.values()) == 1  # load-AAA..BBB: one batch of files
    assert dask["run_id"] != threads["run_id"] and dask["skipped"] == threads["skipped"] == {}
    for key in (*SCORES, "best_epoch", "stopped_epoch"):
        assert dask["metrics"][key] == pytest.approx(threads["metrics"][key], rel=1e-6), key


def test_tuning_on_dask_runs_trials_in_both_workers_and_matches_threads(
    prefect_harness, tiny_cfg, dask_client, tmp_path
):
    from flows.tuning import tune_flow

    # Dask's nanny starts workers with OMP_NUM_THREADS=1: one torch thread per worker process
    assert set(dask_client.run(lambda: __import__("torch").get_num_threads()).values()) == {1}
    started = time.perf_counter()
    threads = on_runner(tune_flow, kind="threads")(tiny_cfg, 3, 2, str(tmp_path / "t.yaml"))
    middle = time.perf_counter()
    before = executed(dask_client)
    address = dask_client.scheduler.address
    dask = on_runner(tune_flow, address=address)(tiny_cfg, 3, 2, str(tmp_path / "d.yaml"))
    after = executed(dask_client)
    print(f"tune: threads {middle - started:.1f} s, dask {time.perf_counter() - middle:.1f} s")
    assert sum(after.values()) - sum(before.values()) == 1 + 3  # one batch of files, three trials
    assert all(after[w] > before[w] for w in after), (before, after)  # both workers worked
    assert dask["best_params"] == threads["best_params"]
    assert dask["best_trial"] == threads["best_trial"]
    assert dask["best_val_mase"] == pytest.approx(threads["best_val_mase"], rel=1e-6)
    assert [t["state"] for t in dask["trials"]] == [t["state"] for t in threads["trials"]]
    scores = [
        [t["val_mase"] for t in r["trials"] if t["val_mase"] is not None] for r in (dask, threads)
    ]
    assert len(scores[0]) >= 2 and scores[0] == pytest.approx(scores[1], rel=1e-6)
    assert (tmp_path / "d.yaml").read_text() == (tmp_path / "t.yaml").read_text()


def worker_downloads(client) -> list[str]:
    """Tickers each worker's patched yfinance.download was called for, in call order."""

    def tickers() -> list[str]:
        import yfinance

        return [call["ticker"] for call in yfinance.download.__self__.calls]

    return sorted(t for calls in client.run(tickers).values() for t in calls)


def test_on_dask_bad_input_stays_bad_input_and_fetches_are_reused(
    prefect_harness, dask_client, tiny_onnx, tmp_path
):
    from flows.inference import forecast_flow
    from lstm_pipeline.config import DataConfig
    from tests.fake_yahoo import install

    dask_client.run(install, {"AAPL": 60})  # the network edge, patched in each worker process
    cfg = DataConfig(tickers=("AAPL", "NOPE"), source="yfinance", cache_dir=str(tmp_path / "c"))
    flow = on_runner(forecast_flow, address=dask_client.scheduler.address)
    output = tmp_path / "f.csv"
    first = flow(cfg, str(tiny_onnx[0]), str(output))
    assert first["rows"] == 3 and first["failed"]["NOPE"]["bad_input"] is True  # pickled as is
    fetched = worker_downloads(dask_client)
    assert "AAPL" in fetched and "NOPE" in fetched
    again = flow(cfg, str(tiny_onnx[0]), str(output))
    assert again["rows"] == 3 and again["failed"] == first["failed"]
    new = worker_downloads(dask_client)
    assert new.count("AAPL") == fetched.count("AAPL")  # reused from the result store
    assert new.count("NOPE") > fetched.count("NOPE")  # failures are never reused
