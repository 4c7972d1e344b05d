"""A model file's metadata, read as its contract: features, window, horizon, quantile levels,
the training profile of its inputs; each malformed value is an InputError naming the model and
the key."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from lstm_pipeline.config import check_quantile_levels
from lstm_pipeline.drift import PROFILE_KEY, STATS
from lstm_pipeline.errors import InputError

# The metadata keys every lstm-pipeline model carries, beside run id and data cut-off
CONTRACT_KEYS = ("features", "window", "horizon")
_POSITIVE_INT = re.compile(r"[1-9][0-9]{0,5}")  # a window or horizon: 1..999999, digits only
_COMMA_JOINED = re.compile(r"[A-Za-z][\w ]*(,[A-Za-z][\w ]*)+")  # Open,High,Low,Close,Volume


def read_contract(metadata: dict[str, str], where: str) -> tuple[tuple[str, ...], int, int]:
    """(features, window, horizon) from a model's metadata; InputError naming `where` and the
    key when one is missing or malformed."""
    missing = [key for key in CONTRACT_KEYS if key not in metadata]
    if missing:
        raise InputError(
            f"{where}: ONNX model lacks lstm-pipeline metadata (features, window, horizon): "
            f"no {', '.join(missing)}"
        )
    window, horizon = (_positive_int(metadata, key, where) for key in ("window", "horizon"))
    return read_features(metadata["features"], where), window, horizon


def read_hidden_size(metadata: dict[str, str], where: str) -> int | None:
    """The LSTM's hidden size (metadata `hidden_size`), which sizes a forecast's calls, or None
    for a model exported before it was written; InputError naming `where` when malformed."""
    return _positive_int(metadata, "hidden_size", where) if "hidden_size" in metadata else None


def _positive_int(metadata: dict[str, str], key: str, where: str) -> int:
    if not _POSITIVE_INT.fullmatch(metadata[key]):
        raise InputError(
            f"{where}: metadata {key} {shown(metadata[key])} is not a positive integer"
        )
    return int(metadata[key])


def read_quantile_levels(metadata: dict[str, str], where: str) -> tuple[float, ...]:
    """The levels of a model's `quantiles` output (metadata `quantile_levels`, a JSON list), or
    () for a model without intervals; InputError naming `where` when malformed."""
    text = metadata.get("quantile_levels")
    if text is None:
        return ()
    problem = f"{where}: metadata quantile_levels {shown(text)} is not"
    try:
        levels = json.loads(text)
    except ValueError:
        raise InputError(f"{problem} a JSON list of numbers") from None
    if not isinstance(levels, list) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in levels
    ):
        raise InputError(f"{problem} a JSON list of numbers")
    try:
        checked = check_quantile_levels(tuple(float(x) for x in levels))
    except ValueError as exc:
        raise InputError(f"{problem} usable: {exc}") from None
    if not checked:
        raise InputError(f"{problem} usable: it is empty")
    return checked


def read_input_profile(metadata: dict[str, str], where: str) -> dict[str, Any] | None:
    """The training profile input drift is measured against (metadata `input_profile`, see
    drift.profile_of), or None for a model without one (an older one); InputError naming
    `where` when malformed."""
    text = metadata.get(PROFILE_KEY)
    if text is None:
        return None
    try:
        profile = json.loads(text)
    except ValueError:
        profile = None
    problem = profile_problem(profile)
    if problem:
        raise InputError(
            f"{where}: metadata {PROFILE_KEY} {shown(text)} is not a training profile: {problem}"
        )
    return dict(profile)


def profile_problem(profile: object) -> str | None:
    """What makes `profile` (parsed JSON) no drift.profile_of profile, or None."""
    if not isinstance(profile, dict) or set(profile) != {"days", "stats", "tickers", "pooled"}:
        return "not a JSON object of days, stats, tickers and pooled"
    days = profile["days"]
    if not isinstance(days, int) or isinstance(days, bool) or days < 2:
        return "days is not an integer of at least 2"
    if profile["stats"] != list(STATS):
        return f"stats is not {list(STATS)}"
    if not isinstance(profile["tickers"], dict):
        return "tickers is not an object"
    for name, summary in [("pooled", profile["pooled"]), *profile["tickers"].items()]:
        if not usable_summary(summary):
            return f"{name} is not {2 * len(STATS)} finite numbers (median, MAD >= 0 per stat)"
    return None


def usable_summary(summary: object) -> bool:
    """Whether `summary` is [median, MAD] per stat: finite numbers, no MAD below 0."""
    if not isinstance(summary, list) or len(summary) != 2 * len(STATS):
        return False
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in summary):
        return False
    return all(math.isfinite(x) for x in summary) and all(mad >= 0 for mad in summary[1::2])


def read_features(text: str, where: str) -> tuple[str, ...]:
    """Feature names from metadata: a JSON list of distinct names, or the comma-joined names
    that models exported before the JSON form carry (the golden model is one)."""
    problem = f"{where}: metadata features {shown(text)} is not a JSON list of distinct names"
    if _COMMA_JOINED.fullmatch(text):
        names = text.split(",")
    else:
        try:
            names = json.loads(text)
        except ValueError:
            raise InputError(problem) from None
    if not isinstance(names, list) or not names or len(set(map(str, names))) < len(names):
        raise InputError(problem)
    if not all(isinstance(n, str) and n.strip() and n.isprintable() for n in names):
        raise InputError(problem)
    return tuple(names)


def shown(value: str, limit: int = 60) -> str:
    """A metadata value as it may appear in a one-line error: quoted, escaped, cut."""
    return repr(value if len(value) <= limit else value[:limit] + "...")
