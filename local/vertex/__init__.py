"""Local Vertex AI batch prediction emulator: the REST surface of `batchPredictionJobs` for the
unmodified google-genai SDK, an offline deterministic model, and switches for latency and faults.

    from local.vertex import start_server
    emu = start_server(switches={"run_latency": 0.5})
    emu.set_switches(http_error_next=2)
    ...
    emu.stop()

Standalone: `python -m local.vertex --host 127.0.0.1 --port 8790` (see README.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from local.vertex._server import VertexEmulator, start_server
    from local.vertex._switches import SPECS, SwitchError

__all__ = ["SPECS", "SwitchError", "VertexEmulator", "start_server"]
_WHERE = {"SPECS": "_switches", "SwitchError": "_switches", "VertexEmulator": "_server", "start_server": "_server"}


def __getattr__(name: str) -> Any:
    """The public names, imported on first use: the emulator's answer processes import `local.vertex._answers`,
    and the server (its HTTP stack, its Storage client) took each of them ~0.2 CPU-s to import for nothing."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"local.vertex.{_WHERE[name]}"), name)
