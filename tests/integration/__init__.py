"""Real servers (mlflow, prefect), CLI processes, whole flows under the Prefect harness."""
