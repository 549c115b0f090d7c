"""`batchctl logs RUN|INPUT`: the run's log lines. On the local cloud they are read from its per-function
log files (JSON lines, `.local/logs/<function>.log`); in Google Cloud the command prints the Cloud Logging
filter of the run (the lines carry the label `run`) and, with --run, reads them with `gcloud logging read`."""

from __future__ import annotations

import heapq
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import orjson

from batchctl._context import DEFAULT_LOGS, Ops
from batchctl._exit import Exit, Failed
from batchctl._output import emit_json
from batchctl._resolve import RUN_ID, run_record
from shared.log import FUNCTIONS

LABELS = "logging.googleapis.com/labels"


def cloud_filter(run: str) -> str:
    """The Cloud Logging filter of one run's lines (the functions' label `run`)."""
    return f'resource.type="cloud_run_revision" AND labels.run="{run}"'


def _entries(path: Path, function: str, run: str) -> Iterator[dict[str, Any]]:
    """A log file's JSON lines that carry the run's label (other lines, such as the server's, are skipped)."""
    with open(path, "rb") as f:
        for raw in f:
            start = raw.find(b"{")
            if start < 0 or b'"run"' not in raw:
                continue
            try:
                entry = orjson.loads(raw[start:])
            except orjson.JSONDecodeError:
                continue
            if isinstance(entry, dict) and (entry.get(LABELS) or {}).get("run") == run:
                yield {"function": function, **entry}


def local_entries(logs_dir: Path, run: str) -> list[dict[str, Any]]:
    """Every function's lines of the run, in time order."""
    files = [(fn, logs_dir / f"{fn}.log") for fn in FUNCTIONS if (logs_dir / f"{fn}.log").exists()]
    if not files:
        raise Failed(f"no function logs in {logs_dir} (is the local cloud up? `make up`; or give --logs-dir)",
                     Exit.USAGE)
    return list(heapq.merge(*(sorted(_entries(path, fn, run), key=_time) for fn, path in files), key=_time))


def _time(entry: dict[str, Any]) -> str:
    return str(entry.get("time") or entry.get("timestamp") or "")


def _cloud_entries(ops: Ops, run: str, freshness: str) -> list[dict[str, Any]]:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise Failed("gcloud is not on PATH (install the Google Cloud CLI), or run the printed filter in Logs "
                     "Explorer", Exit.USAGE)
    done = subprocess.run([gcloud, "logging", "read", cloud_filter(run), f"--project={ops.config.project}",
                           f"--freshness={freshness}", "--order=asc", "--format=json"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise Failed(f"gcloud logging read failed: {' '.join(done.stderr.split())[:400]}")
    entries = []
    for item in orjson.loads(done.stdout or "[]"):
        payload = item.get("jsonPayload") or {"message": item.get("textPayload")}
        entries.append({"function": (item.get("resource") or {}).get("labels", {}).get("service_name"),
                        "time": item.get("timestamp"), "severity": item.get("severity"), **payload})
    return entries


def render(entries: list[dict[str, Any]]) -> None:
    for e in entries:
        click.echo(f"{_time(e)}  {str(e.get('function') or '-'):9}  {str(e.get('severity') or '-'):8}  "
                   f"{str(e.get('event') or '-'):22}  {e.get('message') or ''}")


@click.command("logs", short_help="A run's log lines, or their Cloud Logging filter.")
@click.argument("target", metavar="RUN|INPUT")
@click.option("--logs-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_LOGS,
              show_default=True, help="The local cloud's log folder.")
@click.option("--run", "run_it", is_flag=True, help="In Google Cloud: also read the lines with gcloud.")
@click.option("--freshness", default="7d", show_default=True, help="In Google Cloud: how far back to read.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def logs(ops: Ops, target: str, logs_dir: Path, run_it: bool, freshness: str, as_json: bool) -> None:
    """Show a run's log lines (those with its `run` label), oldest first.

    On the local cloud (VERTEX_BASE_URL set) they come from its function logs. In Google Cloud this prints
    the Logs Explorer filter and the gcloud command; --run reads them."""
    run = target if RUN_ID.match(target) else run_record(ops, target)["run"]
    if ops.local:
        entries = local_entries(logs_dir, run)
    elif run_it:
        entries = _cloud_entries(ops, run, freshness)
    else:
        flt = cloud_filter(run)
        command = f"gcloud logging read '{flt}' --project={ops.config.project} --freshness={freshness} --order=asc"
        if as_json:
            emit_json({"run": run, "filter": flt, "command": command})
        else:
            click.echo(flt)
            click.echo(f"# read them with: {command}  (or: batchctl logs {target} --run)", err=True)
        return
    if as_json:
        emit_json({"run": run, "entries": entries})
    else:
        render(entries)
        if not entries:
            click.echo(f"no log lines for run {run}", err=True)
