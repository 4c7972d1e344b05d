"""Both flows end to end under the Prefect test harness, MLflow on a temporary sqlite store."""

import json
import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from lstm_pipeline.config import DEFAULT_QUANTILES
from lstm_pipeline.predict import FORECAST_COLUMNS
from lstm_pipeline.tracking import OWNER_TAG

pytestmark = pytest.mark.slow


def test_train_flow_logs_a_complete_run_and_registers_the_onnx_model(prefect_harness, tiny_cfg):
    from flows.training import train_flow

    result = train_flow(tiny_cfg)
    client = MlflowClient(tiny_cfg.tracking.tracking_uri)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["features.window"] == "10"
    assert run.data.params["model.hidden_size"] == "8"
    assert run.data.tags["data.tickers"] == "AAA,BBB" and len(run.data.tags["data.sha256"]) == 16
    assert run.data.tags["data.per_ticker"].startswith("AAA:2020-01-01..2021-07-13:400;BBB:")
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == run.data.tags["data.sha256"]
    assert json.loads(dataset_input.dataset.profile)["num_rows"] == 800
    assert {(t.key, t.value) for t in dataset_input.tags} == {("mlflow.data.context", "training")}
    assert result["skipped"] == {}
    epochs = result["metrics"]["stopped_epoch"]
    for name in ("train_loss", "val_loss"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, name)]
        assert steps == list(range(1, epochs + 1))
    for key in (
        "test_mae",
        "test_rmse",
        "test_mape",
        "test_mase",
        "naive_test_mae",
        "test_directional_accuracy",
        "best_epoch",
        "train_windows_per_s",
        "test_mae_h1",
        "test_mase_h3",
        "val_mase",
    ):
        assert key in run.data.metrics, key
        assert run.data.metrics[key] == pytest.approx(result["metrics"][key])
    assert run.data.metrics["test_mase"] == pytest.approx(
        run.data.metrics["test_mae"] / run.data.metrics["naive_test_mae"]
    )
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts >= {"plots/loss_curve.png", "plots/actual_vs_forecast.png"}

    version = client.get_model_version("lstm-forecaster", result["model_version"])
    assert version.run_id == run.info.run_id
    promoted = result["metrics"]["val_mase"] <= 1.0
    assert result["promoted"] is promoted
    assert result["alias"] == ("champion" if promoted else "challenger")
    holder = client.get_model_version_by_alias("lstm-forecaster", result["alias"])
    assert str(holder.version) == result["model_version"]
    assert run.data.tags["promotion"] == result["reason"]
    stages = {"load", "windows", "tracking", "epochs", "calibration", "evaluation", "export"}
    stages.add("gate")
    assert set(result["timings"]) == stages and min(result["timings"].values()) >= 0
    epochs = sum(m.value for m in client.get_metric_history(run.info.run_id, "epoch_seconds"))
    assert result["timings"]["epochs"] >= epochs  # the loop times its epochs and validations


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_forecast_flow_writes_one_row_per_ticker_and_horizon(
    prefect_harness, tiny_cfg, tmp_path: Path, suffix: str
):
    from flows.inference import forecast_flow
    from flows.training import train_flow

    trained = train_flow(tiny_cfg)
    uri = f"models:/lstm-forecaster/{trained['model_version']}"
    output = tmp_path / f"out/forecasts{suffix}"
    result = forecast_flow(tiny_cfg.data, uri, str(output), tiny_cfg.tracking.tracking_uri)
    assert result["output"] == str(output) and result["rows"] == 2 * 3
    assert set(result["timings"]) == {"model", "load", "forecast", "write", "history"}
    table = pd.read_csv(output) if suffix == ".csv" else pd.read_parquet(output)
    every_quantile = [f"quantile_{level:g}" for level in DEFAULT_QUANTILES]  # a parquet file's
    assert list(table.columns) == [*FORECAST_COLUMNS, *(every_quantile if suffix != ".csv" else [])]
    bounds = ["lower_95", "lower_80", "forecast", "upper_80", "upper_95"]
    assert (np.diff(table[bounds].to_numpy(float), axis=1) >= 0).all(), table[bounds]
    assert set(table["ticker"]) == {"AAA", "BBB"} and sorted(set(table["horizon"])) == [1, 2, 3]
    assert (table["model_version"].astype(str) == trained["model_version"]).all()
    assert (table["run_id"] == trained["run_id"]).all()
    aaa = table[table["ticker"] == "AAA"]
    as_of = pd.Timestamp(aaa["as_of"].iloc[0])
    assert as_of == pd.Timestamp("2021-07-13")  # last of the 400 synthetic business days
    targets = pd.to_datetime(aaa["target_date"])
    assert list(targets) == [pd.Timestamp(d) for d in ("2021-07-14", "2021-07-15", "2021-07-16")]
    assert np.all(np.abs(aaa["forecast"] / aaa["last_close"] - 1) < 0.2)


def test_forecast_flow_without_a_champion_fails_with_a_clear_message(prefect_harness, tiny_cfg):
    from flows.inference import forecast_flow
    from lstm_pipeline.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="models:/lstm-forecaster@champion not found"):
        forecast_flow(tiny_cfg.data, tracking_uri=tiny_cfg.tracking.tracking_uri)


def break_bbb(cfg) -> Path:
    bad = Path(cfg.data.data_dir or "") / "BBB.csv"
    bad.write_text(bad.read_text().replace("2020-01-0", "2020-13-0"))
    return bad


def test_training_goes_on_without_a_bad_ticker_and_records_what_it_used(prefect_harness, tiny_cfg):
    from flows.training import train_flow

    bad = break_bbb(tiny_cfg)
    result = train_flow(tiny_cfg)
    message = f"BBB: file {bad}: bad date '2020-13-01' in row 2"
    assert result["skipped"] == {"BBB": {"error": message, "bad_input": True}}
    run = MlflowClient(tiny_cfg.tracking.tracking_uri).get_run(result["run_id"])
    assert run.data.tags["data.tickers"] == "AAA" and run.data.tags["data.skipped"] == message
    assert run.data.tags["data.per_ticker"] == "AAA:2020-01-01..2021-07-13:400"


def test_the_fewest_rows_validation_accepts_are_enough_to_train_and_export(
    prefect_harness, tiny_cfg
):
    from flows.training import train_flow
    from lstm_pipeline.features import rows_needed
    from tests.synthetic import make_prices

    folder = Path(tiny_cfg.data.data_dir or "")
    make_prices(rows_needed(tiny_cfg.features)).to_csv(folder / "CCC.csv", index=False)
    data_cfg = tiny_cfg.data.model_copy(update={"tickers": ("CCC",)})
    result = train_flow(tiny_cfg.model_copy(update={"data": data_cfg}))
    assert result["model_version"] and result["metrics"]["test_windows"] == 2


def test_too_few_good_tickers_fail_the_flow_before_any_run_is_logged(prefect_harness, tiny_cfg):
    from flows.training import train_flow
    from lstm_pipeline.errors import InputError

    break_bbb(tiny_cfg)
    cfg = tiny_cfg.model_copy(update={"data": tiny_cfg.data.model_copy(update={"min_tickers": 2})})
    with pytest.raises(InputError, match=r"training needs 2 usable ticker\(s\), got 1: BBB: file"):
        train_flow(cfg)
    client = MlflowClient(tiny_cfg.tracking.tracking_uri)
    assert client.get_experiment_by_name("lstm-forecaster") is None


def test_forecast_flow_forecasts_the_good_tickers_and_lists_the_bad(
    prefect_harness, tiny_cfg, tiny_onnx, tmp_path
):
    from flows.inference import forecast_flow

    break_bbb(tiny_cfg)
    output = tmp_path / "f.csv"
    result = forecast_flow(tiny_cfg.data, str(tiny_onnx[0]), str(output))
    assert list(result["failed"]) == ["BBB"] and result["failed"]["BBB"]["bad_input"]
    assert set(pd.read_csv(output)["ticker"]) == {"AAA"} and result["rows"] == 3


def test_fetch_flow_caches_the_good_ticker_and_lists_the_unknown_one(
    prefect_harness, fake_yahoo, tmp_path
):
    from flows.fetching import fetch_flow
    from lstm_pipeline.config import DataConfig
    from tests.fake_yahoo import yahoo_frame

    fake_yahoo.history["GOOD"] = yahoo_frame(50)
    cfg = DataConfig(tickers=("GOOD", "NOPE"), source="yfinance", cache_dir=str(tmp_path))
    result = fetch_flow(cfg)
    assert result["tickers"]["GOOD"]["rows"] == 50
    assert (tmp_path / "1d" / "GOOD.parquet").is_file()
    assert not (tmp_path / "1d" / "NOPE.parquet").exists()
    assert result["failed"]["NOPE"]["bad_input"] is True
    assert result["failed"]["NOPE"]["error"].startswith("NOPE: yfinance returned no 1d bars")


def test_forecast_flow_takes_a_plain_onnx_file(prefect_harness, tiny_cfg, tiny_onnx, tmp_path):
    from flows.inference import forecast_flow

    path, _ = tiny_onnx
    output = tmp_path / "f.csv"
    result = forecast_flow(tiny_cfg.data, str(path), str(output), tiny_cfg.tracking.tracking_uri)
    table = pd.read_csv(output)
    assert result["model_version"] == "file" and len(table) == 6
    assert (table["model_version"] == "file").all()


def test_backtest_flow_logs_a_parent_run_with_one_nested_run_per_fold(prefect_harness, tiny_cfg):
    from flows.backtest import backtest_flow

    result = backtest_flow(tiny_cfg, folds=2, fold_days=30)
    client = MlflowClient(tiny_cfg.tracking.tracking_uri)
    parent = client.get_run(result["run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["trigger"] == "backtest"
    assert parent.data.tags[OWNER_TAG] == f"{socket.gethostname()}:{os.getpid()}"  # this flow's
    for key in ("test_mase", "naive_test_mae", "test_dm_stat_h1", "test_dm_pvalue_h3"):
        assert key in parent.data.metrics
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result['run_id']}'"
    )
    assert sorted(r.data.params["fold"] for r in children) == ["0", "1"]
    assert all("test_mase" in r.data.metrics for r in children)
    scores = pd.read_csv(client.download_artifacts(result["run_id"], "backtest/scores.csv"))
    assert set(scores["ticker"]) == {"AAA", "BBB", "ALL"} and set(scores["horizon"]) == {1, 2, 3}
    assert "DM stat" in result["table"]


def test_tune_flow_runs_trials_as_tasks_and_writes_a_usable_config(
    prefect_harness, tiny_cfg, tmp_path
):
    from flows.tuning import tune_flow
    from lstm_pipeline.config import build_config

    output = tmp_path / "tuned.yaml"
    result = tune_flow(tiny_cfg, trials=3, parallel=2, output=str(output))
    assert [t["number"] for t in result["trials"]] == [0, 1, 2]
    completed = [t["val_mase"] for t in result["trials"] if t["state"] == "COMPLETE"]
    assert result["best_val_mase"] == min(completed)
    best = build_config(output)
    assert best.flat()["features.window"] == result["best_params"]["features.window"]
    client = MlflowClient(tiny_cfg.tracking.tracking_uri)
    children = client.search_runs(
        [client.get_experiment_by_name("lstm-forecaster").experiment_id],
        f"tags.mlflow.parentRunId = '{result['run_id']}'",
    )
    assert len(children) == 3 and {r.data.tags["trigger"] for r in children} == {"tune"}
    parent = client.get_run(result["run_id"])
    assert parent.data.metrics["best_val_mase"] == pytest.approx(result["best_val_mase"])
    assert parent.data.tags[OWNER_TAG] == f"{socket.gethostname()}:{os.getpid()}"
