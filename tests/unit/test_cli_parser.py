"""The `lstm-pipeline` parser: its choices and defaults are the config's, and `--help`
answers at once because building the parser imports no heavy library.

Prefect, MLflow, torch and pandas each cost from a quarter to a whole second to import; the
commands import them when they run, the help never does.
"""

import re
import subprocess
import sys
from typing import get_args

import pytest

from flows import commands
from flows.cli import build_parser
from flows.runners import RunnerKind
from lstm_pipeline.config import Device, Source, Trigger, build_config
from lstm_pipeline.errors import InputError
from tests.conftest import ROOT, cli_env

HEAVY = ("prefect", "mlflow", "torch", "pandas", "onnxruntime", "optuna", "yfinance", "rich")
HEAVY += ("exchange_calendars",)  # forecast target dates only

# every `--help` in one fresh interpreter, then the heavy modules it had imported
PROBE = f"""
import sys
from flows.cli import main

for command in sys.argv[1:]:
    try:
        main([*command.split(), "--help"])
    except SystemExit:
        pass
print("imported:", *sorted(m for m in {HEAVY!r} if m in sys.modules))
"""


def probe(*commands: str) -> list[str]:
    """The heavy modules imported by `lstm-pipeline [COMMAND] --help` for each of `commands`."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *commands],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
    )
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("imported:"), done.stdout
    return last.split()[1:]


def subcommands() -> list[str]:
    """The commands `lstm-pipeline --help` lists, e.g. {fetch,train,...}."""
    done = subprocess.run(
        [sys.executable, "-c", "from flows.cli import main; main(['--help'])"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
    )
    listed = re.search(r"\{([a-z,-]+)\}", done.stdout)
    assert listed, done.stdout
    return listed.group(1).split(",")


def test_help_of_the_cli_and_of_every_command_imports_no_heavy_library():
    commands = subcommands()
    assert {"fetch", "train", "forecast", "serve", "promote"} <= set(commands)
    assert probe("", *commands) == []


def test_options_left_out_leave_the_config_file_and_then_the_config_defaults(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("data: {source: sample}\ntrain: {device: cpu}\n")
    given = commands.pipeline_config(build_parser().parse_args(["train", "--config", str(config)]))
    assert (given.data.source, given.train.device) == ("sample", "cpu")
    left_out = commands.pipeline_config(build_parser().parse_args(["train"]))
    assert left_out == build_config()
    named = build_parser().parse_args(["train", "--config", str(config), "--source", "csv"])
    with pytest.raises(InputError, match="source 'csv' needs data_dir"):
        commands.pipeline_config(named)


@pytest.mark.parametrize(
    ("option", "choices"),
    [
        ("--source", get_args(Source)),
        ("--device", get_args(Device)),
        ("--trigger", get_args(Trigger)),
        ("--task-runner", get_args(RunnerKind)),
    ],
)
def test_the_choices_of_an_option_are_the_values_its_config_field_takes(option, choices, capsys):
    for value in choices:
        build_parser().parse_args(["train", option, value])
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["train", option, "none-of-them"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err
