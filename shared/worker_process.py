"""A worker process (`python -m shared.worker_process MODULE...`): tasks in, over a pipe, from the function
instance that started it (see `shared/workers.py`)."""

import importlib
import sys

from shared import workers

if __name__ == "__main__":
    for module in sys.argv[1:]:  # what the tasks will use, loaded before the first arrives
        importlib.import_module(module)
    workers.serve(sys.stdin.buffer, sys.stdout.buffer)
