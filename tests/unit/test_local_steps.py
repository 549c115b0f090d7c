"""`local/_steps.py`: what the local run scripts read back from the functions' logs."""

from __future__ import annotations

import json

from local import _steps


class _Logs:
    """A local cloud's logs, function by function: JSON lines and the lines functions-framework writes around them."""

    def __init__(self, logs: dict[str, list[object]]) -> None:
        self._logs = logs

    def logs(self, name: str) -> str:
        return "\n".join(line if isinstance(line, str) else json.dumps(line) for line in self._logs.get(name, []))


def test_each_function_failure_is_told_with_what_it_said():
    cloud = _Logs({
        "collect": [{"event": "part.collected", "message": "fine"},
                    {"event": "collect.failed", "message": "collect: WorkerLost: a worker process ended mid-task"},
                    "Traceback (most recent call last):", "  collect.failed", '{"not": "json"',
                    {"event": "rows.failed", "message": "3 rows failed for good"}],
        "submit": [{"event": "submit.failed", "message": "submit: TransientError: 503 (will be retried)"},
                   {"event": "collect.failed", "message": "not submit's own"}],
    })
    assert _steps.failure_messages(cloud) == ["submit: TransientError: 503 (will be retried)",
                                              "collect: WorkerLost: a worker process ended mid-task"]
    assert _steps.logged_events(cloud)["collect.failed"] == 2
