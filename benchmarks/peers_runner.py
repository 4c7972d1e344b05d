"""One peer's side of benchmarks/peers.py, run in the peers' own venv (never the project's).

Reads what peers.py prepared in DIR (spec.json; TICKER-train.csv and TICKER-test.csv with the
columns t, Open, High, Low, Close, Volume, one of our splits each), trains PEER (`darts` or
`neuralforecast`) on the train frames, forecasts the close of every test row from the `window`
rows before it, and writes DIR/result-PEER.json. It imports nothing of the project.

Usage: python benchmarks/peers_runner.py PEER DIR
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

COVARIATES = ["Open", "High", "Low", "Volume"]  # beside the target, Close: our five inputs


def load_frames(folder: Path, tickers: list[str]) -> dict[str, tuple[Any, Any]]:
    import pandas as pd

    return {
        t: (pd.read_csv(folder / f"{t}-train.csv"), pd.read_csv(folder / f"{t}-test.csv"))
        for t in tickers
    }


def train_windows(frames: dict[str, tuple[Any, Any]], window: int, horizon: int) -> int:
    """Windows of the train frames, as ours counts them: T - W - H + 1 per ticker."""
    return sum(len(train) - window - horizon + 1 for train, _ in frames.values())


def epoch_timer() -> Any:
    """A Lightning callback adding up the seconds of training epochs and the samples batched."""
    import pytorch_lightning as pl

    class EpochTimer(pl.Callback):
        seconds = 0.0
        samples = 0
        _started = 0.0

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            self._started = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            self.seconds += time.perf_counter() - self._started

        def on_train_batch_end(
            self, trainer: Any, module: Any, out: Any, batch: Any, i: int
        ) -> None:
            target = getattr(batch, "future_target", None)  # Darts' batches; not NF's
            self.samples += int(target.shape[0]) if target is not None else 0

    return EpochTimer()


def fitted_timer(model: Any, timer: Any) -> Any:
    """The timer among the fitted model's callbacks: NeuralForecast fits a deep copy."""
    callbacks = model.trainer_kwargs.get("callbacks") or []
    return next((c for c in callbacks if type(c) is type(timer)), timer)


def trainer_kwargs(spec: dict[str, Any], timer: Any) -> dict[str, Any]:
    """Lightning settings both peers share: CPU, our gradient clipping, no bars or checkpoints."""
    return {
        "accelerator": "cpu",
        "devices": 1,
        "gradient_clip_val": spec["grad_clip"],
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "logger": False,
        "callbacks": [timer],
    }


def run_darts(spec: dict[str, Any], frames: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """BlockRNNModel(LSTM): Close as the target, Open/High/Low/Volume as past covariates.
    darts_scaling `scaler`: each scaled by a Scaler fitted on the ticker's train frame, as
    Darts' examples do; `rinorm`: that and reversible instance norm; `none`: raw prices."""
    from darts import TimeSeries
    from darts.dataprocessing.transformers import Scaler
    from darts.models import BlockRNNModel

    def series(frame: Any, columns: list[str]) -> Any:
        return TimeSeries.from_dataframe(frame, time_col="t", value_cols=columns)

    tickers = list(frames)
    scaled = spec["darts_scaling"] != "none"
    y_scaler, x_scaler = Scaler(), Scaler()  # one fitted scaler per series of a list
    train_y = [series(frames[t][0], ["Close"]) for t in tickers]
    train_x = [series(frames[t][0], COVARIATES) for t in tickers]
    test_y = [series(frames[t][1], ["Close"]) for t in tickers]
    test_x = [series(frames[t][1], COVARIATES) for t in tickers]
    if scaled:
        train_y, train_x = y_scaler.fit_transform(train_y), x_scaler.fit_transform(train_x)
        test_y, test_x = y_scaler.transform(test_y), x_scaler.transform(test_x)
    timer = epoch_timer()
    model = BlockRNNModel(
        input_chunk_length=spec["window"],
        output_chunk_length=spec["horizon"],
        model="LSTM",
        hidden_dim=spec["hidden"],
        n_rnn_layers=spec["layers"],
        dropout=spec["dropout"],
        batch_size=spec["batch_size"],
        n_epochs=spec["epochs"],
        optimizer_kwargs={"lr": spec["lr"]},
        random_state=spec["seed"],
        # per-window normalisation of the target "against distribution shift" (its docs)
        use_reversible_instance_norm=spec["darts_scaling"] == "rinorm",
        pl_trainer_kwargs=trainer_kwargs(spec, timer),
    )
    started = time.perf_counter()
    model.fit(train_y, past_covariates=train_x, verbose=False)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    forecasts = model.historical_forecasts(
        test_y,
        past_covariates=test_x,
        start=spec["window"],  # the first test row with a whole window before it
        start_format="position",
        forecast_horizon=spec["horizon"],
        stride=1,
        retrain=False,
        last_points_only=True,
        verbose=False,
    )
    if scaled:
        forecasts = y_scaler.inverse_transform(forecasts)
    predict_s = time.perf_counter() - started
    return {
        "predictions": {
            t: f.values()[:, 0].tolist() for t, f in zip(tickers, forecasts, strict=True)
        },
        "fit_s": fit_s,
        "epochs_s": timer.seconds,
        "windows_trained": timer.samples,
        "predict_s": predict_s,
        "versions": {p: version(p) for p in ("darts", "pytorch-lightning", "torch")},
    }


def long_frame(frames: list[tuple[str, Any]]) -> Any:
    """NeuralForecast's long format: unique_id, ds (the row number), y (Close), covariates."""
    import pandas as pd

    return pd.concat(
        [
            f.rename(columns={"t": "ds", "Close": "y"}).assign(unique_id=name)[
                ["unique_id", "ds", "y", *COVARIATES]
            ]
            for name, f in frames
        ],
        ignore_index=True,
    )


def origin_frames(ticker: str, test: Any, window: int) -> list[tuple[str, Any]]:
    """One short series per test origin: the `window` rows up to it, named TICKER:ROW of the
    row forecast (NeuralForecast forecasts after a series' end, one step per series here)."""
    return [(f"{ticker}:{k}", test.iloc[k - window : k]) for k in range(window, len(test))]


def run_neuralforecast(spec: dict[str, Any], frames: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """LSTM: Close as y, Open/High/Low/Volume as historical exogenous columns, its default
    per-window robust scaler; training is counted in steps of `windows_batch_size` windows."""
    from neuralforecast import NeuralForecast
    from neuralforecast.models import LSTM

    tickers = list(frames)
    windows = train_windows(frames, spec["window"], spec["horizon"])
    steps = math.ceil(spec["epochs"] * windows / spec["batch_size"])
    timer = epoch_timer()
    model = LSTM(
        h=spec["horizon"],
        input_size=spec["window"],
        encoder_n_layers=spec["layers"],
        encoder_hidden_size=spec["hidden"],
        encoder_dropout=spec["dropout"],
        decoder_layers=1,  # one linear layer from the last hidden state, as ours
        hist_exog_list=COVARIATES,
        max_steps=steps,
        learning_rate=spec["lr"],
        batch_size=len(tickers),  # every series in each step; windows drawn from all of them
        windows_batch_size=spec["batch_size"],
        valid_batch_size=512,
        training_data_availability_threshold=1.0,  # whole windows only, none in padding
        random_seed=spec["seed"],
        **trainer_kwargs(spec, timer),
    )
    forecaster = NeuralForecast(models=[model], freq=1)
    train_df = long_frame([(t, frames[t][0]) for t in tickers])
    started = time.perf_counter()
    forecaster.fit(df=train_df, val_size=0)
    fit_s = time.perf_counter() - started
    timer = fitted_timer(forecaster.models[0], timer)
    started = time.perf_counter()
    origins = [o for t in tickers for o in origin_frames(t, frames[t][1], spec["window"])]
    predicted = forecaster.predict(df=long_frame(origins))
    predict_s = time.perf_counter() - started
    by_name = dict(zip(predicted["unique_id"], predicted["LSTM"], strict=True))
    return {
        "predictions": {
            t: [float(by_name[name]) for name, _ in origins if name.split(":")[0] == t]
            for t in tickers
        },
        "fit_s": fit_s,
        "epochs_s": timer.seconds,
        "windows_trained": steps * spec["batch_size"],
        "steps": steps,
        "predict_s": predict_s,
        "versions": {p: version(p) for p in ("neuralforecast", "pytorch-lightning", "torch")},
    }


PEERS = {"darts": run_darts, "neuralforecast": run_neuralforecast}


def main() -> None:
    peer, folder = sys.argv[1], Path(sys.argv[2])
    spec = json.loads((folder / "spec.json").read_text())
    import torch  # after the thread variables the parent set

    torch.set_num_threads(spec["threads"])
    warnings.filterwarnings("ignore")
    frames = load_frames(folder, spec["tickers"])
    result = PEERS[peer](spec, frames)
    result["threads"] = torch.get_num_threads()
    result["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS")
    (folder / f"result-{peer}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
