"""The local cloud: the pipeline's functions wired to real local servers like the cloud wiring, with
function instances supervised (and, on request, killed at random) like Cloud Run's.

    python -m local.cloud up [--workdir DIR] [--chaos SECONDS]   # start detached, write DIR/env and DIR/cloud.json
    python -m local.cloud status                                 # what runs where
    python -m local.cloud down                                   # stop exactly what `up` started

Tests and the demo use `LocalCloud` directly (a context manager). Modules: `_cloud` (the cloud), `_wiring`
(topics, subscriptions, the functions' environment), `_supervisor` (instances and their replacement),
`_chaos` (random kills), `_groups` (process groups), `_ports`, `_clients`, `_cli`.
"""

from local.cloud._chaos import Chaos
from local.cloud._cli import main
from local.cloud._clients import pubsub_clients, storage_client, vertex_jobs
from local.cloud._cloud import (
    CRASH_SOURCE,
    DEFAULT_FUNCTION_TIMEOUT,
    DEFAULT_WORKDIR,
    REPO_ROOT,
    LocalCloud,
    vertex_available,
)
from local.cloud._groups import group_members, stop_groups
from local.cloud._ports import pick_ports
from local.cloud._supervisor import Kill, Replacement
from local.cloud._wiring import (
    CONSUMERS,
    DEAD_LETTER,
    DEAD_LETTER_WATCH,
    FUNCTIONS,
    JOB_FINISHED,
    POLL_TICKS,
    PUSH,
    RUN_FINISHED,
    RUN_FINISHED_WATCH,
    UPLOADS,
    Consumer,
)

__all__ = [
    "CONSUMERS", "CRASH_SOURCE", "DEAD_LETTER", "DEAD_LETTER_WATCH", "DEFAULT_FUNCTION_TIMEOUT", "DEFAULT_WORKDIR",
    "FUNCTIONS", "JOB_FINISHED", "POLL_TICKS", "PUSH", "REPO_ROOT", "RUN_FINISHED", "RUN_FINISHED_WATCH", "UPLOADS",
    "Chaos", "Consumer", "Kill", "LocalCloud", "Replacement", "group_members", "main", "pick_ports",
    "pubsub_clients", "stop_groups", "storage_client", "vertex_available", "vertex_jobs",
]
