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
from urllib.parse import quote, quote_plus, unquote, unquote_plus

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
    """The loss, or the trained model's prices, became NaN or infinite; nothing from this run
    may be registered."""


class ExportError(RuntimeError):
    """The exported graph fails the ONNX checker or disagrees with torch."""


class WorkerDiedError(RuntimeError):
    """A worker process (aside.py) ended, killed or out of memory, before sending its result."""


# the tracking store and the registry (tracking/)


class ModelNotFoundError(InputError):
    """A model URI or file that names nothing."""


class TrackingUnavailableError(RuntimeError):
    """The tracking store does not answer; the message says what was (not) done."""


# the forecast history (history.py)


class ForecastStoreError(RuntimeError):
    """The forecast history's database cannot be reached, opened or written (locked, refused,
    a newer schema); the message names its URL, credentials scrubbed."""


# Words that make a query key a secret's name, matched anywhere in the key, any case: `pw`,
# `pwd`, `passwd`, `x-api-key`, `access_token`, `X-Amz-Signature`, `client_secret`, `jwt`, ...
# Naming something else so costs a masked value, never a leak.
_SECRET_WORDS = (
    "pass", "pw", "token", "key", "secret", "sig", "auth", "cred", "session", "jwt",
    "bearer", "otp", "sas", "cookie", "ticket", "private",
)  # fmt: skip
_SECRET_KEY = re.compile("|".join(_SECRET_WORDS), re.IGNORECASE)

# In free text, where a URI's end is unknown: its user part runs from `scheme://` to the last
# `@` before whitespace (a password may hold `/`, `@`, `:`, `?` or `#` unescaped; SQLAlchemy and
# requests take them so; a stray `@` later in a path costs the host, never the password) ...
_USERINFO = re.compile(r"(?<=://)\S*@")
# ... and a secret-named query (or fragment) value runs to the next `&`, `;` or whitespace.
_QUERY_SECRET = re.compile(
    rf"(?i)([?&;#][^=&;#?\s]*(?:{'|'.join(_SECRET_WORDS)})[^=&;#?\s]*=)[^&;\s]*"
)
# In ONE URI value (an option, a config value, a variable) the ends are known: the user part
# runs from the first `://` to the value's last `@`, a query value to the next `&` or `;`,
# whatever they hold (spaces, tabs, newlines).
_VALUE_USERINFO = re.compile(r"(?<=://).*@", re.DOTALL)
_VALUE_QUERY_KEY = re.compile(r"[?&;#]([^=&;#?]*)=")
_VALUE_QUERY_VALUE = re.compile(r"[^&;]*")
MASK = "***"


class _Remembered:
    """The secrets of every URI value this process has judged (remember_credentials), which
    scrub masks wherever they appear: free text cannot say where a URI holding a space ends."""

    def __init__(self) -> None:
        self.secrets: frozenset[str] = frozenset()
        self.pattern: re.Pattern[str] | None = None

    def add(self, secrets: set[str]) -> None:
        merged = self.secrets | secrets
        # longest first: a whole user part goes before the password in it
        longest_first = sorted(merged, key=len, reverse=True)
        pattern = re.compile("|".join(map(re.escape, longest_first))) if merged else None
        self.secrets, self.pattern = merged, pattern

    def clear(self) -> None:
        self.secrets, self.pattern = frozenset(), None

    def mask(self, text: str) -> str:
        pattern = self.pattern  # one read: another thread may add meanwhile
        return pattern.sub(MASK, text) if pattern else text


_REMEMBERED = _Remembered()


def scrub(text: str) -> str:
    """`text` with every remembered secret and the credentials of every URI in it replaced by
    `***`: the user part and any secret-looking query value.

    MLflow quotes the full tracking URI in its errors; a password in it must not reach a
    terminal, a log file or a scheduler's UI.
    """
    text = _USERINFO.sub(f"{MASK}@", _REMEMBERED.mask(text))
    return _QUERY_SECRET.sub(r"\1" + MASK, text)


def split_userinfo(uri: str) -> tuple[str, str | None, str]:
    """One URI value as `...scheme://`, the user part (None without one) and the rest."""
    found = _VALUE_USERINFO.search(uri)
    if found is None:
        return uri, None, ""
    return uri[: found.start()], uri[found.start() : found.end() - 1], uri[found.end() :]


def query_secrets(uri: str) -> list[tuple[int, int]]:
    """Where the values of one URI's secret-named query keys are (start, end); keys are judged
    percent-decoded (`p%61ss=`)."""
    spans: list[tuple[int, int]] = []
    for key in _VALUE_QUERY_KEY.finditer(uri):
        inside_a_secret = bool(spans) and key.start() < spans[-1][1]  # `?pw=a#b=c`: all one
        if not inside_a_secret and _SECRET_KEY.search(unquote_plus(key.group(1))):
            value = _VALUE_QUERY_VALUE.match(uri, key.end())
            spans.append((key.end(), value.end() if value else key.end()))
    return spans


def credentials_of(uri: str) -> set[str]:
    """Every secret one URI value carries: its user part, the password in it and each
    secret-named query value, as given and percent-decoded."""
    _, user, rest = split_userinfo(uri)
    parts = [] if user is None else [user, user.partition(":")[2]]
    after_user = uri if user is None else rest
    parts += [after_user[start:end] for start, end in query_secrets(after_user)]
    spellings = {form for part in parts for form in _spellings(part)}
    return {form for form in spellings if len(form) >= MIN_REMEMBERED}


# A secret shorter than this is not masked wherever it appears (a password `a` would garble
# every message); the URI patterns still mask it, and the whole user part it sits in, which
# is what a message quoting the URI shows.
MIN_REMEMBERED = 3


def _spellings(secret: str) -> set[str]:
    decoded = unquote(secret)
    return {secret, decoded, unquote_plus(secret), quote(decoded, safe=""), quote_plus(decoded)}


def has_credentials(uri: str) -> bool:
    """Whether one URI value carries a user part or a query secret (a password or a token)."""
    return bool(credentials_of(uri))


def remember_credentials(uri: str | None) -> bool:
    """Whether `uri` carries credentials; scrub masks them from now on, in any text."""
    secrets = credentials_of(uri) if uri else set()
    if secrets:
        _REMEMBERED.add(secrets)
    return bool(secrets)


def forget_credentials() -> None:
    """Forget every remembered secret (for tests: each starts from a clean process)."""
    _REMEMBERED.clear()


def scrub_uri(uri: str) -> str:
    """One URI value with its user part and secret query values replaced by `***`, then
    scrubbed as text (`postgresql://***@db/mlflow`, `https://host/x?pw=***`)."""
    head, user, rest = split_userinfo(uri)
    clean = uri if user is None else f"{head}{MASK}@{rest}"
    for start, end in reversed(query_secrets(clean)):
        clean = clean[:start] + MASK + clean[end:]
    return scrub(clean)


def one_line(exc: BaseException) -> str:
    """The exception as the one line a user sees, credentials scrubbed."""
    text = str(exc).strip()
    # scrubbed whole, then cut: a secret may hold a newline
    return scrub(text).splitlines()[0] if text else type(exc).__name__


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


SHOWN_FAILURES = 10  # in a warning or error line; the JSON's `failed` lists every one


def first_names(failures: Mapping[str, object]) -> str:
    """`A, B, C` for the first SHOWN_FAILURES tickers (keys), `and N more` after them."""
    return _first(list(failures), ", ")


def first_reasons(failures: Mapping[str, BaseException]) -> str:
    """Each of the first SHOWN_FAILURES failures as one line, `and N more` after them: a
    universe with hundreds of bad files gets a line a person can read."""
    return _first(
        [one_line(e) for e in list(failures.values())[:SHOWN_FAILURES]], "; ", len(failures)
    )


def _first(items: list[str], separator: str, total: int | None = None) -> str:
    total = len(items) if total is None else total
    more = f"{separator}and {total - SHOWN_FAILURES} more" if total > SHOWN_FAILURES else ""
    return separator.join(items[:SHOWN_FAILURES]) + more


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
    reasons = first_reasons(failures)
    if len(loaded) >= needed and share <= max_failure_ratio:
        if failures:
            total = len(loaded) + len(failures)
            log.warning(
                "%s goes on without %d of %d ticker(s) (%s): %s",
                purpose,
                len(failures),
                total,
                first_names(failures),
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
