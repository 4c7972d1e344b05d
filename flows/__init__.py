"""Prefect flows, tasks, deployments and the `lstm-pipeline` CLI over the lstm_pipeline library."""
