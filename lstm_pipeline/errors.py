"""Exceptions that mean 'bad input' (CLI exit 2) and how per-ticker failures are reported.

Exit codes when some tickers fail and others succeed: 2 when every failure is bad input (an
unknown ticker, a broken file, too few rows), 1 when any failure is something else (network).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

BAD_INPUT_EXIT, FAILURE_EXIT = 2, 1


class InputError(ValueError):
    """Bad user input: a ticker, a file, a date, an option or a config value."""


class DataValidationError(InputError):
    """A price series that cannot be trusted; the message names ticker, file and date."""


class DataUnavailableError(RuntimeError):
    """Too few tickers could be loaded, and not only because of bad input (network, rate limits)."""


def one_line(exc: BaseException) -> str:
    """The exception as the one line a user sees."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe_failures(failures: Mapping[str, BaseException]) -> dict[str, dict[str, Any]]:
    """JSON-ready `{ticker: {"error": line, "bad_input": bool}}`."""
    return {
        ticker: {"error": one_line(exc), "bad_input": isinstance(exc, InputError)}
        for ticker, exc in failures.items()
    }


def exit_code_for(failures: Mapping[str, Mapping[str, Any]]) -> int:
    """0 without failures, 2 when every failure is bad input, else 1."""
    if not failures:
        return 0
    all_bad_input = all(f["bad_input"] for f in failures.values())
    return BAD_INPUT_EXIT if all_bad_input else FAILURE_EXIT


def require_survivors(
    loaded: Mapping[str, Any], failures: Mapping[str, BaseException], needed: int, purpose: str
) -> None:
    """Raise unless at least `needed` tickers loaded; warn about the ones that did not.

    A lone failure is raised as it is, so a one-ticker run fails exactly as the ticker did.
    """
    if len(loaded) >= needed:
        if failures:
            log.warning(
                "%s goes on without %d ticker(s): %s",
                purpose,
                len(failures),
                "; ".join(one_line(e) for e in failures.values()),
            )
        return
    if not loaded and len(failures) == 1:
        raise next(iter(failures.values()))
    message = f"{purpose} needs {needed} usable ticker(s), got {len(loaded)}: " + "; ".join(
        one_line(e) for e in failures.values()
    )
    if all(isinstance(e, InputError) for e in failures.values()):
        raise InputError(message)
    raise DataUnavailableError(message)
