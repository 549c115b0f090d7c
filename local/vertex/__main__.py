"""`python -m local.vertex`: run the emulator as a process; prints its URL on one line, stops on SIGTERM/SIGINT.

Start values of switches come from VERTEX_EMULATOR_<NAME> environment variables, then from
`--<name>` flags (flags win). Exit code 0 on a clean stop, 2 on a bad flag or value, or when the
address cannot be bound (port in use, unknown host): one line on stderr names host:port, no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from local._serving import serve_until_stopped
from local.vertex._switches import SPECS, coerce, from_env


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local.vertex", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("VERTEX_EMULATOR_HOST", "127.0.0.1"))
    # A default given as a string goes through `type` as a flag does: a bad environment value exits 2 with
    # argparse's one line, naming the flag, where int() here raised a traceback.
    parser.add_argument("--port", type=int, default=os.environ.get("VERTEX_EMULATOR_PORT") or "0",
                        help="0 picks a free port (the default)")
    parser.add_argument("--workers", type=int, default=os.environ.get("VERTEX_EMULATOR_WORKERS") or "8",
                        help="jobs running at once; more wait QUEUED (default 8)")
    parser.add_argument("--answer-processes", type=int,
                        default=os.environ.get("VERTEX_EMULATOR_ANSWER_PROCESSES") or None,
                        help="processes that answer the rows of jobs of 20,000 rows or more "
                             "(default: one per CPU; 0 or 1: rows are answered in the job's thread)")
    parser.add_argument("--seed", type=int, default=os.environ.get("VERTEX_EMULATOR_SEED") or "0",
                        help="seeds job ids and the fault dice (default 0)")
    parser.add_argument("--project", default=os.environ.get("GOOGLE_CLOUD_PROJECT", "local"),
                        help="project the emulator's own Cloud Storage client bills (default local)")
    parser.add_argument("--log-level", default="WARNING")
    group = parser.add_argument_group("switches (also VERTEX_EMULATOR_<NAME>; lists are comma-separated)")
    for name, spec in SPECS.items():
        default = ",".join(map(str, spec.default)) if isinstance(spec.default, tuple) else spec.default
        group.add_argument("--" + name.replace("_", "-"), dest=name, default=None, metavar=spec.kind.upper(),
                           help=f"{spec.help} (default {default})")
    return parser


def main(argv: list[str] | None = None) -> int:
    # Imported here: the answer processes (`_answers`) run this module again as they start, and need none of it.
    from local.vertex._server import start_server

    parser = _parser()
    args = parser.parse_args(argv)

    def start(switches: dict):
        return start_server(args.host, args.port, workers=args.workers, switches=switches, seed=args.seed,
                            project=args.project, answer_processes=args.answer_processes)

    return serve_until_stopped(parser, args, start, switches=SPECS, from_env=from_env, coerce=coerce)


if __name__ == "__main__":
    sys.exit(main())
