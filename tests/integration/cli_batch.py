"""Many `lstm-pipeline` command lines in one interpreter: one Prefect start instead of one each.

`python -m tests.integration.cli_batch CASES.json RESULTS.json`: CASES maps a case id to
`{"args": [...], "cwd": DIR}`; RESULTS maps it to `{"code", "stdout", "stderr"}`. Each case runs
`flows.cli.main` in its own working directory with file descriptors 1 and 2 sent to files, so
everything any library or Prefect prints is caught, as it would be from a separate process.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from flows.cli import main


def run_case(args: list[str], cwd: str) -> dict[str, Any]:
    os.chdir(cwd)
    environment = dict(os.environ)  # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI
    # main() adds its console handlers on every call: keep only this call's
    logging.getLogger("lstm_pipeline").handlers.clear()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            code = main(args)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            os.environ.clear()
            os.environ.update(environment)
        out.seek(0)
        err.seek(0)
        return {"code": code, "stdout": out.read(), "stderr": err.read()}


if __name__ == "__main__":
    cases_file, results_file = (Path(arg).resolve() for arg in sys.argv[1:3])  # cases chdir
    cases = json.loads(cases_file.read_text())
    results = {name: run_case(case["args"], case["cwd"]) for name, case in cases.items()}
    results_file.write_text(json.dumps(results))
