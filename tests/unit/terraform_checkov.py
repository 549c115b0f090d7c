"""checkov over terraform/, from its own virtual environment (.venv-checkov, made by `make` or here).

checkov exits 0 on HCL it cannot parse, so it is never the only syntax check (the schema test is).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-checkov"
REQUIREMENTS = ROOT / "requirements-checkov.txt"
STAMP = VENV / ".installed"


def ensure() -> Path:
    """The checkov executable, installing the pinned version first if the environment is missing or stale."""
    exe = VENV / "bin" / "checkov"
    if STAMP.exists() and exe.exists() and STAMP.stat().st_mtime >= REQUIREMENTS.stat().st_mtime:
        return exe
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(REQUIREMENTS)], check=True)
    STAMP.touch()
    return exe


def run(directory: Path) -> dict[str, Any]:
    """checkov's JSON report of `directory` (terraform framework only, offline)."""
    exe = ensure()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HOME": home, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
        proc = subprocess.run([str(exe), "-d", str(directory), "--framework", "terraform", "--compact", "--quiet",
                               "--skip-download", "--output", "json"],
                              capture_output=True, text=True, env=env, timeout=300)
    assert proc.stdout.strip(), f"checkov printed nothing (exit {proc.returncode}): {proc.stderr[-2000:]}"
    report = json.loads(proc.stdout)
    if isinstance(report, list):  # one report per framework
        report = next(r for r in report if r.get("check_type") == "terraform")
    return report
