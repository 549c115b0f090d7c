"""One function instance: functions-framework's own command line, with one repair to its timeout worker.

    python -m local.cloud._instance --target NAME --signature-type cloudevent --source FILE --host H --port P

With THREADED_TIMEOUT_ENABLED=true (as the platform sets it) functions-framework serves through its own
gunicorn worker, which enforces the timeout per request but drops gunicorn's keep-alive answer: every
response then closes its connection unannounced. Cloud Run's front end reconnects without a pause; the
Pub/Sub emulator's push client stalls for seconds instead (measured: poll ticks published every 0.5 s
arrived 1-4.7 s late, against 0.1 s with the answer passed on). The repair passes the answer on; the timeout
is enforced exactly as before.
"""

from __future__ import annotations

from functions_framework import _cli
from functions_framework._http import gunicorn as _gunicorn
from functions_framework.request_timeout import ThreadingTimeout
from gunicorn.workers.gthread import ThreadWorker


def _handle_request(self, req, conn):
    with ThreadingTimeout(_gunicorn.TIMEOUT_SECONDS):
        return ThreadWorker.handle_request(self, req, conn)


_gunicorn.GThreadWorkerWithTimeoutSupport.handle_request = _handle_request

if __name__ == "__main__":
    _cli._cli()
