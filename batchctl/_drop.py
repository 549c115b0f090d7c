"""`batchctl drop FILE...`: validate locally with the submit path's own code, then upload to the input prefix
(with a progress bar for a large file on a terminal); the upload starts the run."""

from __future__ import annotations

from pathlib import Path

import click

from batchctl._context import Ops
from batchctl._exit import Failed
from batchctl._files import local_config, reasons, stage_file
from batchctl._output import Column, emit_json, progress, say, table
from shared import layout

BAR_BYTES = 8 * 1024 * 1024  # files at least this big get a progress bar on a terminal


def object_name(ops: Ops, file: Path, prefix: str | None) -> str:
    folder = (prefix or "").strip("/")
    return ops.config.input_prefix + (f"{folder}/" if folder else "") + file.name


@click.command("drop", short_help="Validate files here, then upload them: each starts a run.")
@click.argument("files", nargs=-1, required=True, metavar="FILE...",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", help="Model for these files (the object's `model` metadata; default: MODEL).")
@click.option("--prefix", metavar="FOLDER", help="Folder under the input prefix to drop into (a/b -> incoming/a/b/).")
@click.option("--force", is_flag=True, help="Upload even a file whose every line would fail validation.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def drop(ops: Ops, files: tuple[Path, ...], model: str | None, prefix: str | None, force: bool,
         as_json: bool) -> None:
    """Upload FILE... to the input prefix, which starts a run for each.

    Each file is validated here first, with the code submit runs: a file whose every line would fail is
    refused (exit 1), showing why, unless --force. Prints each file's object, generation and run id."""
    cfg = ops.config
    store_buckets = ops.bucket_admin()
    checks = local_config(ops.environ)
    dropped, refused = [], []
    for file in files:
        with ops.quiet_core():
            _, staged = stage_file(checks, file, None)
        entry = {"file": str(file), "rows": staged.total, "invalid": staged.failed,
                 "invalidByReason": dict(staged.failed_by_reason.most_common()), "examples": staged.samples}
        if staged.total == staged.failed and not force:
            why = "it has no rows" if staged.total == 0 else f"none of its {staged.total} lines is a valid request " \
                                                              f"({reasons(staged)})"
            entry["refused"] = why
            refused.append(entry)
            say(f"refused {file}: {why}")
            for example in staged.samples[:3]:
                say(f"  - {example}")
            continue
        name = object_name(ops, file, prefix)
        size = file.stat().st_size
        with progress(f"uploading {file.name}", size, enabled=ops.tty and size >= BAR_BYTES and not as_json) as update:
            generation = store_buckets.upload(cfg.input_bucket, name, file, metadata={"model": model} if model else {},
                                              content_type="application/jsonl", progress=update)
        entry.update(uri=f"gs://{cfg.input_bucket}/{name}", generation=str(generation),
                     run=layout.run_id(cfg.input_bucket, name, generation), model=model or cfg.model)
        dropped.append(entry)
    if as_json:
        emit_json({"dropped": dropped, "refused": refused})
    elif dropped:
        table([Column("FILE"), Column("ROWS", True), Column("INVALID", True), Column("RUN"), Column("OBJECT")],
              [[d["file"], str(d["rows"]), str(d["invalid"]), d["run"], d["uri"]] for d in dropped], tty=ops.tty)
    if refused:
        raise Failed(f"{len(refused)} of {len(files)} file(s) refused: every line would fail validation "
                     "(--force uploads them anyway)")
