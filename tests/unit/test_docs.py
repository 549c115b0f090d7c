"""What operators read must match the code: the README's configuration table and event list."""

from __future__ import annotations

import re
from pathlib import Path

from shared.log import EVENTS, FUNCTIONS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def test_the_readme_configuration_table_lists_exactly_the_variables_config_reads():
    source = (ROOT / "shared" / "config.py").read_text()
    read = set(re.findall(r'reader\.\w+\(\s*"([A-Z_]+)"', source))
    table = _section("Configuration")
    documented = {name for row in table.splitlines() if row.startswith("| `")
                  for name in re.findall(r"`([A-Z_]+)`", row.split("|")[1])}
    assert read == documented


def test_the_readme_event_table_is_the_declared_event_list():
    rows = [row for row in _section("Logging").splitlines() if row.startswith("| `")]
    documented = {re.match(r"\| `([^`]+)`", row).group(1) for row in rows}
    expanded = {name.replace("<function>", fn) for name in documented for fn in FUNCTIONS}
    assert expanded == set(EVENTS)


def test_every_event_the_code_logs_is_declared():
    used = set()
    for path in (ROOT / "shared").rglob("*.py"):
        used |= set(re.findall(r'log\.(?:info|warning|error|critical)\(\s*"([a-z_.]+)"', path.read_text()))
    assert used and used <= set(EVENTS)
