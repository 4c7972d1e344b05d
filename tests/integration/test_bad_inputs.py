"""Bad inputs through the real CLI, the README's "Bad inputs" table: each one exits 2 (bad
input) or 1 (the tracking server is down) with exactly one line on stderr, no traceback, and
changes nothing on disk. All cases run in one interpreter (tests/integration/cli_batch.py), each in
its own working directory, so Prefect starts once."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from lstm_pipeline.config import DEFAULT_QUANTILES
from lstm_pipeline.tracking import Store
from tests.conftest import alter_metadata, cli_env, export_tiny_model
from tests.integration.processes import closed_port
from tests.unit.test_validate import BAD, ERRORS

pytestmark = pytest.mark.slow

ABSENT_DEVICE = "cuda" if sys.platform == "darwin" else "mps"  # mps exists on Macs only
CLOSED_PORT = closed_port()  # nothing listens there, ever
TINY = "{inputs}/tiny.yaml"
SAMPLE = ["--source", "sample", "--tickers", "AAPL"]
CSV = ["--source", "csv", "--data-dir", "{inputs}/prices", "--tickers", "AAA", "--config", TINY]

# YAML files written into the inputs folder: name -> text
CONFIGS: dict[str, str | bytes] = {
    "tiny.yaml": "features: {window: 10, horizon: 3}\ntrain: {max_epochs: 1}\n",
    "window.yaml": "features: {window: -5}\n",
    "horizon.yaml": "features: {horizon: 0}\n",
    "unknown-key.yaml": "train: {epochs: 3}\n",
    "unknown-section.yaml": "optimizer: {lr: 0.1}\n",
    "wrong-type.yaml": "train: {max_epochs: many}\n",
    "not-yaml.yaml": "train: [1, 2\n",
    "list.yaml": "- train\n",
    "model-name.yaml": "tracking: {model_name: 'a/b'}\n",
    "calendar.yaml": "data: {calendars: {AAPL: NOPE}}\n",
    "latin1.yaml": b"train: {max_epochs: 1}\n# caf\xe9\n",
    "data-dir-list.yaml": "data: {data_dir: [a, b]}\n",
    "inf-lr.yaml": "train: {lr: .inf}\n",
    "nan-delay.yaml": "data: {retry_base_delay: .nan}\n",
}
# local file stores that do not exist, as a path, a file: URI and relative to the case's folder
FILE_STORES = {
    "path": "{inputs}/nonexist/mlruns",
    "file-uri": "file://{inputs}/nonexist",
    "relative": "./relstore",
}
# ONNX files: the tiny model with its metadata changed -> the changes
ALTERED_MODELS = {
    "reordered.onnx": {"features": '["Close", "Open", "High", "Low", "Volume"]'},
    "other-features.onnx": {"features": '["Open", "High", "Low", "Adj Close", "Volume"]'},
    "features-not-json.onnx": {"features": "{bad"},
    "window-not-int.onnx": {"window": "1.5"},
}
# ONNX files: the tiny quantile model (9 levels) with its quantile_levels changed -> the levels
ALTERED_LEVELS = {
    "levels-not-json.onnx": "[0.1, 0.5",
    "levels-asymmetric.onnx": "[0.025, 0.1, 0.5, 0.9]",
    "levels-too-few.onnx": "[0.025, 0.1, 0.5, 0.9, 0.975]",  # well formed, but 9 in the graph
}

# case id -> (arguments, exit code, what the one stderr line says)
CASES: dict[str, tuple[list[str], int, str]] = {
    **{
        f"data-{ticker}": (
            ["train", "--source", "csv", "--data-dir", str(BAD), "--tickers", ticker],
            2,
            f"{ticker}: file {BAD}/{ticker}.csv{ERRORS[ticker]}",
        )
        for ticker in sorted(ERRORS)
    },
    "data-SHORT": (
        [
            "train",
            "--source",
            "csv",
            "--data-dir",
            str(BAD),
            "--tickers",
            "SHORT",
            "--config",
            TINY,
        ],
        2,
        f"SHORT: file {BAD}/SHORT.csv: 12 rows from 2020-01-01 to 2020-01-16, but 56 are needed",
    ),
    "max-epochs-negative": (
        ["train", *SAMPLE, "--max-epochs", "-5"],
        2,
        "invalid train.max_epochs: Input should be greater than or equal to 1",
    ),
    "window-negative": (
        ["train", *SAMPLE, "--config", "{inputs}/window.yaml"],
        2,
        "invalid features.window (config {inputs}/window.yaml): Input should be greater than or "
        "equal to 2",
    ),
    "horizon-zero": (
        ["train", *SAMPLE, "--config", "{inputs}/horizon.yaml"],
        2,
        "invalid features.horizon (config {inputs}/horizon.yaml): Input should be greater than or "
        "equal to 1",
    ),
    "device-unknown": (["train", "--device", "tpu"], 2, "argument --device: invalid choice: 'tpu'"),
    "device-absent": (
        ["train", *CSV, "--device", ABSENT_DEVICE],
        2,
        f"device '{ABSENT_DEVICE}' is not available on this machine (try --device auto)",
    ),
    "source-unknown": (["train", "--source", "ftp"], 2, "argument --source: invalid choice: 'ftp'"),
    "seed-not-a-number": (["train", "--seed", "abc"], 2, "argument --seed: invalid int value"),
    "start-after-end": (
        ["train", *SAMPLE, "--start", "2024-02-01", "--end", "2024-01-01"],
        2,
        "invalid data: start 2024-02-01 is after end 2024-01-01",
    ),
    "ticker-path": (["train", "--tickers", "../etc"], 2, "invalid ticker '../etc'"),
    "csv-without-folder": (["train", "--source", "csv"], 2, "source 'csv' needs data_dir"),
    # file names match tickers in any case: two files for one ticker, by lookup and by scan
    "csv-two-files-one-ticker": (
        ["forecast", "--source", "csv", "--data-dir", "{inputs}/dupes", "--tickers", "AAA"]
        + ["--model-uri", "{inputs}/tiny.onnx"],
        2,
        "AAA: {inputs}/dupes/AAA.csv and {inputs}/dupes/aaa.csv name the same ticker: keep one",
    ),
    "csv-scan-two-files-one-ticker": (
        ["train", "--source", "csv", "--data-dir", "{inputs}/dupes", "--config", TINY],
        2,
        "AAA: {inputs}/dupes/AAA.csv and {inputs}/dupes/aaa.csv name the same ticker: keep one",
    ),
    "config-unknown-key": (
        ["train", *SAMPLE, "--config", "{inputs}/unknown-key.yaml"],
        2,
        "invalid train.epochs (config {inputs}/unknown-key.yaml): Extra inputs are not permitted",
    ),
    "config-unknown-section": (
        ["train", *SAMPLE, "--config", "{inputs}/unknown-section.yaml"],
        2,
        "invalid optimizer (config {inputs}/unknown-section.yaml): Extra inputs are not permitted",
    ),
    "config-wrong-type": (
        ["train", *SAMPLE, "--config", "{inputs}/wrong-type.yaml"],
        2,
        "invalid train.max_epochs (config {inputs}/wrong-type.yaml): Input should be a valid "
        "integer",
    ),
    "config-not-yaml": (
        ["train", *SAMPLE, "--config", "{inputs}/not-yaml.yaml"],
        2,
        "config {inputs}/not-yaml.yaml is not valid YAML",
    ),
    "config-not-a-mapping": (
        ["train", *SAMPLE, "--config", "{inputs}/list.yaml"],
        2,
        "config {inputs}/list.yaml must be a mapping of sections",
    ),
    "config-missing": (
        ["train", *SAMPLE, "--config", "{inputs}/nothing.yaml"],
        2,
        "cannot read config {inputs}/nothing.yaml: No such file or directory",
    ),
    "config-not-utf8": (
        ["train", *SAMPLE, "--config", "{inputs}/latin1.yaml"],
        2,
        "config {inputs}/latin1.yaml is not UTF-8 text (byte 28)",
    ),
    "config-path-as-a-list": (
        ["forecast", "--source", "csv", "--config", "{inputs}/data-dir-list.yaml"],
        2,
        "invalid data.data_dir (config {inputs}/data-dir-list.yaml): Input should be a valid "
        "string",
    ),
    "config-inf-lr": (
        ["train", *SAMPLE, "--config", "{inputs}/inf-lr.yaml"],
        2,
        "invalid train.lr (config {inputs}/inf-lr.yaml): Input should be a finite number",
    ),
    "config-nan-delay": (
        ["fetch", "AAPL", "--source", "sample", "--config", "{inputs}/nan-delay.yaml"],
        2,
        "invalid data.retry_base_delay (config {inputs}/nan-delay.yaml): Input should be a "
        "finite number",
    ),
    "config-never-ends": (
        ["train", *SAMPLE, "--config", "/dev/zero"],
        2,
        "config /dev/zero is not a regular file",
    ),
    # the case's working directory is empty: nothing may appear in it (no mlflow/mlflow.db)
    **{
        f"{command}-without-a-store": (
            [command, *version],
            2,
            "no tracking store at sqlite:///mlflow/mlflow.db (train first or pass "
            "--tracking-uri); no alias was moved",
        )
        for command, version in (("promote", ["1"]), ("rollback", []))
    },
    # a local file store that does not exist: neither MLflow's "maintenance mode" nor a
    # misleading "no version 1", and nothing created (in the inputs or the working directory)
    **{
        f"{command}-without-a-file-store-{kind}": (
            [command, *version, "--tracking-uri", uri],
            2,
            f"no tracking store at {uri} (train first or pass --tracking-uri); no alias was moved",
        )
        for command, version in (("promote", ["1"]), ("rollback", []))
        for kind, uri in FILE_STORES.items()
    },
    **{
        f"model-uri-without-a-file-store-{kind}": (
            ["forecast", *SAMPLE, "--model-uri", "models:/nope@champion", "--tracking-uri", uri],
            2,
            f"model models:/nope@champion not found: no tracking store at {uri}",
        )
        for kind, uri in FILE_STORES.items()
    },
    "onnx-wrong-input-shape": (
        ["forecast", *SAMPLE, "--model-uri", "{inputs}/wrong-shape.onnx"],
        2,
        "model file {inputs}/wrong-shape.onnx: 'window' has shape [batch, 7, 2], but its "
        "metadata calls for [batch, 10, 5]",
    ),
    "onnx-without-metadata": (
        ["forecast", *SAMPLE, "--model-uri", "{inputs}/no-metadata.onnx"],
        2,
        "model file {inputs}/no-metadata.onnx: ONNX model lacks lstm-pipeline metadata (features, "
        "window, horizon): no features, window, horizon",
    ),
    "onnx-features-reordered": (
        ["forecast", *SAMPLE, "--model-uri", "{inputs}/reordered.onnx"],
        2,
        "model file {inputs}/reordered.onnx takes features 'Close,Open,High,Low,Volume', but the "
        "data provides Open,High,Low,Close,Volume (the same names in another order)",
    ),
    "onnx-features-other": (
        ["forecast", *SAMPLE, "--model-uri", "{inputs}/other-features.onnx"],
        2,
        "model file {inputs}/other-features.onnx takes features 'Open,High,Low,Adj Close,Volume', "
        "but the data provides Open,High,Low,Close,Volume",
    ),
    "onnx-features-not-json": (
        ["forecast", *SAMPLE, "--model-uri", "{inputs}/features-not-json.onnx"],
        2,
        "model file {inputs}/features-not-json.onnx: metadata features '{{bad' is not a JSON list "
        "of distinct names",
    ),
    "onnx-window-not-int": (
        ["forecast", *SAMPLE, "--model-uri", "{inputs}/window-not-int.onnx"],
        2,
        "model file {inputs}/window-not-int.onnx: metadata window '1.5' is not a positive integer",
    ),
    "onnx-quantile-levels-not-json": (
        ["forecast", *SAMPLE, "--model-uri", "{inputs}/levels-not-json.onnx"],
        2,
        "model file {inputs}/levels-not-json.onnx: metadata quantile_levels '[0.1, 0.5' is not a "
        "JSON list of numbers",
    ),
    "onnx-quantile-levels-asymmetric": (
        ["forecast", *SAMPLE, "--model-uri", "{inputs}/levels-asymmetric.onnx"],
        2,
        "model file {inputs}/levels-asymmetric.onnx: metadata quantile_levels "
        "'[0.025, 0.1, 0.5, 0.9]' is not usable: quantile levels must be symmetric about 0.5 "
        "(tau with 1 - tau)",
    ),
    "onnx-quantile-levels-not-the-graphs": (
        ["forecast", *SAMPLE, "--model-uri", "{inputs}/levels-too-few.onnx"],
        2,
        "model file {inputs}/levels-too-few.onnx: 'quantiles' has shape [batch, 3, 9], but its "
        "metadata calls for [batch, 3, 5]",
    ),
    "calendar-unknown": (
        [
            "forecast",
            *SAMPLE,
            "--model-uri",
            "{inputs}/tiny.onnx",
            "--config",
            "{inputs}/calendar.yaml",
        ],
        2,
        "invalid data.calendars (config {inputs}/calendar.yaml): unknown exchange calendar 'NOPE' "
        "for AAPL",
    ),
    "onnx-not-a-model": (
        ["forecast", *SAMPLE, "--model-uri", "{inputs}/garbage.onnx"],
        2,
        "model file {inputs}/garbage.onnx is not a loadable ONNX model",
    ),
    "onnx-missing": (
        ["forecast", *SAMPLE, "--model-uri", "{inputs}/nothing.onnx"],
        2,
        "model {inputs}/nothing.onnx: not a models:/ URI or an existing .onnx file",
    ),
    "model-uri-without-store": (
        ["forecast", *SAMPLE, "--model-uri", "models:/nope@champion"],
        2,
        "model models:/nope@champion not found: no tracking store at sqlite:///mlflow/mlflow.db",
    ),
    "model-uri-not-registered": (
        ["forecast", *SAMPLE, "--model-uri", "models:/nope@champion"]
        + ["--tracking-uri", "sqlite:///{inputs}/store/mlflow.db"],
        2,
        "model models:/nope@champion not found in the registry",
    ),
    "forecast-output-format": (
        ["forecast", *SAMPLE, "--model-uri", "{inputs}/tiny.onnx", "--output", "out.txt"],
        2,
        "output out.txt: use a .csv or .parquet file name",
    ),
    # unwritable outputs fail before any work, not after the whole forecast or search
    "forecast-output-in-a-file": (
        ["forecast", *SAMPLE, "--model-uri", "{inputs}/tiny.onnx"]
        + ["--output", "{inputs}/tiny.onnx/f.csv"],
        2,
        "output {inputs}/tiny.onnx/f.csv: cannot write in {inputs}/tiny.onnx (Not a directory)",
    ),
    "forecast-output-is-a-folder": (
        ["forecast", *SAMPLE, "--model-uri", "{inputs}/tiny.onnx", "--output", "{inputs}/f.csv"],
        2,
        "output {inputs}/f.csv: is a folder, not a file name",
    ),
    "fetch-cache-in-a-file": (
        ["fetch", "AAPL", "--source", "sample", "--cache-dir", "{inputs}/tiny.onnx/cache"],
        2,
        "cache {inputs}/tiny.onnx/cache: cannot write in {inputs}/tiny.onnx (Not a directory)",
    ),
    "tracking-store-in-a-file": (
        ["train", *CSV, "--tracking-uri", "sqlite:///{inputs}/tiny.onnx/mlflow.db"],
        2,
        "tracking store sqlite:///{inputs}/tiny.onnx/mlflow.db: cannot write in {inputs}/tiny.onnx "
        "(Not a directory)",
    ),
    # MLflow refuses these names only when it first uses them: after the training
    "empty-experiment": (  # not blamed on CSV's --config file
        ["train", *CSV, "--experiment", ""],
        2,
        "invalid tracking.experiment: String should have at least 1 character",
    ),
    "model-name-with-slash": (
        ["train", "--source", "csv", "--data-dir", "{inputs}/prices", "--tickers", "AAA"]
        + ["--config", "{inputs}/model-name.yaml"],
        2,
        "invalid tracking.model_name (config {inputs}/model-name.yaml): model name 'a/b' must be "
        "non-blank, without '/' or ':'",
    ),
    "tune-output-in-a-file": (
        ["tune", *CSV, "--trials", "1", "--output", "{inputs}/tiny.onnx/tuned.yaml"],
        2,
        "output {inputs}/tiny.onnx/tuned.yaml: cannot write in {inputs}/tiny.onnx (Not a "
        "directory)",
    ),
    "tracking-server-down": (
        ["train", *CSV, "--tracking-uri", f"http://user:secret@127.0.0.1:{CLOSED_PORT}"],
        1,
        # the CLI moved the credentials out of the URI before anything saw it
        f"TrackingUnavailableError: MLflow tracking server http://127.0.0.1:{CLOSED_PORT} "
        "is unreachable (MlflowException); nothing was fetched or trained",
    ),
    # without the quick check these waited out MLflow's retries: minutes, then a traceback
    **{
        f"{command}-server-down": (
            [command, *version, "--tracking-uri", f"http://127.0.0.1:{CLOSED_PORT}"],
            1,
            f"TrackingUnavailableError: MLflow tracking server http://127.0.0.1:{CLOSED_PORT} "
            "is unreachable (MlflowException); no alias was moved",
        )
        for command, version in (("promote", ["1"]), ("rollback", []))
    },
}


def write_inputs(folder: Path) -> None:
    """Config files, price files and ONNX files (good and broken) the cases point at."""
    from tests.conftest import make_prices

    folder.mkdir()
    for name, text in CONFIGS.items():
        (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    (folder / "prices").mkdir()
    make_prices(400).to_csv(folder / "prices" / "AAA.csv", index=False)
    (folder / "dupes").mkdir()
    for name in ("AAA.csv", "aaa.csv"):
        make_prices(40).to_csv(folder / "dupes" / name, index=False)
    export_tiny_model(folder / "tiny.onnx")
    for name, changes in ALTERED_MODELS.items():
        alter_metadata(folder / "tiny.onnx", folder / name, changes)
    export_tiny_model(folder / "tiny-quantile.onnx", quantiles=DEFAULT_QUANTILES)
    for name, levels in ALTERED_LEVELS.items():
        alter_metadata(folder / "tiny-quantile.onnx", folder / name, {"quantile_levels": levels})
    metadata = {"features": "Open,High,Low,Close,Volume", "window": "10", "horizon": "3"}
    onnx.save(wrong_shape_model(metadata), folder / "wrong-shape.onnx")
    onnx.save(wrong_shape_model({}, window=10, features=5), folder / "no-metadata.onnx")
    (folder / "garbage.onnx").write_bytes(b"\x00not a model\xff" * 10)
    (folder / "f.csv").mkdir()  # a folder where a forecast file name is expected
    Store.open(f"sqlite:///{folder}/store/mlflow.db").experiment_id("lstm-forecaster")


def wrong_shape_model(metadata: dict[str, str], window: int = 7, features: int = 2):
    """window [batch, W, F] -> sum over features -> [batch, W] x [W, 3] -> forecast [batch, 3]."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [window, 3], [0.1] * (window * 3))
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [2])
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["window", "axes"], ["summed"], keepdims=0),
            helper.make_node("MatMul", ["summed", "w"], ["forecast"]),
        ],
        "wrong",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["batch", window, features])],
        [helper.make_tensor_value_info("forecast", TensorProto.FLOAT, ["batch", 3])],
        initializer=[weights, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return model


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folder`: relative path -> (size, mtime in ns)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def batch(tmp_path_factory, prefect_harness) -> dict:
    """Run every case, flows on the session's Prefect server (the harness's); the results, and
    the file trees before and after."""
    root = tmp_path_factory.mktemp("bad-inputs")
    inputs = root / "inputs"
    write_inputs(inputs)
    cases = {}
    for name, (args, _, _) in CASES.items():
        (root / "work" / name).mkdir(parents=True)
        argv = [a.format(inputs=inputs) for a in args]
        cases[name] = {"args": argv, "cwd": str(root / "work" / name)}
    (root / "cases.json").write_text(json.dumps(cases))
    before = {"root": snapshot(root), "corpus": snapshot(BAD)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.cli_batch", "cases.json", "results.json"],
        cwd=root,
        env=cli_env(
            {"LSTM_PIPELINE_CACHE": str(root / "cache"), "PREFECT_API_URL": prefect_harness}
        ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((root / "results.json").read_text())
    (root / "results.json").unlink()  # not part of what the cases may change
    after = {"root": snapshot(root), "corpus": snapshot(BAD)}
    return {"inputs": inputs, "results": results, "before": before, "after": after}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_no_traceback_and_no_change_on_disk(batch, name):
    _, code, message = CASES[name]
    result = batch["results"][name]
    lines = result["stderr"].strip().splitlines()
    assert result["code"] == code, result["stderr"]
    assert len(lines) == 1, result["stderr"]
    command = CASES[name][0][0]
    kind = "error" if code == 2 else "failed"
    assert lines[0].startswith(f"lstm-pipeline {command}: {kind}: "), lines[0]
    expected = re.escape(message.format(inputs=batch["inputs"]))
    if name.startswith("data-"):  # the corpus's messages are patterns (tests/unit/test_validate)
        expected = re.escape(message.split(".csv")[0] + ".csv") + message.split(".csv", 1)[1]
    assert re.search(expected, lines[0]), lines[0]
    output = result["stdout"] + result["stderr"]
    assert "Traceback" not in output and "secret" not in output
    assert "epoch" not in result["stdout"]  # nothing was trained
    work = f"work/{name}"
    changed = {
        path
        for path in set(batch["before"]["root"]) | set(batch["after"]["root"])
        if path.startswith(work + "/")
        and batch["before"]["root"].get(path) != batch["after"]["root"].get(path)
    }
    assert not changed, changed


def test_no_bad_input_changed_the_inputs_or_the_corpus(batch):
    assert batch["after"]["corpus"] == batch["before"]["corpus"]
    before = {p: v for p, v in batch["before"]["root"].items() if not p.startswith("work/")}
    after = {p: v for p, v in batch["after"]["root"].items() if not p.startswith("work/")}
    assert after == before
