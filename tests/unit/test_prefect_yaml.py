"""prefect.yaml, what `prefect deploy --all` reads: its entrypoints are our flows, its
parameters pass their validation, its schedules the server's, and it says where runs go."""

import inspect

import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.importtools import import_object

from flows.deploy import check_schedule
from flows.inference import forecast_flow
from flows.scoring import score_flow
from flows.training import train_flow
from tests.conftest import ROOT

SPEC = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in SPEC["deployments"]}


def test_the_file_is_what_prefect_deploy_accepts():
    model = PrefectYamlModel.model_validate(SPEC)
    assert {d.name for d in model.deployments} == {"retrain", "forecast", "score"}
    (pull,) = model.pull or []
    (step,) = pull
    assert import_object(step)  # a step prefect can import, run before every flow run
    assert pull[step]["directory"]


@pytest.mark.parametrize(
    ("name", "flow", "cron"),
    [
        ("retrain", train_flow, "0 6 * * 6"),
        ("forecast", forecast_flow, "30 17 * * 1-5"),
        ("score", score_flow, "0 18 * * 1-5"),
    ],
)
def test_each_deployment_runs_our_flow_with_valid_parameters(name, flow, cron):
    spec = DEPLOYMENTS[name]
    loaded = load_flow_from_entrypoint(spec["entrypoint"])  # as a worker loads it, by path
    assert loaded.name == flow.name
    assert inspect.getsource(loaded.fn) == inspect.getsource(flow.fn)
    assert loaded.parameters == flow.parameters
    validated = flow.validate_parameters(spec["parameters"])
    assert set(validated) <= set(flow.parameters.properties)
    (schedule,) = spec["schedules"]
    assert (schedule["cron"], schedule["timezone"]) == (cron, "America/New_York")
    check_schedule("cron", schedule["cron"], schedule["timezone"])
    assert spec["work_pool"]["name"] == "lstm-pipeline-k8s"
    assert spec["work_pool"]["job_variables"]["image"]


def test_the_retraining_deployment_tags_its_runs_as_scheduled():
    cfg = train_flow.validate_parameters(DEPLOYMENTS["retrain"]["parameters"])["cfg"]
    assert cfg.tracking.trigger == "schedule" and cfg.data.source == "yfinance"
