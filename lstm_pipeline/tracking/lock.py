"""`champion_lock`: one promotion gate at a time may judge and move the `champion` alias."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlflow.exceptions import MlflowException

from lstm_pipeline.tracking.orphans import OWNER_TAG, owner_is_gone, this_process
from lstm_pipeline.tracking.store import Store

log = logging.getLogger(__name__)

GATE_LOCK_STALE_S = 300  # a gate holds its lock for seconds; a lock this old lost its process
MAX_MISSES = 3  # failed creations with no lock to show for them: the store itself fails


@contextmanager
def champion_lock(store: Store, model_name: str, wait_s: float = 600) -> Iterator[None]:
    """Hold the `champion` alias of `model_name` for one gate: judge and move it inside.

    MLflow has no compare-and-set on aliases, so two gates finishing together could each judge
    the same old champion and the later writer win, however bad. Creating a registered model
    is atomic (names are unique), so `NAME.gate-lock` serves as the lock: the gate that creates
    it holds it, and deletes it when done. A lock whose process is gone (on this host) or that
    is older than GATE_LOCK_STALE_S is broken.
    """
    name = f"{model_name}.gate-lock"
    deadline, misses = time.monotonic() + wait_s, 0
    while True:
        try:
            store.client.create_registered_model(name, tags={OWNER_TAG: this_process()})
            break
        except MlflowException:
            held = store.registered_model(name)
            misses = 0 if held is not None else misses + 1
            if misses > MAX_MISSES:
                raise
            if held is not None and _is_stale(held):
                log.warning("breaking %s, left by %s", name, held.tags.get(OWNER_TAG, "?"))
                _delete(store, name)
            elif time.monotonic() > deadline:
                raise TimeoutError(f"{name} was held for over {wait_s:.0f} s") from None
            else:
                time.sleep(random.uniform(0.05, 0.3))  # jittered, so waiters do not march
    try:
        yield
    finally:
        _delete(store, name)


def _is_stale(lock: Any) -> bool:
    if owner_is_gone(lock.tags.get(OWNER_TAG, "")):
        return True
    return time.time() - lock.creation_timestamp / 1000 > GATE_LOCK_STALE_S


def _delete(store: Store, name: str) -> None:
    try:
        store.client.delete_registered_model(name)
    except MlflowException:
        pass  # broken by another gate as stale, or the store is gone: nothing left to free
