"""The registered model as other systems use it: mlflow's pyfunc without this project, and
`mlflow models serve` over HTTP. Both must give the batch forecast's prices."""

import json
import os
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from lstm_pipeline.data import FEATURES
from lstm_pipeline.predict import OnnxForecaster
from lstm_pipeline.tracking import Store
from tests.conftest import make_prices
from tests.integration.processes import MLFLOW, free_port, serving
from tests.unit.test_registry import register

pytestmark = pytest.mark.slow
CHAMPION_URI = "models:/lstm-forecaster@champion"

# Runs in a fresh interpreter, outside the repository, with torch and the project unimportable.
STANDALONE = """
import sys
for name in ("torch", "lstm_pipeline", "flows"):
    sys.modules[name] = None  # any import of these now fails
import json
import mlflow
import numpy as np
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
print(json.dumps(model.predict(np.load(sys.argv[3]))["forecast"].tolist()))
"""


def raw_windows(n: int = 5, window: int = 10) -> np.ndarray:
    """[n, window, F] float32 raw OHLCV windows, as a consumer would send them."""
    frame = make_prices(window + n, seed=3)[list(FEATURES)].to_numpy(np.float32)
    return np.stack([frame[i : i + window] for i in range(n)])


@pytest.fixture
def champion(tracking_uri, tiny_onnx):
    """A registry whose champion is the tiny model; yields its tracking URI."""
    _, version = register(Store.open(tracking_uri), tiny_onnx)
    MlflowClient(tracking_uri).set_registered_model_alias("lstm-forecaster", "champion", version)
    return tracking_uri


def test_pyfunc_forecasts_prices_without_torch_or_project_code(champion, tiny_onnx, tmp_path):
    windows = raw_windows()
    np.save(tmp_path / "windows.npy", windows)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", STANDALONE, champion, CHAMPION_URI, str(tmp_path / "windows.npy")],
        cwd=tmp_path,  # outside the repository: the project is not on the path
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.array(json.loads(proc.stdout.strip().splitlines()[-1]))
    expected = OnnxForecaster(tiny_onnx[0]).predict(windows)
    assert got.shape == (5, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_model_server_answers_with_the_batch_forecast(champion, tiny_onnx, tmp_path):
    port = free_port()
    args = [MLFLOW, "models", "serve", "-m", CHAMPION_URI, "--env-manager", "local"]
    args += ["--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    windows = raw_windows()
    with serving(args, f"{url}/ping", tmp_path / "serve.log", {"MLFLOW_TRACKING_URI": champion}):
        request = urllib.request.Request(
            f"{url}/invocations",
            data=json.dumps({"inputs": windows.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    got = np.array(answer["predictions"]["forecast"])
    np.testing.assert_allclose(got, OnnxForecaster(tiny_onnx[0]).predict(windows), rtol=1e-6)
