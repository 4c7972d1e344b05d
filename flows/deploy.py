"""Scheduled retraining, forecasting and scoring: three cron deployments served from one process.

`serve` registers the deployments on the Prefect server named by PREFECT_API_URL; the server's
scheduler creates the runs and this process executes them, each in a subprocess.
"""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import prefect
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron
from prefect.settings import get_current_settings
from prefect.types.entrypoint import EntrypointType
from pydantic import ValidationError

from flows.alerts import ensure_retrain_automation
from flows.inference import forecast_flow
from flows.scoring import score_flow
from flows.training import train_flow
from lstm_pipeline.config import PipelineConfig, with_trigger
from lstm_pipeline.errors import InputError
from lstm_pipeline.history import model_name_of

START_SERVER = (
    "PREFECT_API_URL is not set: start a server (make prefect-server) and "
    "export PREFECT_API_URL=http://127.0.0.1:4200/api"
)


def check_schedule(option: str, cron: str, timezone: str) -> None:
    """Raise InputError (one line) unless Prefect's scheduler accepts `cron` in `timezone`."""
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"--timezone {timezone!r} is not an IANA time zone") from None
    try:
        CronSchedule(cron=cron, timezone=timezone)  # the server's own validation, offline
    except ValidationError:
        raise InputError(
            f"{option} {cron!r} is not a cron expression (minute hour day month weekday)"
        ) from None


def require_server() -> str:
    """The API URL; a temporary server would accept the deployments but never run them."""
    url = get_current_settings().api.url
    if not url:
        raise InputError(START_SERVER)
    return url


def build_deployments(
    cfg: PipelineConfig,
    model_uri: str,
    output: str,
    retrain_cron: str,
    forecast_cron: str,
    timezone: str,
    forecast_store: str | None = None,  # None: the runs read $LSTM_PIPELINE_FORECAST_STORE
    score_cron: str | None = None,  # None: no `score` deployment
) -> list[RunnerDeployment]:
    """The `retrain`, `forecast` and (with `score_cron`) `score` deployments, their parameters
    fixed now. `score` scores the forecasts the `forecast` deployment records: those of the
    model's name (see history.model_name_of), every ticker the history holds."""
    # By module path, so the runs find the flows wherever the serve process was started.
    common: dict[str, Any] = {"entrypoint_type": EntrypointType.MODULE_PATH, "tags": ["schedule"]}
    retrain = train_flow.to_deployment(
        "retrain",
        schedule=Cron(retrain_cron, timezone=timezone),
        parameters={"cfg": with_trigger(cfg, "schedule").model_dump(mode="json")},
        description="Retrain on the configured tickers; the gate decides the champion.",
        **common,
    )
    forecast = forecast_flow.to_deployment(
        "forecast",
        schedule=Cron(forecast_cron, timezone=timezone),
        parameters={
            "data": cfg.data.model_dump(mode="json"),
            "model_uri": model_uri,
            "output": output,
            "tracking_uri": cfg.tracking.tracking_uri,
            "forecast_store": forecast_store,
        },
        description="Forecast the configured tickers with the registry's model.",
        **common,
    )
    deployments = [retrain, forecast]
    if score_cron is not None:
        score = score_flow.to_deployment(
            "score",
            schedule=Cron(score_cron, timezone=timezone),
            parameters={
                "data": cfg.data.model_dump(mode="json"),
                "model_name": model_name_of(model_uri),
                "tracking_uri": cfg.tracking.tracking_uri,
                "forecast_store": forecast_store,
                "monitor": cfg.monitor.model_dump(mode="json"),
            },
            description="Score the matured forecasts against realised closes; alert on a change.",
            **common,
        )
        deployments.append(score)
    # to_deployment is async-dispatched: its type says it may be a coroutine, called from
    # sync code it is the deployment
    return [cast(RunnerDeployment, d) for d in deployments]


def install_retrain_automation(
    retrain: RunnerDeployment, model_name: str, enabled: bool
) -> str | None:
    """Register `retrain` (serve would, a moment later: the same upsert) for its id, then the
    automation that runs it on `model_name`'s degraded events (removed when not `enabled`)."""
    retrain_id = cast(UUID, retrain.apply())  # async-dispatched: from sync code, the id
    return ensure_retrain_automation(retrain_id, model_name, enabled=enabled)


def serve_deployments(deployments: list[RunnerDeployment]) -> None:
    """Run scheduled runs until Ctrl-C or SIGTERM; the schedules stay active after, so a restart
    (or another serve) picks up where this one left off instead of finding them paused."""
    prefect.serve(*deployments, pause_on_shutdown=False)
