"""The three deployment commands, each a fixed order of steps (the tests hold them to it):

deploy:  tools -> terraform version -> login and project -> bootstrap APIs -> bundle -> settings
         -> terraform init -> apply -> outputs
smoke:   tools -> login -> outputs -> drop the sample -> wait for its report -> row accounting
destroy: tools -> terraform version -> login -> [bundle, if gone] -> terraform init
         -> [apply force_destroy=true] -> destroy
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from deploy import package, smoke
from deploy.stack import STATE_ROOT, Stack
from deploy.tools import FAILED, DeployError, check_login, check_terraform, require

# Terraform enables every other API itself, but needs these two to do so (and to read the project number).
BOOTSTRAP_APIS = ("serviceusage.googleapis.com", "cloudresourcemanager.googleapis.com")
DIST = Path(__file__).resolve().parent.parent / "dist"
DEFAULT_REGION = "us-central1"


def up(project: str, region: str, settings: dict[str, Any], *, state_root: Path = STATE_ROOT,
       dist: Path = DIST) -> dict[str, Any]:
    if not project:
        raise DeployError("PROJECT is required: make deploy PROJECT=<project id> REGION=<region>", 2)
    require("gcloud", "terraform")
    stack = Stack.of(project, state_root)
    # A region once deployed to stays unless named again: a new one would move every resource.
    region = region or stack.settings().get("region") or DEFAULT_REGION
    runner = stack.runner()
    check_terraform(runner)
    account = check_login(runner, project)
    print(f"deploying to {project} ({region}) as {account}", file=sys.stderr, flush=True)
    runner.run(["gcloud", "services", "enable", *BOOTSTRAP_APIS, f"--project={project}", "--quiet"],
               what="enabling the APIs Terraform needs")
    bundle = package.build(dist / "function-source.zip")
    stack.write_settings({**settings, "project_id": project, "region": region, "source_zip": str(bundle)})
    stack.init(runner)
    stack.apply(runner)
    outputs = stack.outputs(runner)
    print(render(outputs))
    return outputs


def render(outputs: dict[str, Any]) -> str:
    return "\n".join([
        f"input bucket:   gs://{outputs['input_bucket']}/{outputs['input_prefix']}",
        f"output bucket:  gs://{outputs['output_bucket']}/",
        f"drop a file:    {outputs['drop_command']}",
        f"dashboard:      {outputs['dashboard_url']}",
        f"logs:           {outputs.get('logs_url', '')}",
        f"one run's logs: {outputs['run_logs_query']}",
    ])


def check(project: str | None, *, timeout: float, interval: float, state_root: Path = STATE_ROOT) -> int:
    require("gcloud", "terraform")
    stack = Stack.of(project, state_root)
    runner = stack.runner()
    check_login(runner)
    if not (stack.home / ".terraform").exists():  # state copied from elsewhere: terraform needs its backend
        stack.init(runner)
    result = smoke.run(runner, stack.outputs(runner), timeout=timeout, interval=interval)
    print(result.summary)
    return FAILED if result.problems else 0


def down(project: str | None, *, force: bool, state_root: Path = STATE_ROOT) -> None:
    require("gcloud", "terraform")
    stack = Stack.of(project, state_root)
    if not stack.tfvars.exists():
        raise DeployError(f"nothing deployed to {stack.project} from here ({stack.tfvars} is missing)", 2)
    runner = stack.runner()
    check_terraform(runner)
    check_login(runner)
    settings = stack.settings()
    if settings.get("source_zip") and not Path(settings["source_zip"]).exists():
        package.build(Path(settings["source_zip"]))  # the configuration reads it, even to destroy
    stack.init(runner)
    if force:
        # force_destroy lives in the state: it must be applied before destroy can empty the buckets.
        stack.apply(runner, "-var=force_destroy=true")
    try:
        stack.destroy(runner)
    except DeployError as exc:
        raise DeployError(f"{exc}. If the buckets still hold objects, copy out what you need and run "
                          f"make destroy PROJECT={stack.project} FORCE=1 (it deletes results too)", exc.code) from None
