"""Fast tests on synthetic data: no servers, no subprocesses, no network."""
