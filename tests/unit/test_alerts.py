"""The alert events and the retraining automation without a server: which verdicts become which
events and what they carry, and the parameters the automation gives the retrain deployment.
(tests/integration/test_alerts.py proves them on a real Prefect server.)"""

import math
from types import SimpleNamespace
from uuid import uuid4

import pytest
from prefect.events import Event
from prefect.events.schemas.automations import EventTrigger

from flows import alerts
from flows.alerts import (
    DEGRADED,
    EVENT_ID_TEMPLATE,
    RECOVERED,
    degradation_parameters,
    emit_verdict,
    retrain_automation,
)
from lstm_pipeline.config import PipelineConfig, build_config
from lstm_pipeline.errors import InputError


def verdict(state: str, value: float = 1.3, threshold: object = 1.1, metric: str = "mase"):
    return SimpleNamespace(
        model_name="lstm-forecaster",
        model_version="4",
        metric=metric,
        window="60",
        value=value,
        threshold=threshold,
        matured=45,
        state=state,
    )


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch):
    """The events emit_verdict hands to Prefect's emit_event, as Prefect builds them. (Prefect's
    events worker, fed an asserting client, failed under load when it could not reach an API:
    delivery to a real server is tests/integration/test_alerts.py's.)"""
    events: list[Event] = []

    def emit(event: str, resource: dict, payload: dict, **_: object) -> Event:
        events.append(Event(event=event, resource=resource, payload=payload))
        return events[-1]

    monkeypatch.setattr(alerts, "emit_event", emit)
    return lambda: list(events)


def test_a_degraded_and_a_recovered_verdict_are_events_about_the_model_version(sent):
    degraded = emit_verdict(verdict("degraded"))
    recovered = emit_verdict(verdict("ok", 0.95, (0.7, 0.9), "coverage_80"))
    first, second = sent()
    assert (str(first.id), first.event) == (degraded, DEGRADED)
    assert (str(second.id), second.event) == (recovered, RECOVERED)
    assert first.resource.id == "lstm-pipeline.model.lstm-forecaster.4"
    assert first.resource["lstm-pipeline.model.name"] == "lstm-forecaster"
    assert first.resource["lstm-pipeline.model.version"] == "4"
    assert first.payload == {
        "metric": "mase",
        "window": "60",
        "value": 1.3,
        "threshold": 1.1,
        "matured": 45,
    }
    assert second.payload["threshold"] == [0.7, 0.9]  # a range: both bounds


def test_too_few_matured_forecasts_say_nothing_and_no_number_is_nan(sent):
    assert emit_verdict(verdict("too_few", math.nan)) is None
    emit_verdict(verdict("degraded", math.inf, (math.nan, 0.9)))
    [event] = sent()
    assert event.payload["value"] is None and event.payload["threshold"] == [None, 0.9]


def test_the_retrain_parameters_are_the_deployments_with_the_degradation_trigger():
    given = {"cfg": build_config(tracking__trigger="schedule").model_dump(mode="json")}
    changed = degradation_parameters(given)
    assert given["cfg"]["tracking"]["trigger"] == "schedule"  # the deployment's, untouched
    tracking = changed["cfg"]["tracking"]
    assert tracking["trigger"] == "degradation" and tracking["trigger_event"] == EVENT_ID_TEMPLATE
    # what Prefect renders there (the event's id) makes a valid config
    rendered = {**changed["cfg"], "tracking": {**tracking, "trigger_event": "0195f5d6-3c2a"}}
    assert PipelineConfig.model_validate(rendered).tracking.trigger_event == "0195f5d6-3c2a"
    with pytest.raises(InputError, match="no `cfg` parameter"):
        degradation_parameters({"data": {}})


def test_the_automation_reacts_to_degraded_events_of_its_model_only():
    given = {"cfg": build_config().model_dump(mode="json")}
    automation = retrain_automation("a", uuid4(), given, "m")
    trigger = automation.trigger
    assert isinstance(trigger, EventTrigger) and trigger.expect == {DEGRADED}  # not RECOVERED
    assert trigger.match.root == {"lstm-pipeline.model.name": "m"}
