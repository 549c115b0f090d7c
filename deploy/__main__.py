"""python -m deploy {deploy,smoke,destroy}: the Makefile's `make deploy`, `make smoke`, `make destroy`.

Exit codes: 0 done, 1 failed, 2 usage or configuration (a missing tool, no login, no project), 3 try later.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deploy import commands
from deploy.stack import STATE_ROOT, parse_vars
from deploy.tools import DeployError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy", description="Deploy the pipeline to Google Cloud.")
    parser.add_argument("--state-dir", type=Path, default=STATE_ROOT, help="where deployments are kept")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("deploy", help="bundle, then terraform init and apply; prints the outputs")
    up.add_argument("--project", default="")
    up.add_argument("--region", default="", help="default: the region deployed to before, else us-central1")
    up.add_argument("--vars", default="", help='settings kept for later deploys: "model=gemini-2.5-pro max_attempts=4"')
    up.add_argument("--dist", type=Path, default=commands.DIST, help="where the source bundle is built")
    check = sub.add_parser("smoke", help="drop a sample, wait for its report, check the row accounting")
    check.add_argument("--project", default="")
    check.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the report")
    check.add_argument("--interval", type=float, default=20.0, help="seconds between looks")
    down = sub.add_parser("destroy", help="terraform destroy")
    down.add_argument("--project", default="")
    down.add_argument("--force", action="store_true", help="also delete the buckets' contents (results too)")
    args = parser.parse_args(argv)
    try:
        if args.command == "deploy":
            commands.up(args.project, args.region, parse_vars(args.vars),
                        state_root=args.state_dir, dist=args.dist)
            return 0
        if args.command == "smoke":
            return commands.check(args.project or None, timeout=args.timeout, interval=args.interval,
                                  state_root=args.state_dir)
        commands.down(args.project or None, force=args.force, state_root=args.state_dir)
        return 0
    except DeployError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
