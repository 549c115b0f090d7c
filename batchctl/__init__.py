"""`batchctl`: the operator's command line for the pipeline: drop files, watch and inspect runs, retry, cancel,
redrive dead letters, check the wiring, verify a run's books, read its logs, and run the submit and collect
paths on local files.

It reads the same state the functions write, through the same core modules (`shared/`), and is configured by
the same environment variables (`. .local/env` points it at the local cloud). Exit codes: 0 done,
1 permanent (fix something), 2 usage or configuration, 3 transient (try again later).
"""

from batchctl._app import cli, main

__all__ = ["cli", "main"]
