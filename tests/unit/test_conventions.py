"""Conventions the code must keep as it grows, checked over the source tree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [p for top in ("shared", "functions", "local", "batchctl", "bench", "deploy", "tests")
           for p in (ROOT / top).rglob("*.py")]


def test_only_the_one_factory_builds_a_storage_client():
    """Every client reaches Cloud Storage through `shared.storage.gcs.make_client`, so nothing bypasses the
    local storage's limits by accident."""
    builders = [str(p.relative_to(ROOT)) for p in SOURCES
                if re.search(r"storage\.Client\(", p.read_text()) and p != ROOT / "shared/storage/gcs.py"
                and p != Path(__file__)]
    assert builders == []
