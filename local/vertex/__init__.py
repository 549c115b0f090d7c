"""Local Vertex AI batch prediction emulator: the REST surface of `batchPredictionJobs` for the
unmodified google-genai SDK, an offline deterministic model, and switches for latency and faults.

    from local.vertex import start_server
    emu = start_server(switches={"run_latency": 0.5})
    emu.set_switches(http_error_next=2)
    ...
    emu.stop()

Standalone: `python -m local.vertex --host 127.0.0.1 --port 8790` (see README.md).
"""

from local.vertex._server import VertexEmulator, start_server
from local.vertex._switches import SPECS, SwitchError

__all__ = ["SPECS", "SwitchError", "VertexEmulator", "start_server"]
