"""A collect worker process (`python -m shared.harvest_worker`): pieces of job output in, over a pipe, from
the function instance that started it (see `shared/harvest.py`)."""

import sys

from shared import harvest

if __name__ == "__main__":
    harvest.serve(sys.stdin.buffer, sys.stdout.buffer)
