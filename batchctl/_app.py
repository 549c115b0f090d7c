"""The root command: global options, the commands, and the one place an exception becomes an exit code and
one line on stderr (`_exit.py`)."""

from __future__ import annotations

import importlib

import click

from batchctl._context import Ops
from batchctl._exit import describe, exit_code

# command -> module defining it: a command's module (and what it imports) loads only when it runs, so
# `batchctl runs` never pays for the Vertex or Pub/Sub libraries.
COMMANDS = {
    "drop": "_drop", "runs": "_runs", "show": "_show", "retry": "_retry", "cancel": "_cancel",
    "redrive": "_redrive", "doctor": "_doctor", "validate": "_files", "postprocess": "_files",
    "verify": "_verify", "logs": "_logs",
}


class _Root(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"batchctl.{COMMANDS[name]}")
        return next(c for c in vars(module).values() if isinstance(c, click.Command) and c.name == name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - every failure ends as one line and an exit code
            click.echo(f"batchctl: error: {describe(exc)}", err=True)
            ctx.exit(int(exit_code(exc)))


@click.group("batchctl", cls=_Root, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("-v", "--verbose", is_flag=True, help="Also show the core's log lines (JSON) on stderr.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Operate the gemini-batch-pipeline: drop files, watch and inspect runs, retry, cancel, redrive, check.

    Configured by the same environment variables as the functions (GOOGLE_CLOUD_PROJECT, INPUT_BUCKET,
    OUTPUT_BUCKET, ...): `. .local/env` points it at the local cloud. Exit codes: 0 done, 1 permanent
    (fix something), 2 usage or configuration, 3 transient (try again later)."""
    if ctx.obj is None:
        ctx.obj = Ops.from_env()
    ctx.obj.verbose = ctx.obj.verbose or verbose


def main() -> int:
    """The `batchctl` console script."""
    return cli.main(prog_name="batchctl")
