"""`batchctl redrive`: dead letters back to the topics they came from (`shared/redrive.py`), after an outage."""

from __future__ import annotations

import click

from batchctl._context import Ops
from batchctl._exit import Failed
from batchctl._output import Column, emit_json, table
from shared import redrive as core


@click.command("redrive", short_help="Move dead letters back to the topics they came from.")
@click.option("--subscription", "subscriptions", multiple=True, metavar="NAME",
              help="A dead-letter pull subscription (repeatable; default: DEAD_LETTER_SUBSCRIPTIONS, else every "
                   "pull subscription on a dead-letter topic).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many messages per subscription.")
@click.option("--dry-run", is_flag=True, help="Count the messages and give them back; move nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def redrive(ops: Ops, subscriptions: tuple[str, ...], limit: int | None, dry_run: bool, as_json: bool) -> None:
    """Move messages from the dead-letter subscriptions back to their source topics, with a count.

    A message is published again to the topic(s) whose subscriptions dead-letter into it (found from the
    subscriptions' dead-letter policies), unchanged, then acknowledged. The reconciliation reads the same
    subscriptions on every tick (it logs each message and restarts the upload it names), so redrive moves
    what it has not read yet; every function is idempotent, so a message seen by both is harmless."""
    relay = ops.pubsub_admin()
    names = subscriptions or ops.config.dead_letter_subscriptions or core.dead_letter_subscriptions(
        relay.subscriptions())
    if not names:
        raise Failed("no dead-letter subscriptions: no pull subscription reads a dead-letter topic (set "
                     "DEAD_LETTER_SUBSCRIPTIONS or give --subscription)")
    done = [core.redrive(relay, name, dry_run=dry_run, limit=limit) for name in names]
    if as_json:
        emit_json({"subscriptions": [d.to_json() for d in done], "found": sum(d.found for d in done),
                   "moved": sum(d.moved for d in done), "dryRun": dry_run})
        return
    table([Column("SUBSCRIPTION"), Column("TO TOPIC"), Column("FOUND", True), Column("MOVED", True)],
          [[d.subscription, ", ".join(d.topics), str(d.found), str(d.moved)] for d in done], tty=ops.tty)
    total = sum(d.found for d in done)
    click.echo(f"{'dry run: ' if dry_run else ''}{total} message(s) found, {sum(d.moved for d in done)} moved",
               err=True)
