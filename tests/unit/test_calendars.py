"""Target dates: each ticker's exchange calendar (exchange_calendars), by override or suffix."""

import logging

import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lstm_pipeline import calendars
from lstm_pipeline.calendars import (
    DEFAULT_CALENDAR,
    SUFFIX_CALENDARS,
    calendar_for,
    next_trading_days,
)
from lstm_pipeline.config import DataConfig
from lstm_pipeline.errors import InputError


def days(as_of: str, count: int, calendar: str = "XNYS") -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in next_trading_days(pd.Timestamp(as_of), count, calendar)]


@pytest.mark.parametrize(
    "as_of,expected",
    [
        ("2025-01-08", ["2025-01-10", "2025-01-13"]),  # national day of mourning, Carter
        ("2018-12-04", ["2018-12-06", "2018-12-07"]),  # national day of mourning, G. H. W. Bush
        ("2012-10-26", ["2012-10-31", "2012-11-01"]),  # Hurricane Sandy: two days shut
        ("2024-07-03", ["2024-07-05", "2024-07-08"]),  # Independence Day
        ("2024-03-28", ["2024-04-01", "2024-04-02"]),  # Good Friday
        ("2026-11-25", ["2026-11-27", "2026-11-30"]),  # Thanksgiving, then a weekend
        ("2026-12-24", ["2026-12-28", "2026-12-29"]),  # Christmas
        ("2027-12-30", ["2027-12-31", "2028-01-03"]),  # New Year's Day on a Saturday: no Friday off
        ("2025-06-18", ["2025-06-20", "2025-06-23"]),  # Juneteenth
    ],
)
def test_new_york_target_dates_skip_weekends_holidays_and_special_closures(as_of, expected):
    assert days(as_of, 2) == expected


@pytest.mark.parametrize(
    "as_of,london,new_york",
    [
        ("2025-05-02", ["2025-05-06", "2025-05-07"], ["2025-05-05", "2025-05-06"]),  # May Day
        ("2025-08-22", ["2025-08-26", "2025-08-27"], ["2025-08-25", "2025-08-26"]),  # summer
        ("2025-12-24", ["2025-12-29", "2025-12-30"], ["2025-12-26", "2025-12-29"]),  # Boxing Day
        ("2025-07-03", ["2025-07-04", "2025-07-07"], ["2025-07-07", "2025-07-08"]),  # US only
    ],
)
def test_a_london_ticker_gets_londons_trading_days(as_of, london, new_york):
    assert calendar_for("VOD.L", {}) == "XLON" and calendar_for("AAPL", {}) == "XNYS"
    assert days(as_of, 2, "XLON") == london and days(as_of, 2, "XNYS") == new_york


def test_tokyo_closes_for_new_year_and_golden_week():
    assert calendar_for("7203.T", {}) == "XTKS"
    assert days("2024-12-30", 2, "XTKS") == ["2025-01-06", "2025-01-07"]
    assert days("2025-05-02", 1, "XTKS") == ["2025-05-07"]


@pytest.mark.parametrize(
    "ticker,expected",
    [
        ("SAP.DE", "XETR"),
        ("BNP.PA", "XPAR"),
        ("0005.HK", "XHKG"),
        ("RY.TO", "XTSE"),
        ("BHP.AX", "XASX"),
        ("NESN.SW", "XSWX"),
        ("005930.KS", "XKRX"),
        ("^GSPC", "XNYS"),
        ("BRK-B", "XNYS"),
        ("vod.l", "XLON"),
    ],
)
def test_a_ticker_gets_its_suffixs_calendar(ticker, expected):
    assert calendar_for(ticker, {}) == expected


def test_an_unknown_suffix_is_new_york_with_one_warning_naming_ticker_and_suffix(caplog):
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline.calendars"):
        assert calendar_for("ABC.ZZ", {}) == DEFAULT_CALENDAR
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "ABC.ZZ" in lines[0] and ".ZZ" in lines[0]
    assert "\n" not in lines[0]


def test_the_config_override_wins_over_the_suffix():
    cfg = DataConfig(tickers=("AAPL", "VOD.L"), calendars={"aapl": "XLON", "VOD.L": "XNYS"})
    assert cfg.calendars == {"AAPL": "XLON", "VOD.L": "XNYS"}
    assert calendar_for("AAPL", cfg.calendars) == "XLON"
    assert calendar_for("VOD.L", cfg.calendars) == "XNYS"


@pytest.mark.parametrize("name", ["NOPE", "xlon", "", "XTKS "])
def test_an_unknown_calendar_name_in_the_config_is_one_line_input_error(tmp_path, name):
    from lstm_pipeline.config import build_config

    path = tmp_path / "cal.yaml"
    path.write_text(f"data: {{calendars: {{VOD.L: '{name}'}}}}\n")
    with pytest.raises(InputError) as caught:
        build_config(path)
    message = str(caught.value)
    assert message.startswith(f"invalid data.calendars (config {path}): unknown exchange calendar")
    assert repr(name) in message and "VOD.L" in message and "\n" not in message


@pytest.mark.parametrize("name", sorted(set(SUFFIX_CALENDARS.values()) | {DEFAULT_CALENDAR}))
def test_every_suffix_calendar_builds_and_gives_trading_days(name):
    got = next_trading_days(pd.Timestamp("2025-06-13"), 5, name)
    assert len(got) == 5 and all(d > pd.Timestamp("2025-06-13") for d in got)


def test_a_universe_builds_each_calendar_once():
    calendars._sessions.cache_clear()
    tickers = [f"T{i}{suffix}" for i in range(500) for suffix in ("", ".L", ".T")]
    as_of = pd.Timestamp("2025-03-14")
    for ticker in tickers:
        next_trading_days(as_of, 5, calendar_for(ticker, {}))
    assert calendars._sessions.cache_info().misses == 3


def test_dates_outside_a_calendars_records_are_weekdays_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline.calendars"):
        # Shanghai's holidays are recorded to 2026 only; Tokyo's from 1997 only
        assert days("2026-12-29", 4, "XSHG") == [
            "2026-12-30",
            "2026-12-31",
            "2027-01-01",
            "2027-01-04",
        ]
        assert days("1990-03-01", 2, "XTKS") == ["1990-03-02", "1990-03-05"]
    assert any(
        "XSHG does not record 2027-01-01, 2027-01-04" in r.getMessage() for r in caplog.records
    )
    assert days("1950-06-30", 1) == ["1950-07-03"]  # far back: New York is recorded


def test_riyadh_trades_sunday_to_thursday():
    assert days("2025-06-12", 2, "XSAU") == ["2025-06-15", "2025-06-16"]


def test_a_time_of_day_or_a_time_zone_on_as_of_does_not_move_the_day():
    aware = pd.Timestamp("2025-01-08 15:30", tz="America/New_York")
    assert next_trading_days(aware, 1, "XNYS") == [pd.Timestamp("2025-01-10")]


@settings(max_examples=60, deadline=None)
@given(
    as_of=st.dates(
        min_value=pd.Timestamp("1900-01-01").date(), max_value=pd.Timestamp("2150-12-31").date()
    ),
    count=st.integers(1, 40),
    calendar=st.sampled_from(sorted(set(SUFFIX_CALENDARS.values()) | {DEFAULT_CALENDAR})),
)
def test_target_dates_are_count_distinct_days_after_as_of(as_of, count, calendar):
    got = next_trading_days(pd.Timestamp(as_of), count, calendar)
    assert len(got) == count and got[0] > pd.Timestamp(as_of)
    assert all(a < b for a, b in zip(got, got[1:], strict=False))


def config_with(tmp_path, calendars_yaml: str):
    from lstm_pipeline.config import build_config

    path = tmp_path / "cal.yaml"
    path.write_text(f"data: {{calendars: {calendars_yaml}}}\n")
    return path, lambda: build_config(path)


@pytest.mark.parametrize("name", ["XTAE", "ASEX", "TASE"])  # TASE: an alias of XTAE
def test_a_known_calendar_that_cannot_be_built_is_refused_at_config_time(tmp_path, name):
    path, build = config_with(tmp_path, f"{{TEVA: {name}}}")
    with pytest.raises(InputError) as caught:
        build()
    message = str(caught.value)
    assert message.startswith(
        f"invalid data.calendars (config {path}): exchange calendar {name} cannot be built ("
    )
    assert "\n" not in message and len(message) < 400  # XTAE's reason lists hundreds of dates


def test_each_calendar_is_built_once_and_only_the_overrides_given(tmp_path):
    calendars._build_check.cache_clear()
    DataConfig(tickers=("AAPL", "VOD.L"))
    assert calendars._build_check.cache_info().currsize == 0
    for _ in range(3):
        DataConfig(calendars={"AAPL": "XLON", "VOD.L": "XLON", "SONY": "XTKS"})
    assert calendars._build_check.cache_info().misses == 2


ticker_spellings = st.tuples(
    st.from_regex(r"[A-Z]{1,5}(\.[A-Z]{1,2})?", fullmatch=True),
    st.lists(st.booleans(), min_size=8, max_size=8),  # one flag per letter: tickers have <= 8
    st.sampled_from(["", " ", "  "]),
)


def spell(ticker: str, lower: list[bool], pad: str) -> str:
    return pad + "".join(c.lower() if low else c for c, low in zip(ticker, lower, strict=False))


@settings(max_examples=40, deadline=None)
@given(first=ticker_spellings, second=ticker_spellings)
def test_two_keys_naming_one_ticker_are_refused_naming_both(first, second):
    a, b = spell(*first), spell(first[0], *second[1:])
    assume(a != b)  # the same key twice is one key in a mapping
    with pytest.raises(ValueError, match="name the same ticker") as caught:
        calendars.check_calendars({a: "XNYS", b: "XLON"})
    message = str(caught.value)
    assert a in message and b in message and first[0] in message


@pytest.mark.parametrize(
    "alias", ["NYSE", "NASDAQ", "XNAS", "LSE", "JPX", "TSX", "XTSX", "HKEX", "SIX", "FWB"]
)
def test_an_alias_is_stored_as_its_canonical_calendar(alias):
    import exchange_calendars

    cfg = DataConfig(tickers=("AAPL",), calendars={"aapl": alias})
    canonical = exchange_calendars.resolve_alias(alias)
    assert canonical != alias and cfg.calendars == {"AAPL": canonical}
    assert calendar_for("AAPL", cfg.calendars) == canonical  # what the forecast file records


def test_every_suffix_calendar_is_a_canonical_name():
    import exchange_calendars

    for suffix, name in SUFFIX_CALENDARS.items():
        assert exchange_calendars.resolve_alias(name) == name, suffix
