"""Every exception class of the library and the flows, and how a failure reaches the user:
one line (`one_line`, credentials scrubbed) and an exit code.

InputError and its subclasses mean bad input (CLI exit 2); anything else exits 1. When some
tickers fail and others succeed: 2 when every failure is bad input (an unknown ticker, a broken
file, too few rows), 1 when any failure is something else (network).
"""

from __future__ import annotations

import logging
import re
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


# yfinance (yahoo.py) and the cache that stands in for it (data.py)


class DownloadError(RuntimeError):
    """yfinance kept failing for network reasons until the retry budget ran out."""


class NoDataError(InputError):
    """yfinance has no bars for this ticker and range: unknown or delisted, or an empty range."""


class NetworkEmptyFrameError(ConnectionError):
    """An empty frame that yfinance logged as a network failure: retried like one (an OSError)."""


# training (train.py) and export (export.py)


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; nothing from this run may be registered."""


class ExportError(RuntimeError):
    """The exported graph fails the ONNX checker or disagrees with torch."""


# the tracking store and the registry (tracking/)


class ModelNotFoundError(InputError):
    """A model URI or file that names nothing."""


class TrackingUnavailableError(RuntimeError):
    """The tracking store does not answer; the message says what was (not) done."""


# The user part of `scheme://user:password@host`: everything up to the LAST `@` of the URI (a
# password may hold `/`, `@`, `:`, `?` or `#` unescaped; SQLAlchemy and requests take them so),
# which ends at whitespace. A stray `@` later in a path costs the host, never the password.
_USERINFO = re.compile(r"(?<=://)\S*@")
# a secret in a query string: `?password=`, `&token=`, `access_token=`, `api_key=`, `sig=`, ...
_QUERY_SECRET = re.compile(
    r"(?i)([?&;][\w.~-]*(?:pass|pwd|token|key|secret|sig|auth|credential|session)[\w.~-]*=)"
    r"[^&;#\s]*"
)


def scrub(text: str) -> str:
    """`text` with the credentials of every URI in it replaced by `***`: the user part and any
    secret-looking query value.

    MLflow quotes the full tracking URI in its errors; a password in it must not reach a
    terminal, a log file or a scheduler's UI.
    """
    return _QUERY_SECRET.sub(r"\1***", _USERINFO.sub("***@", text))


def split_userinfo(uri: str) -> tuple[str, str | None, str]:
    """`scheme://`, the user part (None without one) and the rest, cut where scrub cuts."""
    found = _USERINFO.search(uri)
    if found is None:
        return uri, None, ""
    return uri[: found.start()], uri[found.start() : found.end() - 1], uri[found.end() :]


def has_credentials(uri: str) -> bool:
    """Whether `uri` carries a user part or a query secret (a password or a token)."""
    return scrub(uri) != uri


def one_line(exc: BaseException) -> str:
    """The exception as the one line a user sees, credentials scrubbed."""
    text = str(exc).strip()
    return scrub(text.splitlines()[0]) if text else type(exc).__name__


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


def failed_share(loaded: int, failed: int) -> float:
    """The share of tickers that failed, 0 when there were none."""
    total = loaded + failed
    return failed / total if total else 0.0


def require_survivors(
    loaded: Mapping[str, Any],
    failures: Mapping[str, BaseException],
    needed: int,
    purpose: str,
    max_failure_ratio: float = 1.0,
) -> None:
    """Raise unless at least `needed` tickers loaded and at most `max_failure_ratio` of all
    failed; otherwise warn, naming each failed ticker and why, and let the caller go on.

    A lone failure is raised as it is, so a one-ticker run fails exactly as the ticker did. The
    error is an InputError (exit 2) only when every failure is bad input.
    """
    share = failed_share(len(loaded), len(failures))
    reasons = "; ".join(one_line(e) for e in failures.values())
    if len(loaded) >= needed and share <= max_failure_ratio:
        if failures:
            total = len(loaded) + len(failures)
            log.warning(
                "%s goes on without %d of %d ticker(s) (%s): %s",
                purpose,
                len(failures),
                total,
                ", ".join(failures),
                reasons,
            )
        return
    if not loaded and len(failures) == 1:
        raise next(iter(failures.values()))
    if len(loaded) < needed:
        message = f"{purpose} needs {needed} usable ticker(s), got {len(loaded)}: {reasons}"
    else:
        message = (
            f"{purpose}: {len(failures)} of {len(loaded) + len(failures)} tickers failed, "
            f"{share:.0%} > max_failure_ratio {max_failure_ratio:.0%}: {reasons}"
        )
    if all(isinstance(e, InputError) for e in failures.values()):
        raise InputError(message)
    raise DataUnavailableError(message)
