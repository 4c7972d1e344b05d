"""`make demo`: train on the bundled sample, promote or explain, forecast, say where to look.

Offline: the `sample` source is real daily prices shipped inside the package.
"""

from __future__ import annotations

import sys
import time

from flows.cli import configure_logging
from flows.commands import format_training


def main() -> int:
    configure_logging()
    from flows.inference import forecast_flow
    from flows.temporary_server import use_tied_server
    from flows.training import train_flow
    from lstm_pipeline.config import DEFAULT_FORECAST_OUTPUT, DEFAULT_MODEL_URI, build_config

    use_tied_server()  # one temporary Prefect server for both flows, gone when the demo is

    started = time.perf_counter()
    cfg = build_config(data__source="sample")
    print(f"training on the bundled sample ({', '.join(cfg.data.tickers)}), this takes a minute...")
    result = train_flow(cfg)
    print(format_training(result))

    model_uri = DEFAULT_MODEL_URI
    if not result["promoted"]:
        from lstm_pipeline.tracking import CHAMPION, Store

        store = Store.open(cfg.tracking.tracking_uri)
        if store.version_by_alias(cfg.tracking.model_name, CHAMPION) is None:
            model_uri = f"models:/{result['model_name']}/{result['model_version']}"
            print(
                f"no champion yet: forecasting with the version just trained ({model_uri}),"
                " a challenger that did not beat the naive forecast"
            )
    forecast = forecast_flow(cfg.data, model_uri, DEFAULT_FORECAST_OUTPUT)
    print(
        f"\nforecasts: {forecast['output']} ({forecast['rows']} rows, model {model_uri} ="
        f" version {forecast['model_version']})"
    )
    print(
        "MLflow UI: make mlflow-ui, then open http://127.0.0.1:5000"
        f" (experiment {cfg.tracking.experiment})"
    )
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
