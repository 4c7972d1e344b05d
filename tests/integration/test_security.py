"""Security: servers bind loopback unless told otherwise, and credentials in a tracking URI
never reach output, MLflow or Prefect's records. (What the Makefile and the code say about
binding: tests/unit/test_loopback.py; no unpickling on the forecast path: test_cli.py; tickers
never reaching a path: test_validate.py and test_bad_inputs.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote
from urllib.request import urlopen

import psutil
import pytest
import yaml

from tests.conftest import ROOT, run_cli
from tests.integration.processes import free_port, serving
from tests.integration.test_mlflow_server import running_server
from tests.unit.test_loopback import make_recipe

pytestmark = pytest.mark.slow
LOOPBACK = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as the kernel lists them) of sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_make_mlflow_server_really_listens_on_loopback_only(tmp_path):
    port = free_port()
    recipe = make_recipe("mlflow-server", MLFLOW_PORT=str(port))
    script = tmp_path / "recipe.sh"
    script.write_text(f"set -e\n{recipe}")  # run where the store may be created: tmp_path
    url = f"http://127.0.0.1:{port}"
    with serving(["bash", str(script)], f"{url}/health", tmp_path / "server.log", {}):
        assert listening_addresses(port) == {LOOPBACK}


def test_make_prefect_server_on_another_port_serves_a_ui_that_calls_that_port(tmp_path):
    port = free_port()
    script = tmp_path / "recipe.sh"
    script.write_text(f"set -e\n{make_recipe('prefect-server', PREFECT_PORT=str(port))}")
    url = f"http://127.0.0.1:{port}"
    env = {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": ""}
    with serving(["bash", str(script)], f"{url}/api/health", tmp_path / "server.log", env):
        settings = json.loads(urlopen(f"{url}/ui-settings", timeout=10).read())
        assert settings["api_url"] == f"{url}/api"
        assert listening_addresses(port) == {LOOPBACK}


def listening_sockets(root: psutil.Process) -> set[tuple[int, str, int]]:
    """(pid, address, port) of every listening TCP socket of `root` and its descendants."""
    found = set()
    for process in [root, *root.children(recursive=True)]:
        for conn in process.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.add((process.pid, conn.laddr.ip, conn.laddr.port))
    return found


def test_the_local_dask_cluster_listens_on_loopback_only():
    """`--task-runner dask` without an address: scheduler, nannies, workers and the dashboard
    (Dask's default: every interface, port 8787) all bind 127.0.0.1."""
    from flows.runners import task_runner

    me = psutil.Process()
    before = listening_sockets(me)
    with task_runner("dask") as runner:
        assert runner.client.scheduler_info()["workers"]  # the cluster is up
        started = listening_sockets(me) - before
    assert len({pid for pid, _, _ in started}) >= 2, started  # this process and its workers
    assert {address for _, address, _ in started} == {"127.0.0.1"}, started


SECRET = "s3cret-token"
SPACED_SECRET = "SEK RITH/s3cret"  # a space: the user part is not cut at whitespace


def test_credentials_in_the_tracking_uri_reach_no_output_run_record_or_prefect_state(
    tmp_path, csv_dir
):
    """Train and forecast through a real server with `user:pass word@` in the URI, and forecast
    again with a token-only `token@` URI, then look for the secret in everything written:
    output, the MLflow store (params, tags, artifacts, model card, config.yaml) and Prefect's
    database and logs."""
    prefect_home = tmp_path / "prefect-home"
    env = {"PREFECT_HOME": str(prefect_home)}
    data = ["--source", "csv", "--data-dir", str(csv_dir), "--tickers", "AAA", "BBB"]
    smoke = str(ROOT / "flows/configs/smoke.yaml")
    with running_server(tmp_path / "server") as url:
        secret_uri = url.replace("http://", f"http://alice:{SPACED_SECRET}@")
        server = ["--tracking-uri", secret_uri]
        # a token-only URI cannot move to MLflow's user/password variables: the whole URI does
        token_server = ["--tracking-uri", url.replace("http://", f"http://{SECRET}@")]
        version_1 = ["--model-uri", "models:/lstm-forecaster/1"]  # smoke may stay challenger
        runs = [
            run_cli("train", *data, "--config", smoke, *server, "--json", cwd=tmp_path, env=env),
            run_cli("forecast", *data, *version_1, *server, "--json", cwd=tmp_path, env=env),
            run_cli(
                "forecast",
                *data,
                *version_1,
                *token_server,
                "--output",
                "token.csv",
                cwd=tmp_path,
                env=env,
            ),
        ]
        for proc in runs:
            assert proc.returncode == 0, proc.stderr
            assert SECRET not in proc.stdout + proc.stderr
            assert SPACED_SECRET not in proc.stdout + proc.stderr
        from mlflow.tracking import MlflowClient

        run = MlflowClient(url).search_runs(["1"])[0]
        # the CLI moved the credentials into MLflow's variables: the flows only saw the clean URI
        assert run.data.params["tracking.tracking_uri"] == url
    leaks = [
        path
        for folder in (tmp_path / "server", prefect_home, tmp_path)
        for path in folder.rglob("*")
        if path.is_file()
        for secret in (SECRET, SPACED_SECRET, quote(SPACED_SECRET, safe=""))
        if secret.encode() in path.read_bytes()
    ]
    assert not leaks, leaks


FILE_SECRET = "f1le/s3 cr@t"  # raw '/', ' ' and '@': the user part runs to the URI's last '@'
ENV_SECRET = "env-s3cret"
OPTUNA_SECRET = "0ptuna-s3cret"  # under `?pw=`: any usual spelling of a secret's key


def prefect_records() -> str:
    """Every flow run's parameters, every task run and every log line the session's Prefect
    server holds, as one text."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
        records = [run.model_dump_json() for run in runs]
        records += [task.model_dump_json() for task in client.read_task_runs(limit=200)]
        records += [line.message for line in client.read_logs(limit=200)]
    assert any(run.parameters for run in runs)
    return "\n".join(records)


def mlflow_records(url: str) -> str:
    """Every run's params and tags and every model version's tags in the store at `url`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    versions = client.search_model_versions()
    assert runs and versions
    return repr([(r.data.params, r.data.tags) for r in runs] + [v.tags for v in versions])


def test_secrets_given_by_config_file_environment_or_optuna_storage_reach_nothing(
    tmp_path, csv_dir, clis_on_prefect_server
):
    """A tracking URI with a password (holding a space) in a --config file, in
    MLFLOW_TRACKING_URI, and an Optuna storage URL with a `?pw=` secret: the secret is in no
    output, no Prefect flow-run parameter, task run or log, no MLflow param or tag, and no file
    written."""
    data = ["--source", "csv", "--data-dir", str(csv_dir), "--tickers", "AAA", "BBB"]
    smoke = yaml.safe_load((ROOT / "flows/configs/smoke.yaml").read_text())
    with running_server(tmp_path / "server") as url:
        config = tmp_path / "secret.yaml"
        secret_uri = url.replace("http://", f"http://alice:{FILE_SECRET}@")
        config.write_text(yaml.safe_dump({**smoke, "tracking": {"tracking_uri": secret_uri}}))
        env_uri = url.replace("http://", f"http://bob:{ENV_SECRET}@")
        storage = f"sqlite:///{tmp_path}/optuna.db?pw={OPTUNA_SECRET}"
        runs = [
            run_cli("train", *data, "--config", str(config), "--json", cwd=tmp_path),
            run_cli(
                "forecast",
                *data,
                *("--model-uri", "models:/lstm-forecaster/1"),
                cwd=tmp_path,
                env={"MLFLOW_TRACKING_URI": env_uri},
            ),
            run_cli(
                "tune",
                *data,
                *("--config", str(config), "--trials", "1", "--optuna-storage", storage),
                cwd=tmp_path,
            ),
        ]
        for proc in runs:
            assert proc.returncode == 0, proc.stderr
        records = [proc.stdout + proc.stderr for proc in runs]
        records += [prefect_records(), mlflow_records(url)]
    secrets = (FILE_SECRET, quote(FILE_SECRET, safe=""), ENV_SECRET, OPTUNA_SECRET)
    for record in records:
        assert not [s for s in secrets if s in record], record
    written = [p for folder in (tmp_path / "server", tmp_path) for p in folder.rglob("*")]
    leaks = [
        (path, secret)
        for path in written
        if path.is_file() and path != config
        for secret in secrets
        if secret.encode() in path.read_bytes()
    ]
    assert not leaks, leaks
