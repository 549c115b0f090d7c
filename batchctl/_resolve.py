"""From what an operator types (a run id, `gs://bucket/name`, an object name, or a name under the input
prefix, with or without `.jsonl`) to the run record it means: the run of the input's current generation,
else the run its report names, else the newest run the index has for that input."""

from __future__ import annotations

import re
from typing import Any

from batchctl._context import Ops
from shared import layout, runindex
from shared.errors import PermanentError

RUN_ID = re.compile(rf"^r[0-9a-f]{{{layout.RUN_ID_HEX}}}$")


def input_object(ops: Ops, target: str) -> tuple[str, str]:
    """(bucket, name) of an input given as a URI, an object name or a name under the input prefix."""
    cfg = ops.config
    if target.startswith("gs://"):
        bucket, _, name = target[5:].partition("/")
        return bucket, name
    if target.startswith(cfg.input_prefix):
        return cfg.input_bucket, target
    return cfg.input_bucket, cfg.input_prefix + target


def run_record(ops: Ops, target: str) -> dict[str, Any]:
    """The run record `target` names. Raises PermanentError (exit 1) when there is none."""
    store, bucket = ops.storage(), ops.config.output_bucket
    if RUN_ID.match(target):
        found = store.read_json(bucket, layout.run_state_name(target))
        if found is None:
            raise PermanentError(f"no run {target} in gs://{bucket}/{runindex.RUNS_PREFIX}")
        return found.value
    in_bucket, name = input_object(ops, target)
    names = [name] if name.endswith(".jsonl") else [name, name + ".jsonl"]
    for candidate in names:
        info = store.object_info(in_bucket, candidate)
        if info is not None:
            found = store.read_json(bucket, layout.run_state_name(
                layout.run_id(in_bucket, candidate, int(info["generation"]))))
            if found is not None:
                return found.value
    for candidate in names:
        rel = layout.relative_name(candidate, ops.config.input_prefix)
        report = store.read_json(bucket, layout.report_name(layout.output_rel(rel)[0]))
        if report is not None and report.value.get("input", {}).get("name") == candidate:
            found = store.read_json(bucket, layout.run_state_name(report.value["run"]))
            if found is not None:
                return found.value
    uris = {f"gs://{in_bucket}/{candidate}" for candidate in names}
    runs = [r for r in runindex.list_runs(store, bucket) if r.input in uris]
    if runs:
        found = store.read_json(bucket, layout.run_state_name(runs[0].run))
        if found is not None:
            return found.value
    raise PermanentError(f"no run for {target} (looked for gs://{in_bucket}/{names[0]}: a file dropped moments "
                         "ago may not have been claimed yet)")
