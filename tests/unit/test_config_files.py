"""Every bad config file is bad input (InputError: exit 2, one line), never another exception:
bytes that are not UTF-8, files that never end, values of the wrong type, inf and nan."""

from __future__ import annotations

import os
import tempfile
from datetime import date
from pathlib import Path
from typing import get_args

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstm_pipeline.config import MAX_CONFIG_BYTES, PipelineConfig, build_config
from lstm_pipeline.errors import InputError


def _fields_of(kind: type) -> list[tuple[str, str]]:
    """Every (section, key) of the config whose value is a `kind` (or optionally one)."""
    return [
        (section, key)
        for section, info in PipelineConfig.model_fields.items()
        for key, field in info.annotation.model_fields.items()  # type: ignore[union-attr]
        if field.annotation is kind or kind in get_args(field.annotation)
    ]


FLOAT_FIELDS = _fields_of(float)
INT_FIELDS = _fields_of(int)


def test_the_int_fields_are_found():
    assert {("train", "seed"), ("model", "num_layers"), ("train", "threads")} <= set(INT_FIELDS)


@pytest.mark.parametrize("value", [10**23, -(10**23), 2**63])
@pytest.mark.parametrize("section,key", INT_FIELDS)
def test_no_whole_number_of_the_config_is_unbounded(tmp_path: Path, section, key, value):
    """A typo of many digits is bad input at once: not a numpy overflow, a hang building 10**23
    layers, or a flow parameter Prefect's database cannot store (int64)."""
    path = tmp_path / "c.yaml"
    path.write_text(f"{section}: {{{key}: {value}}}\n")
    with pytest.raises(InputError, match=rf"^invalid {section}\.{key} \(config {path}\): "):
        build_config(path)


def test_the_float_fields_are_found():
    assert {("train", "lr"), ("data", "retry_base_delay"), ("train", "min_delta")} <= set(
        FLOAT_FIELDS
    )


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e400"])
@pytest.mark.parametrize("section,key", FLOAT_FIELDS)
def test_no_float_of_the_config_takes_inf_or_nan(tmp_path: Path, section, key, value):
    path = tmp_path / "c.yaml"
    path.write_text(f"{section}: {{{key}: {value}}}\n")
    with pytest.raises(InputError, match=rf"^invalid {section}\.{key} \(config {path}\): "):
        build_config(path)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"train: {lr: 0.01}\n# caf\xe9\n", r"is not UTF-8 text \(byte 23\)"),
        (b"\xff\xfe\x00t\x00r", r"is not UTF-8 text"),
        (b"data: {data_dir: [a, b]}\n", r"^invalid data.data_dir \(config .*\): Input should be"),
        (b"data: {cache_dir: {x: 1}}\n", r"^invalid data.cache_dir \(config .*\): Input should"),
        (b'data: {data_dir: "a\\0b"}\n', r"^invalid data.data_dir .*NUL"),
        (b"data: {cache_dir: '" + b"x" * 300 + b"'}\n", r"^invalid data.cache_dir .*255 bytes"),
        (b"[" * 20000 + b"]" * 20000, r"(nested too deeply|not valid YAML)"),
    ],
)
def test_a_bad_config_file_is_one_input_error(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        build_config(path)


def test_a_path_given_as_a_list_is_bad_input_even_for_a_csv_folder(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {data_dir: [a, b]}\n")
    with pytest.raises(InputError, match=r"^invalid data.data_dir \(config .*\): Input should"):
        build_config(path, data__source="csv")  # not a TypeError from the folder scan


def test_a_config_that_never_ends_or_is_no_file_is_refused_at_once(tmp_path: Path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    for path in (Path("/dev/zero"), fifo, tmp_path):
        with pytest.raises(InputError, match=rf"^config {path} is not a regular file$"):
            build_config(path)
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * MAX_CONFIG_BYTES)
    with pytest.raises(InputError, match=rf"^config {big} is larger than {MAX_CONFIG_BYTES}"):
        build_config(big)


SECTIONS = st.sampled_from([*PipelineConfig.model_fields, "optimizer", "1"])
KEYS = st.one_of(
    st.sampled_from(
        sorted(
            {
                key
                for info in PipelineConfig.model_fields.values()
                for key in info.annotation.model_fields
            }  # type: ignore[union-attr]
        )
    ),
    st.text(max_size=8),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**1100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, 0.0, -0.0]),
    st.text(max_size=300),
    st.binary(max_size=20),
    st.dates(min_value=date(1, 1, 1)),
    st.sampled_from(["csv", "sample", "yfinance", "lstm", "gru", "cuda", "sqlite:///x.db"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
TREES = st.dictionaries(SECTIONS, st.dictionaries(KEYS, VALUES, max_size=4) | VALUES, max_size=4)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=TREES)
def test_any_yaml_tree_gives_a_config_or_one_input_error(tree):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.yaml"
        path.write_text(yaml.safe_dump(tree, allow_unicode=True))
        try:
            cfg = build_config(path)
        except InputError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert isinstance(cfg, PipelineConfig)
            numbers = [v for s in cfg.model_dump().values() for v in s.values()]
            assert all(abs(v) < 2**32 for v in numbers if type(v) is int), numbers


@settings(max_examples=200, deadline=None)
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_give_a_config_or_one_input_error(content: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.yaml"
        path.write_bytes(content)
        try:
            build_config(path)
        except InputError:
            pass
