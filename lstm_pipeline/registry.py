"""The model registry: the promotion gate's verdict, and moving `champion` by hand.

It reaches the store through the tracking package, the only one that imports mlflow. Every move
of the `champion` alias leaves its history in model-version tags, so the registry itself says
who held the alias before, since when, set by what and why:

- `previous_champion`: the version that held `champion` when this one got it (`none`);
- `champion_since`, `champion_set_by` (`gate`, `promote`, `rollback`), `champion_reason`,
  `champion_set_by_user`;
- `rolled_back_at`, `rolled_back_reason` on a version a rollback took the alias from;
- `gate.*` and `promotion` from the training run's gate (also on the run).

A rollback gives `champion` back to the current champion's `previous_champion`, leaving that
version's own `previous_champion` alone, so rolling back again walks further back.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lstm_pipeline import gate
from lstm_pipeline.errors import InputError, ModelNotFoundError, one_line
from lstm_pipeline.tracking import (
    CHALLENGER,
    CHAMPION,
    Run,
    Store,
    champion_lock,
    log_onnx_model,
    resolve_model,
)

if TYPE_CHECKING:
    import numpy as np

    from lstm_pipeline.features import WindowSet

log = logging.getLogger(__name__)
NONE = "none"
WITHDRAW_WAIT_S = 120  # a failed gate waits this long for the lock to give `champion` back


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    alias: str
    reason: str
    gate: dict[str, str]  # gate_tags: the scores, whether they were compared, and why not


def judge(
    store: Store,
    model_name: str,
    new_model: Path,
    val: WindowSet,
    margin: float,
    intervals: gate.IntervalScores | None = None,
) -> gate.GateDecision:
    """Score the new ONNX model and the current champion on `val` alike, then apply the rule
    (with the new model's validation `intervals`, when it has them).

    A store that fails to say who the champion is fails the gate (TrackingUnavailableError);
    a champion whose model file is missing is reported unscored, like one that does not load.
    """
    holder = store.version_by_alias(model_name, CHAMPION)
    if holder is None:
        return gate.decide(gate.score_both(new_model, None, val), margin, intervals)
    version = str(holder.version)
    try:
        resolved = resolve_model(f"models:/{model_name}/{version}", store)
    except ModelNotFoundError as exc:
        alone = gate.score_both(new_model, None, val)
        unscored = replace(alone, champion_version=version, note=str(exc))
        return gate.decide(unscored, margin, intervals)
    scores = gate.score_both(new_model, (version, resolved.path), val)
    return gate.decide(scores, margin, intervals)


def register_and_gate(
    run: Run,
    model_name: str,
    onnx_path: Path,
    example: np.ndarray,
    decision: gate.GateDecision,
    description: str,
    val: WindowSet,
    margin: float,
) -> tuple[str, Promotion]:
    """Register the run's ONNX model, apply the gate's decision; returns (version, promotion).

    `decision` was made against the champion of that moment. Should another run move
    `champion` meanwhile, the new model is judged again on `val` against the new holder (see
    settle). Should anything fail after the version exists, it is deleted again: a failed run
    never leaves a model behind.
    """
    store = run.store
    version = log_onnx_model(run, onnx_path, example, model_name)

    intervals = decision.intervals  # the new model's own: they do not depend on the champion

    def rejudge() -> gate.GateDecision:
        return judge(store, model_name, onnx_path, val, margin, intervals)

    try:
        store.client.update_model_version(model_name, version, description=description)
        decision = settle(store, model_name, version, decision, rejudge)
        return version, _apply(run, model_name, version, decision)
    except BaseException:
        _withdraw(store, model_name, version)
        raise


def _withdraw(store: Store, model_name: str, version: str) -> None:
    """Delete a version whose gate failed half-way, giving `champion` back if it took it.

    The alias moves back under the champion lock, like every other move; only this process
    gives `champion` to `version`, so a version that does not hold it now never will.
    """
    try:
        if _holder(store, model_name) == version:
            with champion_lock(store, model_name, wait_s=WITHDRAW_WAIT_S):
                holder = store.version_by_alias(model_name, CHAMPION)
                previous = holder.tags.get("previous_champion", NONE) if holder else NONE
                if str(getattr(holder, "version", "")) == version and previous != NONE:
                    store.client.set_registered_model_alias(model_name, CHAMPION, previous)
        store.client.delete_model_version(model_name, version)
    except Exception as exc:  # the store may be what failed; the original error matters more
        log.warning("could not withdraw %s v%s: %s", model_name, version, one_line(exc))


def settle(
    store: Store,
    model_name: str,
    version: str,
    decision: gate.GateDecision,
    rejudge: Callable[[], gate.GateDecision],
) -> gate.GateDecision:
    """Give `champion` to `version` if the gate promotes it over the champion that holds it.

    `decision` was made against the champion of its moment; another gate may have moved the
    alias since. Under the champion lock (one gate at a time), a decision made against a
    former holder is made again against the present one before anything moves, so whatever
    the timing, the alias only passes to a version that beat its holder. Returns the decision.
    """
    if not decision.promote:
        return decision
    with champion_lock(store, model_name):
        if _holder(store, model_name) != decision.scores.champion_version:
            decision = rejudge()  # judged against a former champion
        if decision.promote:
            _move_champion(store, model_name, version, "gate", decision.reason)
    return decision


def _holder(store: Store, model_name: str) -> str | None:
    holder = store.version_by_alias(model_name, CHAMPION)
    return None if holder is None else str(holder.version)


def gate_tags(decision: gate.GateDecision) -> dict[str, str]:
    """The decision and both scores, as tags for the run and the model version."""
    s = decision.scores
    return {
        "gate.decision": CHAMPION if decision.promote else CHALLENGER,
        "gate.new_val_mase": f"{s.new_mase:.6f}",
        "gate.champion_val_mase": NONE if s.champion_mase is None else f"{s.champion_mase:.6f}",
        "gate.champion_version": s.champion_version or NONE,
        "gate.margin": str(decision.margin),
        "gate.windows": str(s.windows),
        "gate.horizons": str(s.horizons),
        "gate.compared": str(s.compared).lower(),  # false: no champion, or none to score
        "gate.note": s.note or NONE,  # why a champion (or the new model) went unscored
        "promotion": decision.reason,
    } | _interval_tags(decision.intervals)


def _interval_tags(intervals: gate.IntervalScores | None) -> dict[str, str]:
    if intervals is None:  # a point model: nothing to check
        return {"gate.val_coverage_80": NONE, "gate.val_crpss_rw": NONE}
    return {
        "gate.val_coverage_80": f"{intervals.coverage_80:.6f}",
        "gate.val_crpss_rw": f"{intervals.crpss_rw:.6f}",
    }


def _apply(run: Run, model_name: str, version: str, decision: gate.GateDecision) -> Promotion:
    """Record the settled decision on the version and the run; a loser becomes challenger."""
    tags = gate_tags(decision)
    _set_version_tags(run.store, model_name, version, tags)
    run.set_tags(tags)
    if not decision.promote:
        run.client.set_registered_model_alias(model_name, CHALLENGER, version)
    log.info("%s v%s: %s", model_name, version, decision.reason)
    alias = CHAMPION if decision.promote else CHALLENGER
    return Promotion(decision.promote, alias, decision.reason, tags)


def promote(store: Store, model_name: str, version: str, reason: str) -> dict[str, Any]:
    """Give `champion` to `version` by hand; ModelNotFoundError when it does not exist."""
    target = store.existing_version(model_name, version)
    with champion_lock(store, model_name):  # not between a gate's read and write
        holder = store.version_by_alias(model_name, CHAMPION)
        if holder is not None and str(holder.version) == str(target.version):
            return _summary(model_name, str(target.version), None, reason, changed=False)
        previous = _move_champion(store, model_name, str(target.version), "promote", reason)
    return _summary(model_name, str(target.version), previous, reason, changed=True)


def rollback(store: Store, model_name: str, reason: str) -> dict[str, Any]:
    """Give `champion` back to the current champion's `previous_champion`."""
    with champion_lock(store, model_name):  # not between a gate's read and write
        return _roll_back(store, model_name, reason)


def _roll_back(store: Store, model_name: str, reason: str) -> dict[str, Any]:
    holder = store.version_by_alias(model_name, CHAMPION)
    if holder is None:
        raise InputError(f"model {model_name} has no champion to roll back")
    back_to = holder.tags.get("previous_champion", NONE)
    if back_to == NONE:
        raise InputError(f"champion v{holder.version} of {model_name} has no previous champion")
    target = store.existing_version(model_name, back_to)
    _set_version_tags(
        store,
        model_name,
        str(holder.version),
        {"rolled_back_at": _now(), "rolled_back_reason": reason},
    )
    # the restored version keeps its own previous_champion: a second rollback goes further back
    _take_alias(store, model_name, str(target.version), "rollback", reason)
    return _summary(model_name, str(target.version), str(holder.version), reason, changed=True)


def _move_champion(
    store: Store, model_name: str, version: str, set_by: str, reason: str
) -> str | None:
    """Point `champion` at `version`, recording who held it before; returns that version."""
    holder = store.version_by_alias(model_name, CHAMPION)
    previous = str(holder.version) if holder is not None else None
    _set_version_tags(store, model_name, version, {"previous_champion": previous or NONE})
    _take_alias(store, model_name, version, set_by, reason)
    return previous


def _take_alias(store: Store, model_name: str, version: str, set_by: str, reason: str) -> None:
    tags = {
        "champion_since": _now(),
        "champion_set_by": set_by,
        "champion_reason": reason,
        "champion_set_by_user": _user(),
    }
    _set_version_tags(store, model_name, version, tags)
    client = store.client
    challenger = store.version_by_alias(model_name, CHALLENGER)
    if challenger is not None and str(challenger.version) == version:
        client.delete_registered_model_alias(model_name, CHALLENGER)  # no longer a candidate
    client.set_registered_model_alias(model_name, CHAMPION, version)
    client.set_registered_model_tag(
        model_name, "last_champion_change", f"v{version} by {set_by} at {tags['champion_since']}"
    )


def _set_version_tags(store: Store, model_name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        store.client.set_model_version_tag(model_name, version, key, value)


def _summary(
    model_name: str, champion: str, previous: str | None, reason: str, changed: bool
) -> dict[str, Any]:
    return {
        "model_name": model_name,
        "champion": champion,
        "previous_champion": previous,
        "changed": changed,
        "reason": reason,
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "unknown"
