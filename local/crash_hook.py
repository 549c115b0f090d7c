"""The pipeline's functions with a crash hook, for tests on the local cloud only.

It lives outside functions/ and shared/, so no deploy can ever carry it, and it runs only when the local cloud
is asked to (`LocalCloud(crash_at=[...])`), which serves the functions from this file instead of their own.
It loads the functions' source (GBP_CRASH_SOURCE, by default functions/main.py), re-exports its entry points
and sets the pipeline's `checkpoint`, which the core calls at each step boundary ("submit.claimed",
"collect.written", ...). The first time anywhere in the local cloud that a step named in GBP_CRASH_AT
(comma-separated) is reached, the instance kills its own process group with SIGKILL: a real crash, where no
`except` or `finally` runs and no reply is sent. "First" is decided by creating GBP_CRASH_DIR/<step> with
O_EXCL, so concurrent instances agree on one victim per step.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path

FUNCTIONS = ("submit", "poll", "collect", "reconcile")
_SOURCE = Path(os.environ.get("GBP_CRASH_SOURCE") or Path(__file__).resolve().parent.parent / "functions" / "main.py")
_STEPS = frozenset(s.strip() for s in os.environ.get("GBP_CRASH_AT", "").split(",") if s.strip())
_DIR = Path(os.environ["GBP_CRASH_DIR"]) if os.environ.get("GBP_CRASH_DIR") else None


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the functions from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def checkpoint(step: str) -> None:
    """Die here if `step` is to crash and no instance has crashed at it yet."""
    if step not in _STEPS or _DIR is None:
        return
    try:
        fd = os.open(_DIR / step, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return
    os.write(fd, json.dumps({"step": step, "function": os.environ.get("K_SERVICE"), "pid": os.getpid(),
                             "pgid": os.getpgrp(), "at": time.time()}).encode())
    os.close(fd)
    print(f"crash hook: killing this instance at step {step}", file=sys.stderr, flush=True)
    os.killpg(os.getpgrp(), signal.SIGKILL)


if _STEPS and _DIR is None:
    raise RuntimeError("GBP_CRASH_AT names steps but GBP_CRASH_DIR is not set: nowhere to mark a crash")
_functions = _load(_SOURCE)
PIPELINE = getattr(_functions, "PIPELINE", None)
if PIPELINE is None or not hasattr(PIPELINE, "checkpoint"):
    raise RuntimeError(f"{_SOURCE} has no PIPELINE with a checkpoint hook to install the crash hook on")
PIPELINE.checkpoint = checkpoint
globals().update({name: getattr(_functions, name) for name in FUNCTIONS if hasattr(_functions, name)})
