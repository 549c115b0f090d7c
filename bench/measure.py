"""One measured case in a process of its own, so its peak memory is its own: prints one JSON line with the
seconds the work took (interpreter start and imports excluded) and the peak resident set size, this process's
and its children's (an external tool).

    python -m bench.measure CASE SOURCE WORK [--staged FILE]

CASE is one of `CASES`; SOURCE is the file it reads; WORK an empty directory it may write to.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

JQ_FILTER = 'select(.status=="")'


def parse_only(source: Path, work: Path, args: argparse.Namespace) -> str | None:
    import orjson

    from shared.lines import iter_lines

    loads = orjson.loads
    with open(source, "rb") as f:
        for raw in iter_lines(f):
            if raw:
                loads(raw)
    return None


def postprocess(source: Path, work: Path, args: argparse.Namespace, environ: dict | None = None) -> str | None:
    from batchctl._context import Ops
    from batchctl._files import postprocess as command

    argv = [str(source), "--out", str(work), "--json", "--name", "bench"]
    if args.staged:
        argv += ["--staged", str(args.staged)]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        command.main(argv, obj=Ops(environ or {}), standalone_mode=False)
    counts = json.loads(out.getvalue())["report"]["rows"]
    return f"{counts['succeeded']} succeeded, {counts['failed']} failed"


def postprocess_one_core(source: Path, work: Path, args: argparse.Namespace) -> str | None:
    return postprocess(source, work, args, {"COLLECT_WORKERS": "1"})


def validate(source: Path, work: Path, args: argparse.Namespace, environ: dict | None = None) -> str | None:
    from batchctl._context import Ops
    from batchctl._files import validate as command

    with contextlib.redirect_stdout(io.StringIO()) as out:
        command.main([str(source), "--out", str(work), "--json"], obj=Ops(environ or {}), standalone_mode=False)
    doc = json.loads(out.getvalue())
    return f"{doc['valid']} valid, {doc['invalid']} invalid, {len(doc['parts'])} parts"


def validate_one_core(source: Path, work: Path, args: argparse.Namespace) -> str | None:
    return validate(source, work, args, {"SUBMIT_WORKERS": "1"})


def duckdb_split(source: Path, work: Path, args: argparse.Namespace) -> str | None:
    try:
        import duckdb
    except ImportError:
        return "not installed"
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"CREATE TABLE p AS SELECT * FROM read_ndjson('{source}', sample_size = -1)")
    con.execute(f"COPY (SELECT * FROM p WHERE status = '') TO '{work / 'results.jsonl'}' (FORMAT json)")
    con.execute(f"COPY (SELECT * FROM p WHERE status <> '') TO '{work / 'errors.jsonl'}' (FORMAT json)")
    return None


def _tool(argv: list[str], source: Path, target: Path) -> str | None:
    if shutil.which(argv[0]) is None:
        return "not installed"
    with open(source, "rb") as f, open(target, "wb") as out:
        subprocess.run(argv, stdin=f, stdout=out, check=True)
    return None


def jq_select(source: Path, work: Path, args: argparse.Namespace) -> str | None:
    return _tool(["jq", "-c", JQ_FILTER], source, work / "results.jsonl")


def cat(source: Path, work: Path, args: argparse.Namespace) -> str | None:
    return _tool(["cat"], source, Path(os.devnull))


# What each case imports, loaded before its clock starts: the seconds are the work's, as the docstring says
# (batchctl's modules take ~0.09 s to import, a third of parse-only's whole run on 200 MB).
_BATCHCTL = ("batchctl._context", "batchctl._files")
PRELOAD = {"postprocess": _BATCHCTL, "postprocess-1": _BATCHCTL, "validate": _BATCHCTL, "validate-1": _BATCHCTL,
           "parse-only": ("orjson", "shared.lines"), "duckdb": ("duckdb",)}

CASES: dict[str, Callable[[Path, Path, argparse.Namespace], str | None]] = {
    "parse-only": parse_only, "postprocess": postprocess, "postprocess-1": postprocess_one_core,
    "validate": validate, "validate-1": validate_one_core, "duckdb": duckdb_split,
    "jq": jq_select, "cat": cat,
}


def _own_peak_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class _TreePeak:
    """The peak resident memory of this process and its descendants (collect's workers) together, bounded from
    above: the sum of each one's own high-water mark (VmHWM), read every 20 ms and once more at the end. An upper
    bound that does not depend on how long the case runs, where sampling the sum would find a higher value the
    more samples a longer run takes."""

    def __init__(self) -> None:
        self._peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        for pid, kb in _tree_hwm_kb(os.getpid()).items():
            self._peaks[pid] = max(self._peaks.get(pid, 0), kb)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self._sample()
        return sum(self._peaks.values())


def _tree_hwm_kb(root: int) -> dict[int, int]:
    """VmHWM (kB) of `root` and every process below it, by pid."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        pid = int(entry)
        parents[pid] = int(fields.get("PPid", "0"))
        rss[pid] = int(fields.get("VmHWM", "0 kB").split()[0])
    below: dict[int, int] = {}
    for pid, value in rss.items():
        at = pid
        while at and at != root:
            at = parents.get(at, 0)
        if at == root:
            below[pid] = value
    return below


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("source", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--staged", type=Path)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    for module in PRELOAD.get(args.case, ()):
        with contextlib.suppress(ImportError):  # a baseline that is not installed says so when it runs
            importlib.import_module(module)
    tree = _TreePeak() if args.case not in ("jq", "cat") else None
    start = time.perf_counter()
    note = CASES[args.case](args.source, args.work, args)
    seconds = time.perf_counter() - start
    tree_kb = tree.stop() if tree else 0
    # This process's high-water mark from /proc: getrusage's would keep the parent's across exec. A tool's comes
    # from getrusage (kilobytes on Linux), which counts it from the fork of this small process: an upper bound.
    # With worker processes, the bound over the whole tree (it includes this process's own peak).
    peak = max(_own_peak_kb(), tree_kb) if tree else resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    json.dump({"seconds": seconds, "peak_rss_mb": round(peak / 1024, 1), "note": note}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
