"""An option the user did not give never overrides the --config file; a given one always does.
The pairs (command, option, config field) are read from the parser and the config models."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import yaml

from flows import commands
from flows.cli import build_parser
from lstm_pipeline.config import PipelineConfig, option_overrides

FIELDS = {
    key: (section, field)
    for section, info in PipelineConfig.model_fields.items()
    for key, field in info.annotation.model_fields.items()  # type: ignore[union-attr]
}


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _pairs() -> list[tuple[str, argparse.Action]]:
    """(command, option) for every option, of a command that reads --config, that is named
    like a config field."""
    return [
        (name, action)
        for name, parser in _subcommands().items()
        if "--config" in parser._option_string_actions
        for action in parser._actions
        if action.option_strings and action.dest in FIELDS
    ]


PAIRS = _pairs()


def test_the_pairs_cover_every_kind_of_option():
    found = {(command, action.dest) for command, action in PAIRS}
    for command in ("fetch", "train", "backtest", "tune", "forecast", "serve"):
        assert (command, "source") in found and (command, "start") in found
    assert {("fetch", "interval"), ("train", "seed"), ("train", "trigger")} <= found
    assert {("forecast", "tracking_uri"), ("tune", "experiment"), ("serve", "device")} <= found
    assert len(PAIRS) > 60


def _two_values(key: str) -> tuple[Any, Any]:
    """Two valid values of field `key`, the second its default where that is possible: the
    option must win even when it repeats the default."""
    section, field = FIELDS[key]
    annotation, default = field.annotation, field.default
    special: dict[str, tuple[Any, Any]] = {
        "tickers": (("AAA",), ("BBB", "CCC")),
        "start": (date(2020, 1, 2), date(2019, 6, 3)),
        "end": (date(2024, 1, 2), date(2023, 6, 3)),
        "max_failure_ratio": (0.25, default),
        "tracking_uri": ("sqlite:///from-file.db", "sqlite:///from-option.db"),
    }
    if key in special:
        return special[key]
    if get_origin(annotation) is not None and type(None) in get_args(annotation):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    if get_args(annotation) and all(isinstance(a, str) for a in get_args(annotation)):  # Literal
        choices = [c for c in get_args(annotation) if c != default]
        return choices[0], default
    if annotation is int:
        return default + 7, default
    return f"from-file-{key}", f"from-option-{key}"  # str: names, folders


def _argv(action: argparse.Action, value: Any) -> list[str]:
    values = value if isinstance(value, tuple) else (value,)
    return [action.option_strings[-1], *(str(v) for v in values)]


def _config(tmp_path: Path, command: str, extra: list[str], file_tree: dict) -> PipelineConfig:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(file_tree))
    positional = {"fetch": ["ZZZ"], "promote": ["1"]}.get(command, [])  # TICKER, VERSION
    args = build_parser().parse_args([command, *positional, "--config", str(path), *extra])
    return commands.pipeline_config(args)


@pytest.mark.parametrize(
    "command,action", PAIRS, ids=[f"{c}-{a.option_strings[-1]}" for c, a in PAIRS]
)
def test_the_file_holds_unless_the_option_is_given(tmp_path: Path, command, action):
    section, _ = FIELDS[action.dest]
    in_file, in_option = _two_values(action.dest)
    tree: dict[str, dict[str, Any]] = {"data": {"data_dir": str(tmp_path), "tickers": ["AAA"]}}
    tree.setdefault(section, {})[action.dest] = in_file
    if action.dest == "data_dir":
        tree["data"]["data_dir"] = in_file

    def value(cfg: PipelineConfig) -> Any:
        return getattr(getattr(cfg, section), action.dest)

    assert value(_config(tmp_path, command, [], tree)) == in_file
    assert value(_config(tmp_path, command, _argv(action, in_option), tree)) == in_option


def test_options_that_are_no_config_field_have_no_config_to_override():
    """An option with a default of its own must not be a config field in disguise."""
    for _, parser in _subcommands().items():
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False):
                assert action.dest not in FIELDS, action.option_strings


def test_a_config_files_model_name_picks_the_forecasts_default_model(tmp_path: Path):
    tree = {"data": {"tickers": ["AAA"]}, "tracking": {"model_name": "mine"}}
    for given, expected in (([], "models:/mine@champion"), (["--model-uri", "m.onnx"], "m.onnx")):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(tree))
        args = build_parser().parse_args(["forecast", "--config", str(path), *given])
        assert commands._model_uri(args, commands.pipeline_config(args)) == expected


def test_a_tracking_uri_option_with_credentials_still_beats_the_file(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    secret = "postgresql://bob:pw@db:5432/mlflow"
    tree = {"tracking": {"tracking_uri": "sqlite:///from-file.db"}}
    cfg = _config(tmp_path, "train", ["--tracking-uri", secret], tree)
    # the URI left the config for the environment, where the store reads it; the file lost
    assert cfg.tracking.tracking_uri is None
    import os

    assert os.environ["MLFLOW_TRACKING_URI"] == secret


def test_option_overrides_take_only_config_fields():
    assert option_overrides({"seed": 3, "folds": 4, "tracking_uri": None}) == {
        "train__seed": 3,
        "tracking__tracking_uri": None,
    }
