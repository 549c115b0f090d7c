"""One deployment of terraform/ per project: its settings, its state, and the Terraform commands on it.

Everything of a deployment lives in `.deploy/<project>/`:
    terraform.tfvars.json   the settings (project, region, the bundle, and whatever --var set; kept, so the
                            next deploy applies the same settings unless told otherwise)
    terraform.tfstate       the state (local backend; a team moves it to a "gcs" backend)
    .terraform/             the providers and backend settings (TF_DATA_DIR)
    outputs.json            the outputs of the last apply
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.tools import USAGE, DeployError, Runner

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "terraform"
STATE_ROOT = ROOT / ".deploy"


@dataclass(frozen=True)
class Stack:
    project: str
    home: Path  # .deploy/<project>

    @classmethod
    def of(cls, project: str | None, state_root: Path = STATE_ROOT) -> Stack:
        """The deployment of `project`; without one, the only deployment there is."""
        if project:
            return cls(project, state_root / project)
        found = sorted(f.parent.name for f in state_root.glob("*/terraform.tfvars.json"))
        if len(found) != 1:
            raise DeployError("say which project: PROJECT=<project id>" + (
                f" (deployed here: {', '.join(found)})" if found else " (nothing deployed from here yet)"), USAGE)
        return cls(found[0], state_root / found[0])

    @property
    def tfvars(self) -> Path:
        return self.home / "terraform.tfvars.json"

    @property
    def outputs_file(self) -> Path:
        return self.home / "outputs.json"

    def runner(self) -> Runner:
        return Runner(env={"TF_DATA_DIR": str(self.home / ".terraform"), "TF_IN_AUTOMATION": "1"})

    def settings(self) -> dict[str, Any]:
        return json.loads(self.tfvars.read_text()) if self.tfvars.exists() else {}

    def write_settings(self, updates: dict[str, Any]) -> Path:
        """Merges `updates` into the kept settings and writes them (sorted, so a re-deploy diffs cleanly)."""
        settings = {**self.settings(), **updates}
        self.home.mkdir(parents=True, exist_ok=True)
        self.tfvars.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
        return self.tfvars

    def _tf(self, *args: str) -> list[str]:
        return ["terraform", f"-chdir={MODULE}", *args]

    def init(self, runner: Runner) -> None:
        runner.run(self._tf("init", "-input=false", "-reconfigure",
                            f"-backend-config=path={self.home / 'terraform.tfstate'}"), what="terraform init")

    def apply(self, runner: Runner, *extra: str) -> None:
        runner.run(self._tf("apply", "-input=false", "-auto-approve", f"-var-file={self.tfvars}", *extra),
                   what="terraform apply")

    def destroy(self, runner: Runner) -> None:
        runner.run(self._tf("destroy", "-input=false", "-auto-approve", f"-var-file={self.tfvars}"),
                   what="terraform destroy")

    def outputs(self, runner: Runner) -> dict[str, Any]:
        """`terraform output -json` as {name: value}, also kept in outputs.json."""
        proc = runner.capture(self._tf("output", "-json"))
        if proc.returncode != 0:
            raise DeployError(f"terraform output failed: {proc.stderr.strip()[-500:]}")
        try:
            values = {k: v["value"] for k, v in json.loads(proc.stdout or "{}").items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise DeployError(f"terraform output printed something else than its JSON: {exc}") from None
        if not values:
            raise DeployError(f"no outputs: is {self.project} deployed? (make deploy PROJECT={self.project})", USAGE)
        self.outputs_file.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
        return values


_SETTING = re.compile(r'\s*([A-Za-z_]\w*)=("(?:[^"\\]|\\.)*"|\[[^\]]*\]|\{[^}]*\}|\S+)\s*')


def parse_vars(text: str) -> dict[str, Any]:
    """Settings written `KEY=VALUE KEY=VALUE`: a VALUE is a bare word, a "quoted string" (spaces allowed), or a
    [list] or {object} in JSON; it is read as JSON when it is JSON (numbers, booleans), else as text."""
    found: dict[str, Any] = {}
    pos = 0
    while pos < len(text.strip()):
        match = _SETTING.match(text, pos)
        if not match:
            raise DeployError(f"settings are KEY=VALUE separated by spaces; cannot read {text[pos:]!r}", USAGE)
        key, raw = match.groups()
        try:
            found[key] = json.loads(raw)
        except ValueError:
            found[key] = raw
        pos = match.end()
    return found
