"""Runs whose process is gone: the owner tag every run carries, and the sweep that ends them.

A SIGKILLed or OOM-killed job, or one whose server died mid-run, leaves its run RUNNING for
good. Each run is tagged with the `host:pid` of the process that will end it, so the next run
on the same host can tell an orphan from a run still going.
"""

from __future__ import annotations

import logging
import os
import socket

from lstm_pipeline.files import process_exists
from lstm_pipeline.tracking.store import Store

log = logging.getLogger(__name__)

OWNER_TAG = "lstm_pipeline.owner"  # host:pid of the process that ends the run


def owner_of_new_run(store: Store, experiment: str) -> dict[str, str]:
    """The tag that makes a new run this process's to end, after ending the orphans its
    predecessors left (end_orphaned_runs). Call it in the process that will end the run."""
    end_orphaned_runs(store, experiment)
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
