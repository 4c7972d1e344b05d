"""Runs whose process is gone: the owner tag every run carries, and the sweep that ends them.

A SIGKILLed or OOM-killed job, or one whose server died mid-run, leaves its run RUNNING for
good. Each run is tagged with the `host:pid` of the process that will end it, so the next run
on the same host can tell an orphan from a run still going. A job killed between registering
its model version and its gate's verdict leaves a version with no gate tags: the sweep tags it
`gate.decision=interrupted`, so the registry says what happened.
"""

from __future__ import annotations

import logging
import os
import socket

from mlflow.exceptions import MlflowException

from lstm_pipeline.files import process_exists
from lstm_pipeline.tracking.store import Store

log = logging.getLogger(__name__)

OWNER_TAG = "lstm_pipeline.owner"  # host:pid of the process that ends the run
GATE_DECISION_TAG = "gate.decision"  # set on a model version once its gate decided


def owner_of_new_run(
    store: Store, experiment: str, model_name: str | None = None
) -> dict[str, str]:
    """The tag that makes a new run this process's to end, after ending the orphans its
    predecessors left (end_orphaned_runs) and tagging the versions of `model_name` their gates
    never decided on (mark_interrupted_versions). Call it in the process that will end the run."""
    end_orphaned_runs(store, experiment)
    if model_name is not None and store.registered_model(model_name) is not None:
        mark_interrupted_versions(store, model_name)
    return {OWNER_TAG: this_process()}


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_gone(owner: str) -> bool:
    """Whether the `host:pid` owner ran on this host and its process no longer exists."""
    host, _, pid = owner.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not process_exists(int(pid))


def end_orphaned_runs(store: Store, experiment: str) -> list[str]:
    """Mark KILLED the RUNNING runs whose owner process on this host is gone; their ids.

    Runs owned on other hosts are left alone (their processes cannot be seen from here), and
    so is any run whose process still exists: a reused process id reads as alive.
    """
    client = store.client
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    ended = []
    for run in client.search_runs([found.experiment_id], "attributes.status = 'RUNNING'"):
        owner = run.data.tags.get(OWNER_TAG, "")
        if owner_is_gone(owner):
            pid = owner.rpartition(":")[2]
            client.set_tag(run.info.run_id, "ended_by", f"a later run: process {pid} was gone")
            client.set_terminated(run.info.run_id, "KILLED")
            ended.append(run.info.run_id)
    if ended:
        log.warning("marked %d run(s) KILLED, their process gone: %s", len(ended), ", ".join(ended))
    return ended


def mark_interrupted_versions(store: Store, model_name: str) -> list[str]:
    """Tag `gate.decision=interrupted`, with the reason, every version of `model_name` that its
    gate never decided on and whose run's process on this host is gone; their versions.

    Such a version was registered, then its process was killed before the gate tagged it (and
    maybe before or after it took an alias). Versions of live processes, of other hosts, and
    of runs without an owner tag are left alone, as end_orphaned_runs leaves their runs.
    """
    client, marked = store.client, []
    for version in client.search_model_versions(f"name = '{model_name}'"):
        if GATE_DECISION_TAG in version.tags or not version.run_id:
            continue
        try:
            owner = client.get_run(version.run_id).data.tags.get(OWNER_TAG, "")
        except MlflowException:  # its run was deleted: nothing says whose it was
            continue
        if not owner_is_gone(owner):
            continue
        held = client.get_model_version(model_name, version.version).aliases  # search omits them
        aliases = ", ".join(held) or "none"
        reason = (
            f"interrupted: the training process {owner} was gone before its gate decided "
            f"(aliases held: {aliases}); judge it by hand with promote"
        )
        for key, value in {GATE_DECISION_TAG: "interrupted", "promotion": reason}.items():
            client.set_model_version_tag(model_name, version.version, key, value)
        marked.append(str(version.version))
    if marked:
        log.warning("%s v%s: gate.decision=interrupted", model_name, ", v".join(marked))
    return marked
