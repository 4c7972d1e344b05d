"""Prefect flows, tasks, deployments and the `lstm-pipeline` CLI over the lstm_pipeline library."""

import logging
import os

# The library's progress lines (fetches, epochs, the gate's decision) belong in the flow-run logs
# of the Prefect UI. Prefect attaches its API handler to the loggers named here when it is first
# imported: every entry point imports this package before prefect (the CLI, `python -m flows.x`)
# or inherits the variable from one that did (a served deployment's flow-run process). Prefect
# leaves their level at the root's WARNING, so INFO is set here too.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "lstm_pipeline")
# The same loggers also run outside any flow run (`promote`, the library in a notebook): their
# lines then go to the console only, without a UserWarning each that there is no run to send to.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
logging.getLogger("lstm_pipeline").setLevel(logging.INFO)
