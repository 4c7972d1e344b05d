"""Degradation events and the retraining automation on a real `prefect server`: a degraded
event of the model starts the served retrain deployment with `trigger=degradation` and the
event's id; a recovery, another model's event and a second degradation within the cooldown
start nothing; the automation is installed once, updated in place, and removed on request."""

import subprocess
import sys
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.alerts import DEGRADED, automation_name, ensure_retrain_automation
from tests.conftest import ROOT
from tests.integration.processes import running
from tests.integration.test_schedules import post, prefect_server, wait_for

MODEL = "probe-model"

# A stand-in for the retrain deployment: the real flow parameter (PipelineConfig validates what
# the automation renders into it), served twice so the automation can move to the other one.
PROBE = """\
from prefect import flow, serve
from lstm_pipeline.config import PipelineConfig, build_config

@flow(name="retrain-probe")
def retrain_probe(cfg: PipelineConfig) -> str:
    return f"{cfg.tracking.trigger} {cfg.tracking.trigger_event}"

if __name__ == "__main__":
    cfg = {"cfg": build_config(tracking__trigger="schedule").model_dump(mode="json")}
    serve(*(retrain_probe.to_deployment(name, parameters=cfg) for name in ("retrain", "other")))
"""

# Events go out from another process, as from the score flow: this one's events worker may be
# bound to the session's harness server.
EMIT = """\
import sys
from types import SimpleNamespace
from prefect.events.worker import EventsWorker
from flows.alerts import emit_verdict

ids = []
for name, state, metric in (
    ("probe-model", "ok", "mase"),
    ("probe-model", "degraded", "mase"),
    ("other-model", "degraded", "mase"),
    ("probe-model", "degraded", "coverage_80"),
):
    verdict = SimpleNamespace(model_name=name, model_version="3", metric=metric, window="20",
        value=1.4, threshold=1.1, matured=40, state=state)
    ids.append(emit_verdict(verdict))
EventsWorker.drain_all()
print(" ".join(ids))
"""


def deployment_id(api: str, name: str) -> str | None:
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        found = client.read_deployments()
    return next((str(d.id) for d in found if d.name == name), None)


def automations(api: str) -> list[dict]:
    return post(api, "automations/filter", {})


def runs_of(api: str, deployment: str) -> list[dict]:
    return post(api, "flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment]}}})


def test_a_degraded_event_starts_the_retrain_deployment_tagged_with_its_id(tmp_path: Path):
    (tmp_path / "serve").mkdir()
    probe = tmp_path / "serve" / "probe.py"
    probe.write_text(PROBE)
    log = tmp_path / "serve" / "serve.log"
    with prefect_server(tmp_path / "prefect") as api:
        env = {"PREFECT_API_URL": api, "PYTHONPATH": str(ROOT)}
        with running([sys.executable, str(probe)], log, env):
            retrain = wait_for(lambda: deployment_id(api, "retrain"), "retrain deployment", log)
            other = wait_for(lambda: deployment_id(api, "other"), "other deployment", log)
            with temporary_settings({PREFECT_API_URL: api}):
                first = ensure_retrain_automation(retrain, MODEL, enabled=True)
                before = automations(api)
                assert ensure_retrain_automation(retrain, MODEL, enabled=True) == first
            assert automations(api) == before  # not updated: the same automation, untouched
            [installed] = before
            assert installed["name"] == automation_name(MODEL) and installed["id"] == first

            emitted = subprocess.run(
                [sys.executable, "-c", EMIT],
                env={**env, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            recovered, degraded, elsewhere, again = emitted.stdout.split()

            def completed() -> dict | None:
                runs = runs_of(api, retrain)
                return next((r for r in runs if r["state_type"] == "COMPLETED"), None)

            run = wait_for(completed, "retraining run started by the event", log, 120)
            # the other three events have been judged by now: none started a second run
            assert len(runs_of(api, retrain)) == 1
            tracking = run["parameters"]["cfg"]["tracking"]
            started_by = tracking["trigger_event"]
            # whichever of the model's two degraded events the server judged first (emitted in
            # the same instant, they may arrive in either order); the cooldown stops the other
            assert tracking["trigger"] == "degradation" and started_by in (degraded, again)
            assert len({recovered, degraded, elsewhere, again}) == 4
            events = post(api, "events/filter", {"filter": {"event": {"name": [DEGRADED]}}})
            seen = {e["id"]: e for e in events["events"]}
            assert seen[started_by]["resource"]["lstm-pipeline.model.name"] == MODEL
            assert seen[degraded]["payload"] == {
                "metric": "mase",
                "window": "20",
                "value": 1.4,
                "threshold": 1.1,
                "matured": 40,
            }

            with temporary_settings({PREFECT_API_URL: api}):
                assert ensure_retrain_automation(other, MODEL, enabled=True) == first  # updated
                [moved] = automations(api)
                assert moved["actions"][0]["deployment_id"] == other
                assert ensure_retrain_automation(other, MODEL, enabled=False) is None
            assert automations(api) == []
