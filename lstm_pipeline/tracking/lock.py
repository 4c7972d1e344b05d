"""`champion_lock`: one promotion gate at a time may judge and move the `champion` alias.

MLflow has no compare-and-set on aliases, so two gates finishing together could each judge the
same old champion and the later writer win, however bad. Creating a registered model is atomic
(names are unique), so `NAME.gate-lock` serves as the lock: the gate that creates it holds it.

- Only its owner lets go. Each lock carries a random token; a gate deletes the lock only
  after reading its own token back from it.
- Stale without trusting two clocks. While it holds the lock, the holder rewrites a heartbeat
  tag every HEARTBEAT_S. A waiter judges the lock stale when its owner process on this host is
  gone, or when the waiter has seen the same token and heartbeat for GATE_LOCK_STALE_S on its
  own monotonic clock. No wall-clock time, the store's or anyone's, is compared.
- One breaker per generation. The right to break the lock generation with token T is itself an
  atomic create, of the registered model `NAME.gate-lock.break-T`: one waiter gets it, reads
  the lock's token again, deletes the lock only if it is still T, then deletes its marker. A
  waiter that saw the same stale lock but lost that race deletes nothing, so the fresh lock the
  winner (or anyone) took survives. A marker whose breaker died is judged and broken by the
  same rules.

The window that remains: MLflow deletes a registered model by name, not by name and token, so
between reading the token back and deleting there is one request's round trip. It can harm
only a lock whose holder was judged stale while alive (frozen, or cut off from the store, for
over GATE_LOCK_STALE_S) and that let go, or was broken, within that round trip while a third
gate took the lock.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlflow.exceptions import MlflowException

from lstm_pipeline.tracking.orphans import OWNER_TAG, owner_is_gone, this_process
from lstm_pipeline.tracking.store import Store

log = logging.getLogger(__name__)

TOKEN_TAG = "lstm_pipeline.lock_token"  # which generation of the lock this is
HEARTBEAT_TAG = "lstm_pipeline.heartbeat"  # rewritten by the holder while it holds the lock
HEARTBEAT_S = 10  # how often the holder rewrites it
GATE_LOCK_STALE_S = 120  # a heartbeat seen unchanged this long, on the waiter's own clock
MAX_MISSES = 3  # failed creations with no lock to show for them: the store itself fails
MAX_BREAK_DEPTH = 3  # markers of dead breakers broken in turn, at most this deep


@contextmanager
def champion_lock(store: Store, model_name: str, wait_s: float = 600) -> Iterator[None]:
    """Hold the `champion` alias of `model_name` for one gate: judge and move it inside."""
    name = f"{model_name}.gate-lock"
    token = _acquire(store, name, wait_s, _Watch(GATE_LOCK_STALE_S))
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(store, name, token, stop), daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        _delete_if_generation(store, name, token)


def _acquire(store: Store, name: str, wait_s: float, watch: _Watch) -> str:
    """Create the lock `name` (waiting, and breaking stale ones); returns its token."""
    deadline, misses = time.monotonic() + wait_s, 0
    while True:
        try:
            return _create(store, name)
        except MlflowException:
            held = store.registered_model(name)
            misses = 0 if held is not None else misses + 1
            if misses > MAX_MISSES:
                raise
            if held is not None and watch.is_stale(held):
                _break(store, held, watch)
            elif time.monotonic() > deadline:
                raise TimeoutError(f"{name} was held for over {wait_s:.0f} s") from None
            else:
                time.sleep(random.uniform(0.05, 0.3))  # jittered, so waiters do not march


def _create(store: Store, name: str) -> str:
    """Create the registered model `name` as this process's lock; its token."""
    token = uuid.uuid4().hex
    tags = {OWNER_TAG: this_process(), TOKEN_TAG: token, HEARTBEAT_TAG: "0"}
    store.client.create_registered_model(name, tags=tags)
    return token


def _generation(lock: Any) -> str:
    """The lock's token; a lock made before tokens existed is told apart by its creation."""
    return str(lock.tags.get(TOKEN_TAG) or f"created-{lock.creation_timestamp}")


class _Watch:
    """What one waiter has seen of each lock, timed on its own monotonic clock."""

    def __init__(self, stale_s: float) -> None:
        self.stale_s = stale_s
        self.seen: dict[str, tuple[tuple[str, str], float]] = {}

    def is_stale(self, lock: Any) -> bool:
        if owner_is_gone(lock.tags.get(OWNER_TAG, "")):
            return True
        state = (_generation(lock), str(lock.tags.get(HEARTBEAT_TAG, "")))
        now = time.monotonic()
        first = self.seen.get(lock.name)
        if first is None or first[0] != state:
            self.seen[lock.name] = (state, now)  # it moved: alive, as far as we can tell
            return False
        return now - first[1] >= self.stale_s


def _break(store: Store, stale: Any, watch: _Watch, depth: int = 0) -> None:
    """Delete the lock `stale` if this waiter wins the right to break its generation."""
    generation = _generation(stale)
    marker = f"{stale.name}.break-{generation}"
    try:
        mine = _create(store, marker)
    except MlflowException:  # another waiter is breaking this generation, or did
        rival = store.registered_model(marker)
        if rival is not None and depth < MAX_BREAK_DEPTH and watch.is_stale(rival):
            _break(store, rival, watch, depth + 1)  # that breaker died mid-break
        return
    try:
        if _delete_if_generation(store, stale.name, generation):
            log.warning("broke %s, left by %s", stale.name, stale.tags.get(OWNER_TAG, "?"))
    finally:
        _delete_if_generation(store, marker, mine)


def _delete_if_generation(store: Store, name: str, generation: str) -> bool:
    """Delete the registered model `name` if it is still `generation`; whether it was."""
    current = store.registered_model(name)
    if current is None or _generation(current) != generation:
        return False  # broken as stale and taken again, or the store is gone: not ours
    try:
        store.client.delete_registered_model(name)
    except MlflowException:
        return False
    return True


def _heartbeat(store: Store, name: str, token: str, stop: threading.Event) -> None:
    """Rewrite the lock's heartbeat every HEARTBEAT_S until `stop`, while it is ours."""
    beats = 0
    while not stop.wait(HEARTBEAT_S):
        beats += 1
        try:
            current = store.registered_model(name)
            if current is None or _generation(current) != token:
                return  # broken as stale: the heartbeat of another holder is not ours to write
            store.client.set_registered_model_tag(name, HEARTBEAT_TAG, str(beats))
        except MlflowException as exc:  # a blip: the next beat tries again
            log.debug("heartbeat of %s failed: %s", name, exc)
