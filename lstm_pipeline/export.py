"""torch -> ONNX: raw windows in, prices out, normalisation inside; checked before it ships."""

from __future__ import annotations

import copy
import json
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from lstm_pipeline.data import FEATURES
from lstm_pipeline.errors import ExportError
from lstm_pipeline.features import CLOSE
from lstm_pipeline.files import write_atomic
from lstm_pipeline.model import LSTMForecaster, PriceForecaster
from lstm_pipeline.predict import OnnxForecaster

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-5  # max abs error in normalised (log-return) space
OPSET = 17


def export_onnx(
    net: LSTMForecaster, sample: torch.Tensor, path: str | Path, metadata: dict[str, str]
) -> Path:
    """Write the price model to `path` (one self-contained file) and check parity with torch.

    Args:
        sample: [B, W, F] real raw windows, B >= 2; also used for the parity check.
        metadata: extra `metadata_props` (run id, data cut-off...); features/window/horizon added.
    """
    if sample.shape[0] < 2:
        raise ValueError("export needs a sample of batch >= 2 (batch 1 would fix the batch axis)")
    net = copy.deepcopy(net).float().cpu().eval()
    sample = sample.float().cpu()
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # the LSTM batch-size warning does not apply: batch is dynamic
        with torch.no_grad():
            # eval() on the wrapper: export restores the wrapper's mode recursively afterwards
            program = _trace(PriceForecaster(net).eval(), sample)
    props = {
        "features": json.dumps(list(FEATURES)),  # a JSON list: names may hold any character
        "window": str(sample.shape[1]),
        "horizon": str(net.horizon),
        "hidden_size": str(net.rnn.hidden_size),  # sizes a forecast's calls (predict.chunk_for)
        "output": "price forecast for horizons 1..horizon",
        **metadata,
    }
    if net.quantiles:
        props["quantile_levels"] = json.dumps(list(net.quantiles))
        props["output"] = "median price forecast for horizons 1..horizon, and its quantiles"
    _declare_output_sizes(program, net.horizon, len(net.quantiles))
    onnx.helper.set_model_props(program, props)
    onnx.checker.check_model(program, full_check=True)
    path = Path(path)
    write_atomic(path, lambda tmp: onnx.save_model(program, str(tmp)))
    check_parity(net, path, sample)
    return path


def _trace(model: PriceForecaster, sample: torch.Tensor) -> onnx.ModelProto:
    # The legacy TorchScript exporter handles nn.LSTM with a dynamic batch and one file output.
    outputs = ["forecast", "quantiles"] if model.net.quantiles else ["forecast"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "traced.onnx"
        torch.onnx.export(
            model,
            (sample,),
            str(path),
            input_names=["window"],
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in ["window", *outputs]},
            opset_version=OPSET,
            dynamo=False,
        )
        return onnx.load_model(str(path))


def _declare_output_sizes(program: onnx.ModelProto, horizon: int, levels: int) -> None:
    """Write the outputs' sizes beyond the batch axis into the graph, [batch, H] and
    [batch, H, Q]: the tracer leaves some symbolic (the quantiles' last axis, once gaps are
    scaled by the window's volatility), and a consumer checks a model's shapes when it opens."""
    sizes = {"forecast": (horizon,), "quantiles": (horizon, levels)}
    for output in program.graph.output:
        for dim, size in zip(
            output.type.tensor_type.shape.dim[1:], sizes[output.name], strict=True
        ):
            dim.dim_value = size


def check_parity(net: LSTMForecaster, path: Path, sample: torch.Tensor) -> float:
    """Max abs error between ONNX and torch in log-return space at batch 1 and len(sample),
    over the forecast and, for a quantile model, every quantile.

    Raises ExportError above PARITY_TOLERANCE.
    """
    net = net.eval()
    session = OnnxForecaster(path)
    worst = 0.0
    for batch in (sample[:1], sample):
        with torch.no_grad():
            expected = net(batch).double().numpy()  # [B, H] or [B, H, Q]
        forecast, quantiles = session.predict_quantiles(batch.numpy())
        last_close = batch[:, -1, CLOSE].double().numpy()
        got = np.log(forecast.astype(np.float64) / last_close[:, None])
        if quantiles is not None:
            median = expected[..., net.median_index]
            got_q = np.log(quantiles.astype(np.float64) / last_close[:, None, None])
            worst = max(worst, float(np.abs(got_q - expected).max()))
            expected = median
        worst = max(worst, float(np.abs(got - expected).max()))
    if not worst <= PARITY_TOLERANCE:
        raise ExportError(f"ONNX and torch differ by {worst:.2e} (> {PARITY_TOLERANCE:.0e})")
    log.info("ONNX parity with torch: max abs error %.2e at batch 1 and %d", worst, len(sample))
    return worst
