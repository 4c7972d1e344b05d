"""The `monitor:` section (MonitorConfig): its defaults, a YAML file setting it, and every bad
value one line of InputError naming the key, never another exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_pipeline.config import DAYS_MAX, MonitorConfig, build_config
from lstm_pipeline.errors import InputError


def test_the_defaults_are_the_issues_and_a_yaml_section_sets_them(tmp_path: Path):
    assert build_config().monitor == MonitorConfig(
        windows=(20, 60), min_matured=40, mase_margin=0.1, coverage_80_low=0.7, coverage_80_high=0.9
    )
    path = tmp_path / "c.yaml"
    path.write_text("monitor: {windows: [5, 10], min_matured: 3, coverage_80_high: 0.95}\n")
    monitor = build_config(path).monitor
    assert (monitor.windows, monitor.min_matured, monitor.coverage_80_high) == ((5, 10), 3, 0.95)
    assert build_config(path).flat()["monitor.windows"] == "5,10"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("windows: [20, 20]", r"invalid monitor\.windows \(config .*\): windows \[20, 20\] repeat"),
        (
            "windows: [0]",
            r"invalid monitor\.windows\.0 \(config .*\): .*greater than or equal to 1",
        ),
        ("windows: []", r"invalid monitor\.windows \(config .*\): .*at least 1 item"),
        ("windows: [x]", r"invalid monitor\.windows\.0 \(config .*\): .*valid integer"),
        ("min_matured: 0", r"invalid monitor\.min_matured \(config .*\): "),
        ("mase_margin: -0.1", r"invalid monitor\.mase_margin \(config .*\): "),
        ("coverage_80_low: -0.1", r"invalid monitor\.coverage_80_low \(config .*\): "),
        ("coverage_80_high: 1.1", r"invalid monitor\.coverage_80_high \(config .*\): "),
        (
            "coverage_80_low: 0.95",
            r"invalid monitor \(config .*\): coverage_80_low 0\.95 must be below",
        ),
        ("window: 5", r"invalid monitor\.window \(config .*\): Extra inputs"),
    ],
)
def test_a_bad_monitor_value_is_one_line_naming_the_key(tmp_path: Path, yaml_text, message):
    path = tmp_path / "c.yaml"
    path.write_text(f"monitor: {{{yaml_text}}}\n")
    with pytest.raises(InputError, match=f"^{message}") as caught:
        build_config(path)
    assert "\n" not in str(caught.value)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-5, DAYS_MAX + 5), max_size=4))
def test_windows_are_accepted_exactly_when_positive_bounded_and_distinct(windows):
    valid = (
        bool(windows)
        and len(set(windows)) == len(windows)
        and all(1 <= w <= DAYS_MAX for w in windows)
    )
    if valid:
        assert build_config(monitor__windows=tuple(windows)).monitor.windows == tuple(windows)
    else:
        with pytest.raises(InputError, match=r"^invalid monitor(\.windows(\.\d+)?)?: "):
            build_config(monitor__windows=tuple(windows))


@settings(max_examples=60, deadline=None)
@given(st.floats(-0.5, 1.5), st.floats(-0.5, 1.5))
def test_the_coverage_band_is_accepted_exactly_when_0_low_high_1(low, high):
    given_band = {"monitor__coverage_80_low": low, "monitor__coverage_80_high": high}
    if 0 <= low < high <= 1:
        assert build_config(**given_band).monitor.coverage_80_low == low
    else:
        with pytest.raises(InputError, match=r"^invalid monitor(\.coverage_80_(low|high))?: "):
            build_config(**given_band)
