"""`python -m local.gcs_limits`: run the proxy as a process; prints its URL on one line, stops on SIGTERM/SIGINT.

Start values of switches come from GCS_LIMITS_<NAME> environment variables, then from `--<name>` flags (flags
win). Exit code 0 on a clean stop, 2 on a bad flag or value, or when the address cannot be bound (port in use,
unknown host): one line on stderr names host:port, no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from local._serving import serve_until_stopped
from local.gcs_limits._server import start_server
from local.gcs_limits._switches import ENV_PREFIX, SPECS, coerce, from_env


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local.gcs_limits", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=os.environ.get(ENV_PREFIX + "BACKEND"),
                        help=f"URL of the storage to guard, e.g. http://127.0.0.1:4443 (or {ENV_PREFIX}BACKEND)")
    parser.add_argument("--host", default=os.environ.get(ENV_PREFIX + "HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=os.environ.get(ENV_PREFIX + "PORT", "0"),
                        help="0 picks a free port (the default)")
    parser.add_argument("--log-level", default="WARNING")
    group = parser.add_argument_group(f"switches (also {ENV_PREFIX}<NAME>)")
    for name, spec in SPECS.items():
        group.add_argument(spec.flag, dest=name, default=None, metavar=spec.kind.upper(),
                           help=f"{spec.help} (default {spec.default})")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.backend:
        parser.error(f"--backend is required (or {ENV_PREFIX}BACKEND)")

    def start(switches: dict):
        return start_server(args.backend, args.host, args.port, **switches)

    return serve_until_stopped(parser, args, start, switches=SPECS, from_env=from_env, coerce=coerce)


if __name__ == "__main__":
    sys.exit(main())
