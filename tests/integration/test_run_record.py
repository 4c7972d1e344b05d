"""What a training run leaves in MLflow: enough to compare, reproduce and trust it; and what a
failed run leaves: a FAILED run with its reason, and nothing in the registry."""

import csv
import io
import json

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from lstm_pipeline import __version__, provenance, registry
from lstm_pipeline.config import PipelineConfig, build_config
from lstm_pipeline.tracking import Store

pytestmark = pytest.mark.slow
MODEL = "lstm-forecaster"


def with_changes(cfg: PipelineConfig, **sections: dict) -> PipelineConfig:
    tree = cfg.model_dump()
    for section, values in sections.items():
        tree[section].update(values)
    return PipelineConfig.model_validate(tree)


def test_a_run_records_config_provenance_epochs_scores_and_artifacts(
    prefect_harness, tiny_cfg, tmp_path
):
    from flows.training import train_flow

    cfg = with_changes(tiny_cfg, tracking={"trigger": "schedule"})
    result = train_flow(cfg)
    client = MlflowClient(cfg.tracking.tracking_uri)
    run = client.get_run(result["run_id"])
    tags, params = run.data.tags, run.data.params

    assert params == {k: str(v) for k, v in cfg.flat().items()}
    assert {k: tags[k] for k in ("git.commit", "git.dirty")} == provenance.git_state()
    assert tags["lstm_pipeline.version"] == __version__
    assert (tags["trigger"], tags["device"]) == ("schedule", "cpu")
    assert run.info.run_name.startswith("schedule-AAA+BBB-w10h3-")
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # UI: runs

    epochs = result["metrics"]["stopped_epoch"]
    history = {
        name: client.get_metric_history(run.info.run_id, name)
        for name in ("train_loss", "val_loss", "lr", "epoch_seconds")
    }
    for name, points in history.items():
        assert [p.step for p in points] == list(range(1, epochs + 1)), name
    assert {p.value for p in history["lr"]} == {cfg.train.lr}
    assert all(p.value > 0 for p in history["epoch_seconds"])

    mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, dst_path=str(tmp_path), tracking_uri=cfg.tracking.tracking_uri
    )
    plots = {p.name for p in (tmp_path / "plots").iterdir()}
    assert plots == {
        "loss_curve.png",
        "actual_vs_forecast.png",
        "actual_vs_forecast_last120.png",
        "residuals.png",
        "fan_chart_last120.png",
        "reliability.png",
    }
    calibration = json.loads((tmp_path / "calibration.json").read_text())
    assert calibration["windows"] == result["metrics"]["calib_windows"] > 0
    assert len(calibration["scales_by_horizon"]) == cfg.features.horizon
    config_file = tmp_path / "config.yaml"
    assert build_config(config_file) == cfg  # the logged config reproduces the run
    assert yaml.safe_load(config_file.read_text())["tracking"]["trigger"] == "schedule"

    table = list(
        csv.DictReader(io.StringIO((tmp_path / "metrics/test_by_ticker_horizon.csv").read_text()))
    )
    assert [(r["ticker"], r["horizon"]) for r in table] == [
        (t, str(h)) for t in ("AAA", "BBB", "ALL") for h in (1, 2, 3)
    ]
    for row in (r for r in table if r["ticker"] == "ALL"):
        mase = run.data.metrics[f"test_mase_h{row['horizon']}"]
        assert float(row["mase"]) == pytest.approx(mase, rel=1e-5)
        coverage = run.data.metrics[f"test_coverage_80_h{row['horizon']}"]
        assert float(row["coverage_80"]) == pytest.approx(coverage, rel=1e-5)

    by_ticker = list(
        csv.DictReader(io.StringIO((tmp_path / "metrics/test_by_ticker.csv").read_text()))
    )
    assert [r["ticker"] for r in by_ticker] == ["AAA", "BBB"]  # one row per ticker
    windows = sum(int(r["windows"]) for r in by_ticker)
    assert windows == result["metrics"]["test_windows"]
    mae = sum(float(r["mae"]) * int(r["windows"]) for r in by_ticker) / windows
    assert mae == pytest.approx(run.data.metrics["test_mae"], rel=1e-5)
    assert {"mase", "naive_mae", "coverage_80", "crpss_rw"} <= set(by_ticker[0])

    card = (tmp_path / "model_card.md").read_text()
    assert f"| test | {result['metrics']['test_mae']:.4f} |" in card
    for section in ("## Data", "## Model and config", "## Limitations"):
        assert section in card
    version = client.get_model_version(MODEL, result["model_version"])
    assert version.description == card
    assert version.tags["gate.decision"] == tags["gate.decision"] == result["alias"]
    assert version.tags["promotion"] == tags["promotion"] == result["reason"]


def test_the_registered_model_has_a_signature_and_an_example_of_batch_two_or_more(
    prefect_harness, tiny_cfg
):
    from flows.training import train_flow

    result = train_flow(tiny_cfg)
    mlflow.set_tracking_uri(tiny_cfg.tracking.tracking_uri)
    uri = f"models:/{MODEL}/{result['model_version']}"
    info = mlflow.models.get_model_info(uri)
    assert info.signature.inputs.inputs[0].shape == (-1, 10, 5)
    outputs = {o.name: o.shape for o in info.signature.outputs.inputs}
    quantiles = len(tiny_cfg.model.quantiles)
    assert outputs == {"forecast": (-1, 3), "quantiles": (-1, 3, quantiles)}
    example = mlflow.models.Model.load(uri).load_input_example(
        mlflow.artifacts.download_artifacts(uri)
    )
    assert example.shape[0] >= 2 and example.shape[1:] == (10, 5)


def test_a_diverging_run_stops_at_once_fails_and_registers_nothing(prefect_harness, tiny_cfg):
    from flows.training import train_flow
    from lstm_pipeline.errors import TrainingDivergedError

    # Adam's first step makes a point model's weights NaN (MSE overflows)
    absurd = with_changes(tiny_cfg, train={"lr": 1e30}, model={"quantiles": ()})
    with pytest.raises(TrainingDivergedError, match="loss became nan"):
        train_flow(absurd)
    client = MlflowClient(tiny_cfg.tracking.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(MODEL).experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"].startswith("TrainingDivergedError: loss became nan")
    assert client.get_metric_history(run.info.run_id, "train_loss") == []  # not one epoch more
    assert client.search_registered_models() == []
    assert client.list_artifacts(run.info.run_id) == []


def test_a_quantile_model_whose_prices_blow_up_fails_before_any_artifact_or_version(
    prefect_harness, tiny_cfg
):
    """The pinball loss grows linearly: weights of 1e30 keep it finite, not the prices."""
    from flows.training import train_flow
    from lstm_pipeline.errors import TrainingDivergedError

    absurd = with_changes(tiny_cfg, train={"lr": 1e30})
    with pytest.raises(TrainingDivergedError, match="forecasts are not finite prices"):
        train_flow(absurd)
    client = MlflowClient(tiny_cfg.tracking.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(MODEL).experiment_id])
    assert run.info.status == "FAILED"
    assert "forecasts are not finite prices" in run.data.tags["failure_reason"]
    assert client.search_registered_models() == []
    assert client.list_artifacts(run.info.run_id) == []


def test_a_failure_while_registering_removes_the_version_and_keeps_the_champion(
    prefect_harness, tiny_cfg, monkeypatch
):
    from flows.training import train_flow

    first = train_flow(tiny_cfg)
    store = Store.open(tiny_cfg.tracking.tracking_uri)
    registry.promote(store, MODEL, first["model_version"], "baseline")

    def broken(*args, **kwargs):
        raise RuntimeError("registry went away")

    monkeypatch.setattr(registry, "_apply", broken)
    with pytest.raises(RuntimeError, match="registry went away"):
        train_flow(tiny_cfg)
    client = MlflowClient(tiny_cfg.tracking.tracking_uri)
    failed = client.search_runs(
        [client.get_experiment_by_name(MODEL).experiment_id], "attributes.status = 'FAILED'"
    )
    assert [r.data.tags["failure_reason"] for r in failed] == ["RuntimeError: registry went away"]
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert [str(v.version) for v in versions] == [first["model_version"]]
    holder = client.get_model_version_by_alias(MODEL, "champion")
    assert str(holder.version) == first["model_version"]


def test_the_gate_scores_the_champion_on_the_new_runs_validation_windows(prefect_harness, tiny_cfg):
    from flows.training import train_flow

    uri = tiny_cfg.tracking.tracking_uri
    first = train_flow(tiny_cfg)
    registry.promote(Store.open(uri), MODEL, first["model_version"], "a champion to beat")
    client = MlflowClient(uri)

    # the same config, data and seed give the same model: both must score the same
    again = train_flow(tiny_cfg)
    tags = client.get_run(again["run_id"]).data.tags
    assert tags["gate.champion_version"] == first["model_version"]
    assert tags["gate.new_val_mase"] == tags["gate.champion_val_mase"]
    assert int(tags["gate.windows"]) == again["metrics"]["val_windows"]
    assert again["promoted"] is (again["metrics"]["val_mase"] <= 1.0)

    # a shorter window: both models get the trailing part of the champion's 10-day windows,
    # so each ticker loses the first 2 of its validation windows; a margin of 0.5 is unmet
    shorter = with_changes(tiny_cfg, features={"window": 8}, tracking={"promotion_margin": 0.5})
    third = train_flow(shorter)
    tags = client.get_run(third["run_id"]).data.tags
    assert int(tags["gate.windows"]) == third["metrics"]["val_windows"] - 2 * 2
    assert tags["gate.margin"] == "0.5" and tags["gate.horizons"] == "3"
    assert not third["promoted"] and "needs <= 0.5000" in third["reason"]
    assert (
        str(client.get_model_version_by_alias(MODEL, "champion").version) == first["model_version"]
    )


def test_a_run_tags_the_precision_it_trained_in(prefect_harness, tiny_cfg):
    """From hidden size CPU_BF16_MIN_HIDDEN up, `auto` trains in bf16 on a CPU with native
    bf16 (this machine's own capability query decides) and says so in the run's tags."""
    from flows.training import train_flow
    from lstm_pipeline.runtime import CPU_BF16_MIN_HIDDEN, cpu_has_native_bf16

    cfg = with_changes(
        tiny_cfg,
        model={"hidden_size": CPU_BF16_MIN_HIDDEN},
        train={"device": "cpu", "max_epochs": 1},
    )
    result = train_flow(cfg)
    tags = MlflowClient(cfg.tracking.tracking_uri).get_run(result["run_id"]).data.tags
    assert tags["precision"] == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert tags["device"] == "cpu"
