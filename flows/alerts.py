"""A model's degradation as Prefect events, and the automation that retrains on them.

The score flow emits `lstm-pipeline.model.degraded` when a window's verdict turns "degraded" and
`lstm-pipeline.model.recovered` when it is back in range, about the resource
`lstm-pipeline.model.<name>.<version>`. `serve` installs one automation per model: a degraded
event runs the `retrain` deployment with its own config, tagged `trigger=degradation` and the
event's id. Events go out whether or not the automation exists (`--no-auto-retrain` removes it).
"""

from __future__ import annotations

import copy
import math
from datetime import timedelta
from typing import Any, Protocol
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import Automation, AutomationCore, EventTrigger, Posture

from lstm_pipeline.errors import InputError

DEGRADED = "lstm-pipeline.model.degraded"
RECOVERED = "lstm-pipeline.model.recovered"
EVENT_OF_STATE = {"degraded": DEGRADED, "ok": RECOVERED}  # "too_few" says nothing
MODEL_NAME_LABEL = "lstm-pipeline.model.name"
MODEL_VERSION_LABEL = "lstm-pipeline.model.version"
# One score run may turn several windows and metrics degraded at once, each its own event: the
# first starts a retraining and the others within this time start none (Prefect's reactive
# trigger fires on the first event, then opens its next window only after `within`).
RETRAIN_COOLDOWN = timedelta(hours=1)
# Prefect renders this template in the action's parameters when the automation fires
EVENT_ID_TEMPLATE = {"__prefect_kind": "jinja", "template": "{{ event.id }}"}


class VerdictLike(Protocol):
    """What emit_event needs of a verdict (lstm_pipeline.live.Verdict)."""

    @property
    def model_name(self) -> str: ...
    @property
    def model_version(self) -> str: ...
    @property
    def metric(self) -> str: ...
    @property
    def window(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def threshold(self) -> Any: ...
    @property
    def matured(self) -> int: ...
    @property
    def state(self) -> str: ...


def model_resource(model_name: str, model_version: str) -> dict[str, str]:
    """The Prefect resource of one model version: what its events are about."""
    return {
        "prefect.resource.id": f"lstm-pipeline.model.{model_name}.{model_version}",
        "prefect.resource.name": f"{model_name} v{model_version}",
        MODEL_NAME_LABEL: model_name,
        MODEL_VERSION_LABEL: str(model_version),
    }


def emit_verdict(verdict: VerdictLike) -> str | None:
    """Emit the event of a changed verdict ("degraded" or "ok"); its id, or None when there is
    nothing to say ("too_few") or no Prefect API to say it to."""
    name = EVENT_OF_STATE.get(verdict.state)
    if name is None:
        return None
    event = emit_event(
        name,
        resource=model_resource(verdict.model_name, verdict.model_version),
        payload=verdict_payload(verdict),
    )
    return None if event is None else str(event.id)


def verdict_payload(verdict: VerdictLike) -> dict[str, Any]:
    """A verdict's numbers as JSON takes them (NaN and inf as null): the event's payload."""
    return {
        "metric": verdict.metric,
        "window": str(verdict.window),
        "value": _json_number(verdict.value),
        "threshold": _json_value(verdict.threshold),
        "matured": int(verdict.matured),
    }


def automation_name(model_name: str) -> str:
    return f"lstm-pipeline: retrain {model_name} on degradation"


def ensure_retrain_automation(
    retrain_deployment_id: str | UUID, model_name: str, enabled: bool
) -> str | None:
    """The id of the one automation that runs the retrain deployment on `model_name`'s degraded
    events: created when absent, updated when it differs, left alone when it matches (the same
    id every time); with `enabled` False, removed (None). Duplicates a race left are removed."""
    name = automation_name(model_name)
    with get_client(sync_client=True) as client:
        found = sorted(client.read_automations_by_name(name), key=lambda a: str(a.id))
        if not enabled:
            for automation in found:
                client.delete_automation(automation.id)
            return None
        deployment = client.read_deployment(UUID(str(retrain_deployment_id)))
        wanted = retrain_automation(name, deployment.id, deployment.parameters, model_name)
        if not found:
            return str(client.create_automation(wanted))
        kept, *extra = found
        for automation in extra:
            client.delete_automation(automation.id)
        if not same_automation(kept, wanted):
            client.update_automation(kept.id, wanted)
        return str(kept.id)


def retrain_automation(
    name: str, deployment_id: UUID, parameters: dict[str, Any], model_name: str
) -> AutomationCore:
    """On each degraded event of `model_name` (after a cooldown), run the deployment with its
    own parameters, its config's trigger set to `degradation` and the event's id."""
    trigger = EventTrigger(
        expect={DEGRADED},
        match={MODEL_NAME_LABEL: model_name},
        posture=Posture.Reactive,
        threshold=1,
        within=RETRAIN_COOLDOWN,
    )
    action = RunDeployment(
        source="selected",
        deployment_id=deployment_id,
        parameters=degradation_parameters(parameters),
    )
    return AutomationCore(
        name=name,
        description=(
            f"Retrains {model_name} when {DEGRADED} arrives for it; the gate decides as usual. "
            "`lstm-pipeline serve --no-auto-retrain` removes it (the events still go out)."
        ),
        enabled=True,
        trigger=trigger,
        actions=[action],
    )


def degradation_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """The retrain deployment's parameters, its config tagged as started by a degraded event."""
    if not isinstance(parameters.get("cfg"), dict):
        raise InputError("the retrain deployment has no `cfg` parameter: not a training flow")
    changed = copy.deepcopy(parameters)
    tracking = changed["cfg"].setdefault("tracking", {})
    tracking["trigger"] = "degradation"
    tracking["trigger_event"] = dict(EVENT_ID_TEMPLATE)
    return changed


def same_automation(found: Automation, wanted: AutomationCore) -> bool:
    """Whether the server's automation already is `wanted` (ids the server adds left out)."""
    return _comparable(found) == _comparable(wanted)


def _comparable(automation: AutomationCore) -> dict[str, Any]:
    fields = set(AutomationCore.model_fields)
    dumped = automation.model_dump(mode="json", include=fields)
    dumped["trigger"].pop("id", None)
    return dumped


def _json_number(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None  # JSON has no NaN


def _json_value(value: Any) -> Any:
    """A threshold as JSON: a number, or the bounds of a range as a list."""
    if isinstance(value, list | tuple):
        return [_json_number(v) for v in value]
    return _json_number(value)
