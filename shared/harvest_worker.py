"""A collect worker process (`python -m shared.harvest_worker`): pieces of job output in, over a pipe, from
the function instance that started it (see `shared/harvest.py`)."""

import importlib
import sys

from shared import harvest

if __name__ == "__main__":
    for module in sys.argv[1:]:  # the storage adapter the tasks will open, loaded before the first arrives
        importlib.import_module(module)
    harvest.serve(sys.stdin.buffer, sys.stdout.buffer)
