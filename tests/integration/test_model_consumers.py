"""The registered model as other systems use it: mlflow's pyfunc without this project, and
`mlflow models serve` over HTTP. Both must give the batch forecast's prices, and a quantile
model's quantiles beside them."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

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
outputs = {name: out.tolist() for name, out in model.predict(np.load(sys.argv[3])).items()}
declared = {spec.name: list(spec.shape) for spec in model.metadata.get_output_schema().inputs}
print(json.dumps({"outputs": outputs, "signature": declared}))
"""


def raw_windows(n: int = 5, window: int = 10) -> np.ndarray:
    """[n, window, F] float32 raw OHLCV windows, as a consumer would send them."""
    frame = make_prices(window + n, seed=3)[list(FEATURES)].to_numpy(np.float32)
    return np.stack([frame[i : i + window] for i in range(n)])


@pytest.fixture(params=["point", "quantile"])
def model(request) -> tuple[Path, np.ndarray]:
    """The tiny point model (an older champion: `forecast` alone), then the tiny quantile model
    (`forecast` and `quantiles`)."""
    return request.getfixturevalue(
        "tiny_onnx" if request.param == "point" else "tiny_quantile_onnx"
    )


@pytest.fixture
def champion(tracking_uri, model):
    """A registry whose champion is `model`; yields its tracking URI."""
    _, version = register(Store.open(tracking_uri), model)
    MlflowClient(tracking_uri).set_registered_model_alias("lstm-forecaster", "champion", version)
    return tracking_uri


def batch_outputs(model_path: Path, windows: np.ndarray) -> dict[str, np.ndarray]:
    """What the batch forecast's OnnxForecaster gives for `windows`, by output name."""
    forecast, quantiles = OnnxForecaster(model_path).predict_quantiles(windows)
    return {"forecast": forecast} | ({} if quantiles is None else {"quantiles": quantiles})


def assert_same_outputs(got: dict[str, list], expected: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(np.array(got[name]), values, rtol=1e-6)


def test_pyfunc_forecasts_prices_without_torch_or_project_code(champion, model, tmp_path):
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
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = batch_outputs(model[0], windows)
    assert np.array(answer["outputs"]["forecast"]).shape == (5, 3)
    assert_same_outputs(answer["outputs"], expected)
    # the registered signature declares each output: [batch, H] prices, and [batch, H, Q]
    assert answer["signature"] == {n: [-1, *v.shape[1:]] for n, v in expected.items()}


def test_model_server_answers_with_the_batch_forecast(champion, model, tmp_path):
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
    assert_same_outputs(answer["predictions"], batch_outputs(model[0], windows))
