"""A local Cloud Storage as strict as GCS: a reverse proxy in front of fake-gcs-server that limits mutations
per object name (about one a second, with a small burst, then 429 with GCS's error body), can lose replies to
committed writes, fail or slow any call, and counts what every object name went through.

    from local.gcs_limits import start_server
    proxy = start_server(fake_gcs.url, rate_per_object=1, burst=3)
    client = make_client(project, endpoint=proxy.url)  # shared.storage.gcs, the one client factory
    proxy.set_switches(commit_then_503=0.1)
    proxy.stats()["totals"]["peakPer10s"]
    proxy.stop()

Standalone: `python -m local.gcs_limits --backend http://127.0.0.1:4443` (see README.md).
"""

from local.gcs_limits._server import GcsLimits, start_server
from local.gcs_limits._switches import SPECS, SwitchError

__all__ = ["SPECS", "GcsLimits", "SwitchError", "start_server"]
