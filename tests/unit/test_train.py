import dataclasses

import pytest
import torch

from lstm_pipeline.config import FeatureConfig, TrainConfig
from lstm_pipeline.data import FEATURES
from lstm_pipeline.errors import InputError
from lstm_pipeline.features import build_window_sets
from lstm_pipeline.model import LSTMForecaster, PriceForecaster
from lstm_pipeline.runtime import resolve_device
from lstm_pipeline.train import EarlyStopping, fit
from tests.unit.test_features import numbered_prices

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_early_stopping_counts_epochs_without_improvement():
    stopper = EarlyStopping(patience=2, min_delta=0.01)
    losses = [1.0, 0.8, 0.795, 0.79, 0.5]  # 0.795 and 0.79 improve by < min_delta
    stops = [stopper.step(loss, epoch) for epoch, loss in enumerate(losses, start=1)]
    assert stops == [False, False, False, True, False]
    assert stopper.best == 0.5 and stopper.best_epoch == 5 and stopper.bad_epochs == 0


@pytest.mark.parametrize("layers,dropout", [(1, 0.0), (2, 0.2)])
def test_forward_maps_raw_windows_to_horizon_outputs(layers, dropout):
    net = LSTMForecaster(
        len(FEATURES), horizon=4, hidden_size=8, num_layers=layers, dropout=dropout
    )
    x = torch.rand(3, 12, len(FEATURES)) + 1
    assert net(x).shape == (3, 4)
    prices = PriceForecaster(net.eval())(x)
    torch.testing.assert_close(prices, x[:, -1, 3:4] * torch.exp(net(x)))


@pytest.fixture
def sine_prices():
    """Seeded sine-plus-noise prices for two tickers: a learnable signal."""
    gen = torch.Generator().manual_seed(0)
    frames = {}
    for i, ticker in enumerate(("AAA", "BBB")):
        frame = numbered_prices(500)
        t = torch.arange(500, dtype=torch.float64)
        close = 100 * torch.exp(
            0.05 * torch.sin(t / 6 + i) + 0.002 * torch.randn(500, generator=gen)
        )
        for col in ("Open", "High", "Low", "Close"):
            frame[col] = close.numpy()
        frames[ticker] = frame
    return frames


@pytest.fixture
def sine_windows(sine_prices):
    return build_window_sets(sine_prices, FeatureConfig(window=10, horizon=2))


def tiny_fit(windows, **train):
    torch.manual_seed(0)
    net = LSTMForecaster(len(FEATURES), horizon=2, hidden_size=8, num_layers=1, dropout=0)
    cfg = TrainConfig(**{"max_epochs": 3, "batch_size": 32, "lr": 0.01, "device": "cpu", **train})
    return fit(net, windows["train"], windows["val"], cfg)


def test_training_reduces_loss_and_reports_throughput(sine_windows):
    result = tiny_fit(sine_windows, max_epochs=5)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] * 0.8
    assert result.train_windows_per_s > 0 and result.device == "cpu"


def test_patience_stops_early_and_restores_the_best_weights(sine_windows):
    # lr so high that val loss gets worse after the first epoch
    result = tiny_fit(sine_windows, lr=5.0, patience=1, max_epochs=20)
    assert result.stopped_epoch < 20
    best = result.history[result.best_epoch - 1]["val_loss"]
    assert best == min(h["val_loss"] for h in result.history)
    from lstm_pipeline.train import eval_loss

    assert eval_loss(result.model, sine_windows["val"]) == pytest.approx(best, rel=1e-5)


def test_same_seed_gives_the_same_losses(sine_windows):
    def losses(result):
        return [(h["train_loss"], h["val_loss"]) for h in result.history]

    first, second = tiny_fit(sine_windows, seed=7), tiny_fit(sine_windows, seed=7)
    assert losses(first) == losses(second)
    assert losses(tiny_fit(sine_windows, seed=8)) != losses(first)


def test_auto_device_prefers_cuda_then_mps_then_cpu():
    expected = (
        "cuda"
        if torch.cuda.is_available()
        else ("mps" if torch.backends.mps.is_available() else "cpu")
    )
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_asking_for_an_absent_cuda_is_an_input_error():
    with pytest.raises(InputError, match="device 'cuda' is not available"):
        resolve_device("cuda")


@gpu
def test_training_runs_on_cuda(sine_windows):
    result = tiny_fit(sine_windows, device="cuda")
    assert result.device.startswith("cuda")
    assert next(result.model.parameters()).is_cuda
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


@pytest.mark.parametrize("loss", ["mse", "huber", "mae"])
def test_every_loss_option_trains(sine_windows, loss):
    result = tiny_fit(sine_windows, loss=loss, max_epochs=4)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]


def test_plateau_schedule_lowers_the_learning_rate_when_val_loss_stalls(sine_windows):
    result = tiny_fit(sine_windows, lr=2.0, lr_patience=1, patience=10, max_epochs=8)
    rates = [h["lr"] for h in result.history]
    assert rates[0] == 2.0 and min(rates) <= 1.0
    assert all(later <= earlier for earlier, later in zip(rates, rates[1:], strict=False))
    flat = tiny_fit(sine_windows, lr=2.0, lr_schedule="none", patience=10, max_epochs=4)
    assert {h["lr"] for h in flat.history} == {2.0}


@pytest.mark.parametrize("cell,derived", [("gru", False), ("lstm", True), ("gru", True)])
def test_gru_and_derived_features_variants_train(sine_windows, cell, derived):
    torch.manual_seed(0)
    net = LSTMForecaster(
        len(FEATURES),
        horizon=2,
        hidden_size=8,
        num_layers=2,
        dropout=0.1,
        cell=cell,
        derived_features=derived,
    )
    assert isinstance(net.rnn, torch.nn.GRU if cell == "gru" else torch.nn.LSTM)
    cfg = TrainConfig(max_epochs=3, batch_size=32, lr=0.01, device="cpu", weight_decay=0.01)
    result = fit(net, sine_windows["train"], sine_windows["val"], cfg)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_cpu_thread_count_is_set_and_reported(sine_windows):
    before = torch.get_num_threads()
    try:
        assert tiny_fit(sine_windows, threads=1, max_epochs=1).threads == 1
    finally:
        torch.set_num_threads(before)


@gpu
def test_bf16_training_on_cuda(sine_windows):
    if torch.cuda.is_bf16_supported():
        assert tiny_fit(sine_windows, device="cuda", precision="bf16").precision == "bf16"
    else:
        with pytest.raises(InputError, match="precision bf16 needs"):
            tiny_fit(sine_windows, device="cuda", precision="bf16")


@gpu
def test_training_on_cuda_is_deterministic_for_a_seed(sine_windows):
    first = tiny_fit(sine_windows, device="cuda", seed=3)
    second = tiny_fit(sine_windows, device="cuda", seed=3)
    assert [h["val_loss"] for h in first.history] == [h["val_loss"] for h in second.history]


def whole_batches(windows, batch: int):
    """The windows with the training set cut to a multiple of `batch`: nothing to drop."""
    train = windows["train"]
    m = len(train) - len(train) % batch
    cut = dataclasses.replace(
        train,
        starts=train.starts[:m],
        targets=train.targets[:m],
        ticker_ids=train.ticker_ids[:m],
        as_of=train.as_of[:m],
    )
    return {**windows, "train": cut}


@gpu
@pytest.mark.parametrize("schedule", [{}, {"lr": 0.5, "lr_patience": 1, "patience": 10}])
def test_cuda_graph_step_trains_like_the_eager_step(sine_windows, schedule):
    """Same losses epoch by epoch, also after the plateau schedule lowers the (tensor) lr."""
    windows = whole_batches(sine_windows, 32)
    common = {"device": "cuda", "batch_size": 32, "precision": "fp32", "max_epochs": 6}
    graphed = tiny_fit(windows, **common, **schedule)
    eager = tiny_fit(windows, cuda_graphs=False, **common, **schedule)
    assert [h["lr"] for h in graphed.history] == pytest.approx([h["lr"] for h in eager.history])
    for g, e in zip(graphed.history, eager.history, strict=True):
        assert g["val_loss"] == pytest.approx(e["val_loss"], rel=1e-3)
    if schedule:
        assert min(h["lr"] for h in graphed.history) < schedule["lr"]


def test_same_seed_data_and_device_give_identical_metrics(sine_prices, sine_windows):
    """The whole training job, not just the loop: weights init, batches, scores."""
    from lstm_pipeline import pipeline
    from lstm_pipeline.config import build_config

    cfg = build_config(
        features__window=10,
        features__horizon=2,
        model__hidden_size=8,
        model__num_layers=1,
        train__max_epochs=3,
        train__device="cpu",
    )

    def scores():
        metrics = pipeline.evaluate_model(
            pipeline.train_model(sine_windows, cfg), sine_windows, sine_prices
        ).metrics
        return {k: v for k, v in metrics.items() if k != "train_windows_per_s"}

    first = scores()
    assert scores() == first and "test_mase" in first and "test_crps" in first


@gpu
def test_cuda_graphs_only_when_the_data_holds_enough_full_batches(sine_windows):
    from lstm_pipeline.runtime import make_runtime
    from lstm_pipeline.train_step import GraphedTrainStep, make_step

    cfg = TrainConfig(device="cuda", batch_size=32)
    runtime = make_runtime(cfg, hidden_size=8)
    net = LSTMForecaster(len(FEATURES), horizon=2, hidden_size=8, num_layers=1).cuda()
    train = sine_windows["train"].to(runtime.device)
    assert isinstance(make_step(net, train, cfg, runtime)[0], GraphedTrainStep)
    big_batches = TrainConfig(device="cuda", batch_size=256)
    assert not isinstance(make_step(net, train, big_batches, runtime)[0], GraphedTrainStep)


QUANTILES = (0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975)


def tiny_quantile_fit(windows, cell="lstm", derived=False, **train):
    torch.manual_seed(0)
    net = LSTMForecaster(
        len(FEATURES),
        horizon=2,
        hidden_size=8,
        num_layers=2,
        dropout=0.1,
        cell=cell,
        derived_features=derived,
        quantiles=QUANTILES,
    )
    cfg = TrainConfig(**{"max_epochs": 3, "batch_size": 32, "lr": 0.01, "device": "cpu", **train})
    return fit(net, windows["train"], windows["val"], cfg)


@pytest.mark.parametrize("cell,derived", [("lstm", False), ("gru", True)])
def test_quantile_models_train_on_the_pinball_loss(sine_windows, cell, derived):
    """The eager TrainStep with the pinball loss: the loss falls, and the quantiles the model
    learnt do not cross and bracket the median."""
    from lstm_pipeline.runtime import make_runtime
    from lstm_pipeline.train import predict_log_returns
    from lstm_pipeline.train_step import TrainStep, make_step

    result = tiny_quantile_fit(sine_windows, cell, derived, max_epochs=4)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    quantiles = predict_log_returns(result.model, sine_windows["val"])
    assert quantiles.shape == (len(sine_windows["val"]), 2, len(QUANTILES))
    assert (quantiles.diff(dim=-1) > 0).all()
    runtime = make_runtime(TrainConfig(device="cpu"), 8, QUANTILES)
    step, _ = make_step(result.model, sine_windows["train"], TrainConfig(device="cpu"), runtime)
    assert type(step) is TrainStep
    assert torch.isfinite(step(torch.arange(32))).all()


@gpu
def test_cuda_graph_step_trains_a_quantile_model_like_the_eager_step(sine_windows):
    """The pinball loss's levels live on the GPU, so the whole step is captured."""
    windows = whole_batches(sine_windows, 32)
    common = {"device": "cuda", "batch_size": 32, "precision": "fp32", "max_epochs": 4}
    graphed = tiny_quantile_fit(windows, **common)
    eager = tiny_quantile_fit(windows, cuda_graphs=False, **common)
    for g, e in zip(graphed.history, eager.history, strict=True):
        assert g["val_loss"] == pytest.approx(e["val_loss"], rel=1e-3)
    assert graphed.history[-1]["train_loss"] < graphed.history[0]["train_loss"]


@gpu
def test_bf16_training_of_a_quantile_model_on_cuda(sine_windows):
    result = tiny_quantile_fit(sine_windows, device="cuda", precision="bf16", max_epochs=3)
    assert result.precision == "bf16"
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
