"""The command-line tools deploying needs (gcloud, terraform): presence, login, and running them.

Every command is echoed before it runs, so the operator sees what is done in their name. Failures become a
`DeployError` whose exit code follows the repository's convention: 1 a failure, 2 usage or configuration
(a missing tool, no login), 3 transient (try again later).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

FAILED, USAGE, TRANSIENT = 1, 2, 3

INSTALL_HINTS = {
    "gcloud": "install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install)",
    "terraform": "install Terraform 1.9 or newer (https://developer.hashicorp.com/terraform/install)",
}


class DeployError(Exception):
    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def require(*tools: str) -> None:
    """Raises naming every tool that is not on PATH, with how to get it."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise DeployError("missing on PATH: " + "; ".join(f"{t} ({INSTALL_HINTS.get(t, 'install it')})"
                                                          for t in missing), USAGE)


@dataclass
class Runner:
    """Runs commands with an extra environment; `echo` writes each command line to stderr first."""

    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    echo: bool = True

    def _environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def run(self, args: Sequence[str], *, what: str, code: int = FAILED) -> None:
        """Runs with the terminal attached (output streams through); raises if it fails."""
        self._show(args)
        proc = subprocess.run(list(args), env=self._environ(), cwd=self.cwd)
        if proc.returncode != 0:
            raise DeployError(f"{what} failed ({args[0]} exited {proc.returncode})", code)

    def capture(self, args: Sequence[str], *, show: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs and returns the completed process (stdout and stderr captured), whatever its exit code."""
        if show:
            self._show(args)
        return subprocess.run(list(args), env=self._environ(), cwd=self.cwd, capture_output=True, text=True)

    def _show(self, args: Sequence[str]) -> None:
        if self.echo:
            print("+ " + shlex.join(args), file=sys.stderr, flush=True)


MIN_TERRAFORM = (1, 9)


def check_terraform(runner: Runner) -> str:
    """The Terraform version; raises if it is older than terraform/versions.tf accepts."""
    proc = runner.capture(["terraform", "version", "-json"])
    try:
        version = str(json.loads(proc.stdout)["terraform_version"])
        parts = tuple(int(p) for p in version.split("-")[0].split(".")[:2])
    except (ValueError, KeyError, TypeError):
        raise DeployError(f"cannot tell the version of {shutil.which('terraform')}: {proc.stderr.strip()[-300:]}",
                          USAGE) from None
    if parts < MIN_TERRAFORM:
        raise DeployError(f"terraform {version} at {shutil.which('terraform')} is too old: "
                          f"{INSTALL_HINTS['terraform']}", USAGE)
    return version


def check_login(runner: Runner, project: str | None = None) -> str:
    """The active gcloud account; raises naming what is missing: a gcloud login, Application Default
    Credentials (what Terraform's google provider uses), or access to the project."""
    accounts = runner.capture(["gcloud", "auth", "list", "--filter=status:ACTIVE", "--format=value(account)"])
    account = accounts.stdout.strip().splitlines()[0] if accounts.returncode == 0 and accounts.stdout.strip() else ""
    if not account:
        raise DeployError("no active gcloud account: run `gcloud auth login`", USAGE)
    # The token itself is never shown.
    adc = runner.capture(["gcloud", "auth", "application-default", "print-access-token", "--quiet"])
    if adc.returncode != 0:
        raise DeployError("no Application Default Credentials, which Terraform uses: run "
                          "`gcloud auth application-default login`", USAGE)
    if project:
        found = runner.capture(["gcloud", "projects", "describe", project, "--format=value(projectNumber)"])
        if found.returncode != 0 or not found.stdout.strip():
            raise DeployError(f"project {project!r} is not visible to {account}: check the project ID, or ask "
                              f"for access to it ({found.stderr.strip()[-300:]})", USAGE)
    return account
