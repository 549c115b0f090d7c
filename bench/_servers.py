"""Local servers the benchmarks start as processes of their own, as the local cloud runs them (the limits
proxy, the Vertex emulator): each prints its URL on the first line of its stdout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def spawn(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`python -m ARGS...` and the URL it serves on."""
    process = subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                               env={**os.environ, **(env or {})})
    url = process.stdout.readline().strip()
    if not url:
        process.kill()
        process.wait()
        raise RuntimeError(f"python -m {args[0]} did not start")
    return process, url


def stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
