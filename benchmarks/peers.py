"""Ours beside Darts' BlockRNNModel(LSTM) and NeuralForecast's LSTM on the same data and shapes.

The bundled sample's six tickers, cut by our own split (FeatureConfig's fractions); window 60,
LSTM 64x2, horizon 1, batch 64, 2 epochs, the same torch threads. For each: training windows/s
(windows trained / seconds, both for the training epochs alone and for the library's whole fit
call) and test MASE against the naive forecast (last close) on the same test origins. The peers
run in a venv of their own (created here on first use, git-ignored: the project's dependencies
do not grow), one subprocess each (benchmarks/peers_runner.py); each fit of ours runs in a
fresh process of this venv, so every contender's fit is the first of its process.
JSON to benchmarks/results/peers-cpu.json and a markdown table.

Usage: python benchmarks/peers.py [--repeats 1] [--epochs 2] [--venv benchmarks/.peers-venv]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import load, median, table, write

from lstm_pipeline import data
from lstm_pipeline.config import (
    SAMPLE_TICKERS,
    DataConfig,
    FeatureConfig,
    PipelineConfig,
    build_config,
)
from lstm_pipeline.evaluate import score_forecasts
from lstm_pipeline.features import CLOSE, SPLITS, WindowSet, build_window_sets, split_by_time
from lstm_pipeline.pipeline import train_model
from lstm_pipeline.train import predict_prices

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "peers_runner.py"
DEFAULT_VENV = HERE / ".peers-venv"
TORCH_PIN = "torch==2.13.0"  # a CPU wheel on this kind of machine; anything else pulls CUDA
# what the runner was written against; the torch pin again, so pip cannot swap torch
PEER_PINS = ("darts==0.48.1", "neuralforecast==3.3.0", "pytorch-lightning==2.6.6", TORCH_PIN)
PEERS = ("darts", "neuralforecast")
HORIZON = 1  # the comparison's horizon: one close ahead of each origin


# -- the data every contender shares ---------------------------------------------------------


def sample_prices(tickers: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    cfg = DataConfig(source="sample", tickers=tickers)
    return {t: data.load_prices(t, cfg) for t in cfg.tickers}


def peer_frames(
    prices: dict[str, pd.DataFrame], cfg: FeatureConfig
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Each ticker's train and test frames by our split, indexed by row number (column t):
    the peers train on the first and forecast every test row with a whole window before it."""
    frames = {}
    for ticker, frame in prices.items():
        parts = split_by_time(frame, cfg, ticker)
        numbered = frame.reset_index(drop=True).rename_axis("t").reset_index()
        frames[ticker] = tuple(numbered.loc[_rows(frame, parts[s])] for s in ("train", "test"))
    return frames  # type: ignore[return-value]


def _rows(frame: pd.DataFrame, part: pd.DataFrame) -> slice:
    first = frame.index.get_loc(part.index[0])
    return slice(first, first + len(part) - 1)  # .loc: inclusive


def test_origins(test: pd.DataFrame, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(last close, next close) at every test origin: each row with `window` test rows up to
    and including it and one after it, as our test windows of horizon 1."""
    close = test["Close"].to_numpy(np.float64)
    return close[window - 1 : -1], close[window:]


def peer_mase(
    predictions: dict[str, list[float]],
    frames: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
    window: int,
) -> dict[str, float]:
    """A peer's test scores (ours: evaluate.score_forecasts) on the pooled test origins."""
    last, actual = zip(*(test_origins(test, window) for _, test in frames.values()), strict=True)
    forecast = np.concatenate([np.asarray(predictions[t], np.float64) for t in frames])
    last_close, next_close = np.concatenate(last), np.concatenate(actual)
    if forecast.shape != next_close.shape:
        raise ValueError(f"{forecast.shape[0]} forecasts for {next_close.shape[0]} test origins")
    return score_forecasts(forecast[:, None], next_close[:, None], last_close)


def windows_per_s(windows: int, seconds: float) -> float:
    """Windows trained (every epoch's) per second; 0 for a run that took no time."""
    return windows / seconds if seconds > 0 else 0.0


def window_count(frames: dict[str, tuple[pd.DataFrame, pd.DataFrame]], window: int) -> int:
    """Training windows of one epoch: T - W - H + 1 per ticker's train frame."""
    return sum(len(train) - window - HORIZON + 1 for train, _ in frames.values())


# -- ours --------------------------------------------------------------------------------------


def our_config(args: argparse.Namespace, quantiles: bool, precision: str) -> PipelineConfig:
    """The default config at the comparison's shapes: 2 epochs, batch 64, horizon 1, CPU."""
    return build_config(
        data__source="sample",
        data__tickers=args.tickers,
        features__window=args.window,
        features__horizon=HORIZON,
        model__hidden_size=args.hidden,
        model__num_layers=args.layers,
        model__quantiles=None if quantiles else (),  # None: the default levels
        train__batch_size=args.batch_size,
        train__max_epochs=args.epochs,
        train__threads=args.threads,
        train__precision=precision,
        train__device="cpu",
    )


def run_ours(args: argparse.Namespace, quantiles: bool, precision: str) -> dict[str, Any]:
    """One fit of ours in a fresh interpreter, as each peer gets one: no warm-up (thread
    pools, kernels) carried over from an earlier fit in the same process."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        return pool.submit(fit_ours, args, quantiles, precision).result()


def fit_ours(args: argparse.Namespace, quantiles: bool, precision: str) -> dict[str, Any]:
    windows = build_window_sets(
        sample_prices(args.tickers), FeatureConfig(window=args.window, horizon=HORIZON)
    )
    cfg = our_config(args, quantiles, precision)
    started = time.perf_counter()
    result = train_model(windows, cfg)
    fit_s = time.perf_counter() - started
    test = windows["test"]
    predictions = predict_prices(result.model, test)
    scores = score_forecasts(predictions.forecast, predictions.actual, predictions.last_close)
    trained = len(windows["train"]) * result.stopped_epoch  # every window, every epoch
    return {
        "precision": result.precision,  # what `precision` resolved to on this machine
        "threads": result.threads,
        "windows_trained": trained,
        "epochs_s": trained / result.train_windows_per_s,
        "fit_s": fit_s,
        "test_origins": len(test),
        **scores,
    }


# -- the peers ---------------------------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path) -> Path:
    """The peers' venv, created on first use: torch first (pinned, the CPU wheel), then the
    peers with torch pinned again; a stamp names the pins, so new pins rebuild it."""
    stamp = venv / ".installed"
    if stamp.exists() and stamp.read_text().split() == list(PEER_PINS):
        return venv_python(venv)
    if venv.exists() and venv.resolve() != DEFAULT_VENV and not stamp.exists():
        # a venv of one's own: used as it is, never cleared (the runner reports its versions)
        return venv_python(venv)
    print(f"creating the peers' venv in {venv} (a few minutes, once)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv_python(venv)), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, TORCH_PIN], check=True)
    subprocess.run([*pip, *PEER_PINS], check=True)
    torch_version = subprocess.run(
        [str(venv_python(venv)), "-c", "import torch; print(torch.__version__)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not torch_version.startswith(TORCH_PIN.split("==")[1]):
        raise RuntimeError(f"the peers' venv got torch {torch_version}, not {TORCH_PIN}")
    stamp.write_text("\n".join(PEER_PINS) + "\n")
    return venv_python(venv)


def write_inputs(
    folder: Path, frames: dict[str, tuple[pd.DataFrame, pd.DataFrame]], spec: dict[str, Any]
) -> None:
    for ticker, (train, test) in frames.items():
        train.to_csv(folder / f"{ticker}-train.csv", index=False)
        test.to_csv(folder / f"{ticker}-test.csv", index=False)
    (folder / "spec.json").write_text(json.dumps(spec))


def thread_env(threads: int) -> dict[str, str]:
    """The thread counts every contender's process starts with (ours' too)."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_peer(python: Path, peer: str, folder: Path, threads: int) -> dict[str, Any]:
    """One peer in a subprocess of its venv, its threads pinned like ours."""
    env = os.environ | thread_env(threads) | {"PYTHONWARNINGS": "ignore"}
    result = folder / f"result-{peer}.json"
    result.unlink(missing_ok=True)  # the previous run's, of the same peer
    proc = subprocess.run(
        [str(python), str(RUNNER), peer, str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{peer} failed:\n{proc.stderr[-3000:]}")
    return json.loads(result.read_text())


def peer_spec(args: argparse.Namespace, scaling: str) -> dict[str, Any]:
    """The shapes and optimiser settings of ours (TrainConfig's defaults), for the runner."""
    train = PipelineConfig().train
    return {
        "tickers": list(args.tickers),
        "window": args.window,
        "horizon": HORIZON,
        "hidden": args.hidden,
        "layers": args.layers,
        "dropout": PipelineConfig().model.dropout,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "threads": args.threads,
        "lr": train.lr,
        "grad_clip": train.grad_clip,
        "seed": train.seed,
        "darts_scaling": scaling,
    }


# -- the report --------------------------------------------------------------------------------

TIME_INCLUDES = {
    "ours": {
        "epochs": "the training epochs (shuffled batches, forward, loss, backward, clipping,"
        " AdamW): FitResult.train_windows_per_s",
        "fit": "pipeline.train_model: the model, the epochs, the val loss after each epoch, the"
        " best epoch's weights restored and, for the quantile model, calibration on the calib"
        " split",
    },
    "darts": {
        "epochs": "Lightning's training epochs: Darts' training dataset through a DataLoader,"
        " forward, loss, backward, clipping, Adam",
        "fit": "BlockRNNModel.fit: its training dataset and Lightning Trainer, the epochs (the"
        " Scalers are fitted before it, untimed; historical_forecasts is timed apart)",
    },
    "neuralforecast": {
        "epochs": "Lightning's training epochs, each one step over all six series: the windows"
        " unfolded, 64 drawn, scaled per window, forward, loss, backward, clipping, Adam",
        "fit": "NeuralForecast.fit: its dataset from the long frame, the Lightning Trainer, the"
        " steps (predict is timed apart, predict_s)",
    },
}

NOTES = [
    "Same for all: the six sample tickers, our split (train rows to train, test origins from"
    " the test split, each with 60 test rows up to it), window 60, LSTM 64x2 with dropout 0.2"
    " between layers, horizon 1, batch 64, lr 1e-3, gradient clipping at norm 1.0, seed 42,"
    " CPU, torch threads as shared.threads (OMP_NUM_THREADS and MKL_NUM_THREADS for the peers'"
    " subprocesses). Inputs: Open, High, Low, Close, Volume for all three.",
    "Ours: raw OHLCV windows normalised per window inside the model (log price ratios to the"
    " window's last close, log volume ratio to its mean volume), target the log return; AdamW"
    " with weight decay 0 (= Adam); the point model on MSE, the quantile model on the pinball"
    " loss over 9 levels, its median scored; the val loss after each epoch and the better"
    " epoch's weights kept.",
    "Darts (BlockRNNModel(model='LSTM')): Close the target, Open, High, Low, Volume past"
    " covariates, each min-max scaled by Darts' Scaler fitted per ticker on its train rows, as"
    " its examples do; the model predicts the scaled close (not a return), MSE loss (its"
    " default), a linear layer on the last LSTM output; no validation; forecasts by"
    " historical_forecasts(retrain=False) on the scaled test series, inverse-transformed."
    " Its training dataset gives every series as many samples as the longest one has,"
    " repeating the shorter series' windows, so it trains on more windows per epoch than the"
    " others (windows trained counts them).",
    "darts: the Scaler alone. Every ticker's test closes reach far above its train range (AAPL's"
    " train closes reach 54, its test closes 124-235), so the scaled inputs leave [0, 1] and a"
    " model of the scaled price level cannot follow: its MASE is far above 1. The issue's 9.88"
    " is of this kind (a price-level model asked for prices it never saw), not a bug in how"
    " Darts ran."
    " darts_rinorm: the same plus use_reversible_instance_norm=True, Darts' option 'against"
    " distribution shift' (the target normalised per window, as ours and NeuralForecast's are;"
    " the covariates keep the Scaler). darts_no_scaler (--darts-unscaled): raw prices.",
    "NeuralForecast (LSTM): Close as y, Open, High, Low, Volume as hist_exog_list; its default"
    " robust scaler per window (the closest to our window normalisation); MAE loss (its"
    " default: a median, like our quantile model's); decoder_layers=1 (a linear layer on the"
    " last hidden state, as ours; its default is a 2-layer MLP of 128); training_data_"
    "availability_threshold=1.0 (whole windows only, as ours; the default also trains on"
    " windows reaching into the zero padding of the shorter series); it counts steps, not"
    " epochs: batch_size=6 series per step, windows_batch_size=64, max_steps = ceil(epochs x"
    " train windows / 64), windows drawn without replacement within a step and independently"
    " across steps (two epochs' worth of windows, not every window twice); no validation;"
    " forecasts by predict() on one 60-row series per test origin.",
    "windows/s = windows trained (every epoch's) / seconds: `epochs` times the training epochs"
    " alone, `fit` the library's whole fit call; time_includes says what each covers.",
]


def summarise(name: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeats of the speeds; the scores of the first run (seeded)."""
    first = samples[0]
    family = "ours" if name.startswith("ours") else name.split("_")[0]
    return {
        "windows_per_s_epochs": median(
            windows_per_s(s["windows_trained"], s["epochs_s"]) for s in samples
        ),
        "windows_per_s_fit": median(
            windows_per_s(s["windows_trained"], s["fit_s"]) for s in samples
        ),
        "test_mase": first["test_mase"],
        "test_mae": first["test_mae"],
        "naive_test_mae": first["naive_test_mae"],
        "test_directional_accuracy": first["test_directional_accuracy"],
        "time_includes": TIME_INCLUDES[family],
        "samples": [{k: v for k, v in s.items() if k != "predictions"} for s in samples],
    }


def goal(contenders: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's goal: ours (the default quantile model at the default precision) >= 1.5x
    the faster peer's windows/s, at a test MASE no worse than any peer's."""
    ours = contenders["ours_quantile"]
    peers = {k: v for k, v in contenders.items() if not k.startswith("ours")}
    if not peers:
        return {}
    out: dict[str, Any] = {
        "mase_no_worse_than_every_peer": all(
            ours["test_mase"] <= p["test_mase"] for p in peers.values()
        )
    }
    for kind in ("fit", "epochs"):
        key = f"windows_per_s_{kind}"
        fastest = max(peers, key=lambda k: peers[k][key])
        out[f"faster_peer_{kind}"] = fastest
        out[f"ours_vs_faster_peer_{kind}"] = ours[key] / peers[fastest][key]
    out["met"] = out["mase_no_worse_than_every_peer"] and out["ours_vs_faster_peer_fit"] >= 1.5
    return out


def check_alignment(
    test: WindowSet, frames: dict[str, tuple[pd.DataFrame, pd.DataFrame]], window: int
) -> int:
    """The peers' test origins are ours, in the same order; returns how many there are."""
    ours = test.values[test.starts + window - 1, CLOSE].double().numpy()
    theirs = np.concatenate([test_origins(t, window)[0] for _, t in frames.values()])
    if ours.shape != theirs.shape or not np.allclose(ours, theirs, rtol=1e-6):
        raise ValueError("the peers' test origins are not ours")
    return len(ours)


def render(report: dict[str, Any]) -> str:
    rows = [
        [
            name,
            c["samples"][0].get("precision", "fp32"),
            f"{c['windows_per_s_epochs']:,.0f}",
            f"{c['windows_per_s_fit']:,.0f}",
            f"{c['test_mase']:.4f}",
            f"{c['samples'][0]['windows_trained']:,}",
        ]
        for name, c in report["contenders"].items()
    ]
    header = [
        "contender",
        "precision",
        "windows/s, epochs",
        "windows/s, fit call",
        "test MASE",
        "windows trained",
    ]
    return table(header, rows)


def run_all(args: argparse.Namespace, python: Path | None) -> dict[str, list[dict[str, Any]]]:
    """Every contender `args.repeats` times, in turn: ours first, then each peer."""
    features = FeatureConfig(window=args.window, horizon=HORIZON)
    prices = sample_prices(args.tickers)
    windows = build_window_sets(prices, features)
    frames = peer_frames(prices, features)
    check_alignment(windows["test"], frames, args.window)
    samples: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        folder = Path(tmp)
        for _ in range(args.repeats):
            for name, sample in ours_samples(args):
                samples.setdefault(name, []).append(sample)
            for name, scaling, peer in peer_runs(args) if python else ():
                write_inputs(folder, frames, peer_spec(args, scaling))
                sample = run_peer(python, peer, folder, args.threads)  # type: ignore[arg-type]
                sample |= peer_mase(sample["predictions"], frames, args.window)
                samples.setdefault(name, []).append(sample | {"precision": "fp32"})
    return samples


def ours_samples(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """The quantile (default) and point models at the default precision, and in fp32 too
    where the default picked another one."""
    out = []
    for head, quantiles in (("quantile", True), ("point", False)):
        sample = run_ours(args, quantiles, "auto")
        out.append((f"ours_{head}", sample))
        if sample["precision"] != "fp32":
            out.append((f"ours_{head}_fp32", run_ours(args, quantiles, "fp32")))
    return out


def peer_runs(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(name, Darts scaling, peer) of each peer run asked for."""
    darts = [("darts", "scaler"), ("darts_rinorm", "rinorm")]
    darts += [("darts_no_scaler", "none")] if args.darts_unscaled else []
    runs = [(name, scaling, "darts") for name, scaling in darts] if "darts" in args.peers else []
    if "neuralforecast" in args.peers:
        runs.append(("neuralforecast", "", "neuralforecast"))
    return runs


def shared_inputs(args: argparse.Namespace, train_windows: int, origins: int) -> dict[str, Any]:
    features = FeatureConfig(window=args.window, horizon=HORIZON)
    return {
        "data": "the bundled sample (lstm_pipeline/sample_data)",
        "tickers": list(args.tickers),
        "split": {f"{s}_frac": getattr(features, f"{s}_frac") for s in SPLITS[1:]},
        "window": args.window,
        "horizon": HORIZON,
        "lstm": f"{args.hidden}x{args.layers}",
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "threads": args.threads,
        "train_windows_per_epoch": train_windows,
        "test_origins": origins,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tickers", nargs="+", default=list(SAMPLE_TICKERS))
    parser.add_argument("--window", type=int, default=60)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, for every one")
    parser.add_argument("--repeats", type=int, default=1, help="speeds are medians over these")
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=PEERS)
    parser.add_argument(
        "--darts-unscaled", action="store_true", help="also Darts on raw prices (no Scaler)"
    )
    parser.add_argument(
        "--venv",
        type=Path,
        default=DEFAULT_VENV,
        help="the peers' venv: created here with the pinned versions; another existing venv"
        " is used as it is",
    )
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    args.tickers = tuple(args.tickers)
    return args


def main() -> None:
    args = parse_args()
    os.environ.update(thread_env(args.threads))  # what ours' spawned processes inherit
    python = ensure_venv(args.venv) if args.peers else None
    before = load()
    samples = run_all(args, python)
    contenders = {name: summarise(name, runs) for name, runs in samples.items()}
    first = samples["ours_quantile"][0]
    report = {
        "shared": shared_inputs(
            args, first["windows_trained"] // args.epochs, first["test_origins"]
        ),
        "contenders": contenders,
        "goal": goal(contenders),
        "notes": NOTES,
        "loadavg_before": before,
        "loadavg_after": load(),
    }
    path = write("peers-cpu", report, args.output)
    print(render(report))
    print(json.dumps(report["goal"], indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
