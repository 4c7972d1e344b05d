"""The whole cycle through the CLI against a real `mlflow server` on a free loopback port:
train -> gate -> forecast with the champion -> train again -> promote / rollback by hand."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import LEARNABLE_CONFIG, ROOT, run_cli
from tests.integration.processes import MLFLOW, free_port, serving

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clis_on_prefect_server")]


def server_args(port: int, folder: Path, proxied: bool) -> list[str]:
    """`make mlflow-server`'s command (plain artifact files beside the sqlite store), or the
    team layout of mlflow/README.md, where the server proxies an artifact destination."""
    store = ["--backend-store-uri", f"sqlite:///{folder}/mlflow/mlflow.db"]
    if proxied:
        artifacts = ["--artifacts-destination", str(folder / "server-artifacts")]
    else:
        artifacts = ["--default-artifact-root", str(folder / "mlflow/artifacts")]
        artifacts.append("--no-serve-artifacts")
    network = ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    return [MLFLOW, "server", *network, *store, *artifacts]


@contextmanager
def running_server(folder: Path, proxied: bool = False) -> Iterator[str]:
    """A real `mlflow server` with its store in `folder`, on a free port; yields its URL."""
    port = free_port()
    (folder / "mlflow").mkdir(parents=True)
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    url = f"http://127.0.0.1:{port}"
    with serving(server_args(port, folder, proxied), f"{url}/health", folder / "server.log", env):
        yield url


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    return tmp_path / "server"


@pytest.fixture
def mlflow_server(server_dir: Path) -> Iterator[str]:
    """The server `make mlflow-server` starts, over a temporary store."""
    with running_server(server_dir) as url:
        yield url


def last_json(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_train_gate_forecast_promote_rollback_against_a_real_tracking_server(
    mlflow_server, server_dir, tmp_path, learnable_csv_dir
):
    server = ["--tracking-uri", mlflow_server, "--json"]
    data = ["--source", "csv", "--data-dir", str(learnable_csv_dir), "--tickers", "AAA", "BBB"]
    learnable = tmp_path / "learnable.yaml"
    learnable.write_text(LEARNABLE_CONFIG)

    first = last_json(run_cli("train", *data, "--config", str(learnable), *server, cwd=tmp_path))
    for key in ("test_mae", "test_mase", "naive_test_mae", "test_directional_accuracy"):
        assert isinstance(first["metrics"][key], int | float), key
    assert first["metrics"]["val_mase"] < 0.8  # the pattern is learnt, so the gate must pass
    assert first["promoted"] and first["alias"] == "champion"
    assert "no previous champion" in first["reason"]

    client = MlflowClient(mlflow_server)
    run = client.get_run(first["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith(str(server_dir / "mlflow/artifacts"))
    assert (Path(run.info.artifact_uri) / "model_card.md").is_file()
    assert not (tmp_path / "mlflow").exists()  # nothing fell back to the client's own store

    # the default model URI: models:/lstm-forecaster@champion, resolved through the server
    output = tmp_path / "f.csv"
    forecast = run_cli("forecast", *data, "--output", str(output), *server, cwd=tmp_path)
    summary = last_json(forecast)
    assert summary["model_uri"] == "models:/lstm-forecaster@champion"
    assert summary["model_version"] == first["model_version"] == "1"
    assert summary["rows"] == 6 and summary["run_id"] == first["run_id"]
    header = "ticker,as_of,horizon,target_date,forecast,lower_95,lower_80,upper_80,upper_95"
    assert output.read_text().startswith(header + ",last_close,model_version,run_id")

    # two epochs at a small learning rate learn nothing: judged against v1, it stays challenger
    smoke = str(ROOT / "flows/configs/smoke.yaml")
    second = last_json(run_cli("train", *data, "--config", smoke, *server, cwd=tmp_path))
    assert not second["promoted"] and second["alias"] == "challenger"
    tags = client.get_model_version("lstm-forecaster", second["model_version"]).tags
    assert tags["gate.champion_version"] == "1"
    assert float(tags["gate.champion_val_mase"]) == pytest.approx(
        first["metrics"]["val_mase"],
        rel=1e-4,  # the champion scored on the same windows
    )
    assert float(tags["gate.new_val_mase"]) == pytest.approx(second["metrics"]["val_mase"])

    promoted = last_json(
        run_cli("promote", "2", "--reason", "try the new one", *server, cwd=tmp_path)
    )
    assert (promoted["champion"], promoted["previous_champion"]) == ("2", "1")
    assert champion_of(client).tags["champion_reason"] == "try the new one"
    rolled = last_json(run_cli("rollback", "--reason", "worse live", *server, cwd=tmp_path))
    assert (rolled["champion"], rolled["previous_champion"]) == ("1", "2")
    assert str(champion_of(client).version) == "1"
    assert client.get_model_version("lstm-forecaster", "2").tags["rolled_back_reason"] == (
        "worse live"
    )

    missing = run_cli("promote", "99", *server, cwd=tmp_path)
    assert missing.returncode == 2 and "has no version 99" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    nothing_left = run_cli("rollback", *server, cwd=tmp_path)
    assert nothing_left.returncode == 2 and "has no previous champion" in nothing_left.stderr


def champion_of(client: MlflowClient):
    return client.get_model_version_by_alias("lstm-forecaster", "champion")


def test_train_and_forecast_through_a_server_that_proxies_artifacts(tmp_path, csv_dir):
    """The team layout: clients reach artifacts only through the server."""
    server_dir = tmp_path / "server"
    data = ["--source", "csv", "--data-dir", str(csv_dir), "--tickers", "AAA", "BBB"]
    smoke = str(ROOT / "flows/configs/smoke.yaml")
    with running_server(server_dir, proxied=True) as url:
        server = ["--tracking-uri", url, "--json"]
        trained = last_json(run_cli("train", *data, "--config", smoke, *server, cwd=tmp_path))
        run = MlflowClient(url).get_run(trained["run_id"])
        version = f"models:/lstm-forecaster/{trained['model_version']}"
        forecast = run_cli("forecast", *data, "--model-uri", version, *server, cwd=tmp_path)
        assert last_json(forecast)["run_id"] == trained["run_id"]
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
    assert list((server_dir / "server-artifacts").rglob("model_card.md"))
    assert not (tmp_path / "mlflow").exists()
