"""make deploy / smoke / destroy, driven against stand-in `gcloud` and `terraform` executables on PATH that
record every call: the right commands, in the right order, and clear failures when a tool, a login or a
project is missing. Google Cloud is never reached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deploy import smoke
from deploy.stack import parse_vars
from deploy.tools import DeployError

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "terraform"

# One script stands in for both tools (it looks at its own name). It appends {"tool", "args", "tf_data_dir"}
# to $FAKE_LOG, keeps "buckets" as folders under $FAKE_GCS, and plays the pipeline: the report of a dropped
# file appears on the $FAKE_REPORT_AFTER-th look, with results and errors as the real run would write them.
STANDIN = r'''
import json, os, pathlib, shutil, sys
sys.path.insert(0, os.environ["FAKE_ROOT"])
from shared import layout

tool = pathlib.Path(sys.argv[0]).name
args = sys.argv[1:]
env = os.environ
with open(env["FAKE_LOG"], "a") as log:
    log.write(json.dumps({"tool": tool, "args": args, "tf_data_dir": env.get("TF_DATA_DIR")}) + "\n")
fail = env.get("FAKE_FAIL", "")
if fail and " ".join([tool] + args).startswith(fail):
    print(f"{tool}: failing on purpose", file=sys.stderr)
    sys.exit(1)
gcs = pathlib.Path(env.get("FAKE_GCS", "/nonexistent"))
outputs = json.loads(pathlib.Path(env["FAKE_OUTPUTS"]).read_text()) if env.get("FAKE_OUTPUTS") else {}

def obj(uri):
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return gcs / bucket / name

def play_pipeline(report_path):
    looks = gcs / ".looks"
    n = int(looks.read_text()) + 1 if looks.exists() else 1
    looks.write_text(str(n))
    if n < int(env.get("FAKE_REPORT_AFTER", "1")):
        return
    prefix = outputs["input_prefix"]
    rel = str(report_path.relative_to(gcs / outputs["output_bucket"] / "reports"))[: -len(".json")]
    source = gcs / outputs["input_bucket"] / (prefix + rel + ".jsonl")
    results, errors = [], []
    for row, line in enumerate(source.read_bytes().split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            json.loads(line)
            results.append({"row": row, "text": "ok"})
        except ValueError:
            errors.append({"row": row, "stage": "validation", "status": "INVALID_ARGUMENT"})
    if env.get("FAKE_DROP_ROW"):
        results.pop()
    out = gcs / outputs["output_bucket"]
    for name, rows in ((layout.results_name(rel), results), (layout.errors_name(rel), errors)):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    total = len(results) + len(errors) + (1 if env.get("FAKE_DROP_ROW") else 0)
    report = {"run": "r0123", "state": "partial", "seconds": 42.5,
              "rows": {"total": total, "succeeded": total - len(errors), "failed": len(errors),
                       "failedByStage": {"validation": len(errors)}, "failedByReason": {"not_json": len(errors)}},
              "jobs": [{"part": "p0000-a1", "state": "JOB_STATE_SUCCEEDED"}]}
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report))

if tool == "gcloud":
    if args[:2] == ["auth", "list"]:
        print(env.get("FAKE_ACCOUNT", "dev@example.com"))
    elif args[:2] == ["auth", "application-default"]:
        if env.get("FAKE_ADC", "1") != "1":
            print("ERROR: Your default credentials were not found.", file=sys.stderr)
            sys.exit(1)
        print("ya29.secret-token")
    elif args[:2] == ["projects", "describe"]:
        if args[2] == env.get("FAKE_MISSING_PROJECT"):
            print("ERROR: (gcloud.projects.describe) [dev@example.com] does not have permission", file=sys.stderr)
            sys.exit(1)
        print("123456789012")
    elif args[:2] == ["storage", "cp"]:
        target = obj(args[3])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args[2], target)
    elif args[:2] == ["storage", "cat"]:
        path = obj(args[2])
        if "/reports/" in args[2] and not path.exists():
            play_pipeline(path)
        if not path.exists():
            print(f"ERROR: (gcloud.storage.cat) The following URLs matched no objects or files:\n-{args[2]}",
                  file=sys.stderr)
            sys.exit(1)
        sys.stdout.write(path.read_text())
elif tool == "terraform":
    if args[:1] == ["version"]:
        print(json.dumps({"terraform_version": env.get("FAKE_TF_VERSION", "1.11.4")}))
    elif args[1:3] == ["output", "-json"]:
        print(json.dumps({k: {"value": v, "type": "string", "sensitive": False} for k, v in outputs.items()}))
'''

OUTPUTS = {
    "project_id": "demo-proj",
    "input_bucket": "demo-proj-gbp-input",
    "input_prefix": "incoming/",
    "output_bucket": "demo-proj-gbp-output",
    "drop_command": "gcloud storage cp FILE.jsonl gs://demo-proj-gbp-input/incoming/",
    "run_logs_query": 'resource.type="cloud_run_revision" AND labels.run="RUN_ID"',
    "logs_url": "https://console.cloud.google.com/logs/query",
    "dashboard_url": "https://console.cloud.google.com/monitoring/dashboards/builder/abc?project=demo-proj",
}


class Cli:
    """Runs `python -m deploy` with only the stand-ins on PATH; `calls` is what they recorded."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.log = tmp / "calls.jsonl"
        self.state = tmp / "state"
        self.dist = tmp / "dist"
        (tmp / "outputs.json").write_text(json.dumps(OUTPUTS))
        self.env = {"FAKE_LOG": str(self.log), "FAKE_ROOT": str(ROOT), "FAKE_GCS": str(tmp / "gcs"),
                    "FAKE_OUTPUTS": str(tmp / "outputs.json")}
        self.install("gcloud", "terraform")

    def install(self, *tools: str) -> None:
        for tool in tools:
            script = self.bin / tool
            script.write_text(f"#!{sys.executable}\n{STANDIN}")
            script.chmod(0o755)

    def remove(self, tool: str) -> None:
        (self.bin / tool).unlink()

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environ = {"PATH": str(self.bin), "HOME": str(self.tmp), "PYTHONPATH": str(ROOT), **self.env, **env}
        return subprocess.run([sys.executable, "-m", "deploy", "--state-dir", str(self.state), *args], cwd=ROOT,
                              env=environ, capture_output=True, text=True, timeout=60)

    def deploy(self, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self("deploy", "--project", "demo-proj", "--region", "europe-west4", "--dist", str(self.dist),
                    *extra, **env)

    @property
    def calls(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def commands(self) -> list[str]:
        """Each call as "tool word word", options dropped: the shape the order tests compare."""
        return [" ".join([c["tool"]] + [a for a in c["args"] if not a.startswith("-")][:2]) for c in self.calls]


@pytest.fixture
def cli(tmp_path):
    return Cli(tmp_path)


# --- deploy ---------------------------------------------------------------------------------------------------

def test_deploy_checks_login_then_bundles_writes_settings_and_applies_in_order(cli):
    proc = cli.deploy("--vars", 'model=gemini-2.5-pro max_active_jobs=4 poll_schedule="*/5 * * * *"')
    assert proc.returncode == 0, proc.stderr
    assert cli.commands() == [
        "terraform version",
        "gcloud auth list",
        "gcloud auth application-default",
        "gcloud projects describe",
        "gcloud services enable",
        "terraform init",
        "terraform apply",
        "terraform output",
    ]
    calls = cli.calls[1:]
    assert calls[3]["args"][2:4] == ["serviceusage.googleapis.com", "cloudresourcemanager.googleapis.com"]
    assert "--project=demo-proj" in calls[3]["args"]
    home = cli.state / "demo-proj"
    init, apply = calls[4]["args"], calls[5]["args"]
    assert init[0] == f"-chdir={MODULE}" and f"-backend-config=path={home / 'terraform.tfstate'}" in init
    assert "-auto-approve" in apply and f"-var-file={home / 'terraform.tfvars.json'}" in apply
    assert {c["tf_data_dir"] for c in calls if c["tool"] == "terraform"} == {str(home / ".terraform")}
    settings = json.loads((home / "terraform.tfvars.json").read_text())
    assert settings == {"project_id": "demo-proj", "region": "europe-west4", "model": "gemini-2.5-pro",
                        "max_active_jobs": 4, "poll_schedule": "*/5 * * * *",
                        "source_zip": str(cli.dist / "function-source.zip")}
    assert "main.py" in zipfile.ZipFile(settings["source_zip"]).namelist()
    assert "gcloud storage cp FILE.jsonl gs://demo-proj-gbp-input/incoming/" in proc.stdout
    assert "dashboards/builder/abc" in proc.stdout
    assert json.loads((home / "outputs.json").read_text())["output_bucket"] == "demo-proj-gbp-output"
    assert "ya29" not in proc.stdout + proc.stderr, "the access token must never be shown"


def test_a_later_deploy_keeps_the_settings_and_the_region_given_before(cli):
    assert cli.deploy("--vars", "model=gemini-2.5-pro").returncode == 0
    assert cli("deploy", "--project", "demo-proj", "--dist", str(cli.dist)).returncode == 0
    settings = json.loads((cli.state / "demo-proj" / "terraform.tfvars.json").read_text())
    assert settings["model"] == "gemini-2.5-pro"
    assert settings["region"] == "europe-west4"


def test_a_first_deploy_without_a_region_goes_to_us_central1(cli):
    assert cli("deploy", "--project", "demo-proj", "--dist", str(cli.dist)).returncode == 0
    assert json.loads((cli.state / "demo-proj" / "terraform.tfvars.json").read_text())["region"] == "us-central1"


def test_the_bundle_is_the_same_bytes_for_the_same_sources(cli):
    assert cli.deploy().returncode == 0
    first = (cli.dist / "function-source.zip").read_bytes()
    assert cli.deploy().returncode == 0
    assert (cli.dist / "function-source.zip").read_bytes() == first


@pytest.mark.parametrize("missing", [["gcloud"], ["terraform"], ["gcloud", "terraform"]])
def test_deploy_names_every_missing_tool_and_calls_nothing(cli, missing):
    for tool in missing:
        cli.remove(tool)
    proc = cli.deploy()
    assert proc.returncode == 2
    for tool in missing:
        assert f"{tool} (install" in proc.stderr
    assert cli.calls == []


def test_deploy_without_a_gcloud_login_says_how_to_log_in(cli):
    proc = cli.deploy(FAKE_ACCOUNT="")
    assert proc.returncode == 2
    assert "gcloud auth login" in proc.stderr
    assert cli.commands() == ["terraform version", "gcloud auth list"]


def test_deploy_with_a_terraform_too_old_for_the_module_says_so(cli):
    proc = cli.deploy(FAKE_TF_VERSION="1.0.3")
    assert proc.returncode == 2
    assert "terraform 1.0.3" in proc.stderr and "too old" in proc.stderr
    assert cli.commands() == ["terraform version"]


def test_deploy_without_application_default_credentials_says_how_to_get_them(cli):
    proc = cli.deploy(FAKE_ADC="0")
    assert proc.returncode == 2
    assert "gcloud auth application-default login" in proc.stderr
    assert cli.commands()[-1] == "gcloud auth application-default"


def test_deploy_to_a_project_out_of_reach_stops_before_changing_anything(cli):
    proc = cli.deploy(FAKE_MISSING_PROJECT="demo-proj")
    assert proc.returncode == 2
    assert "demo-proj" in proc.stderr and "access" in proc.stderr
    assert cli.commands()[-1] == "gcloud projects describe"


def test_deploy_needs_a_project(cli):
    proc = cli("deploy", "--dist", str(cli.dist))
    assert proc.returncode == 2
    assert "PROJECT is required" in proc.stderr
    assert cli.calls == []


def test_a_failed_apply_fails_the_deploy_and_prints_no_outputs(cli):
    proc = cli.deploy(FAKE_FAIL="terraform -chdir")
    assert proc.returncode == 1
    assert "terraform init failed" in proc.stderr
    proc = cli.deploy(FAKE_FAIL=f"terraform -chdir={MODULE} apply")
    assert proc.returncode == 1
    assert "terraform apply failed" in proc.stderr
    assert cli.commands()[-1] == "terraform apply"


# --- smoke ----------------------------------------------------------------------------------------------------

def test_smoke_drops_the_sample_waits_for_its_report_and_prints_the_row_accounting(cli):
    assert cli.deploy().returncode == 0
    proc = cli("smoke", "--interval", "0.01", FAKE_REPORT_AFTER="3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cp = next(c for c in cli.calls if c["args"][:2] == ["storage", "cp"])
    assert cp["args"][2] == str(smoke.SAMPLE)
    assert cp["args"][3].startswith("gs://demo-proj-gbp-input/incoming/smoke/") and cp["args"][3].endswith(".jsonl")
    looks = [c for c in cli.calls if c["args"][:2] == ["storage", "cat"] and "/reports/" in c["args"][2]]
    assert len(looks) == 3
    assert "rows 6: 5 succeeded, 1 failed" in proc.stdout
    assert "validation: 1" in proc.stdout
    assert "every input row is in the results or the errors file, once" in proc.stdout


def test_smoke_fails_when_a_row_is_missing_from_the_outputs(cli):
    assert cli.deploy().returncode == 0
    proc = cli("smoke", "--interval", "0.01", FAKE_DROP_ROW="1")
    assert proc.returncode == 1
    assert "PROBLEM:" in proc.stdout and "rows missing from results and errors" in proc.stdout


def test_smoke_without_a_report_in_time_says_to_look_later(cli):
    assert cli.deploy().returncode == 0
    proc = cli("smoke", "--timeout", "0.3", "--interval", "0.05", FAKE_REPORT_AFTER="100000")
    assert proc.returncode == 3
    assert "no report after" in proc.stderr


def test_smoke_without_a_deployment_says_so(cli):
    proc = cli("smoke")
    assert proc.returncode == 2
    assert "nothing deployed from here yet" in proc.stderr


# --- destroy --------------------------------------------------------------------------------------------------

def test_destroy_inits_then_destroys_with_the_kept_settings(cli):
    assert cli.deploy().returncode == 0
    before = len(cli.calls)
    proc = cli("destroy", "--project", "demo-proj")
    assert proc.returncode == 0, proc.stderr
    assert cli.commands()[before:] == ["terraform version", "gcloud auth list", "gcloud auth application-default",
                                       "terraform init", "terraform destroy"]
    destroy = cli.calls[-1]["args"]
    assert "-auto-approve" in destroy
    assert f"-var-file={cli.state / 'demo-proj' / 'terraform.tfvars.json'}" in destroy


def test_destroy_force_lets_terraform_empty_the_buckets_first(cli):
    assert cli.deploy().returncode == 0
    before = len(cli.calls)
    assert cli("destroy", "--force").returncode == 0  # the only deployment: no project needed
    assert cli.commands()[before + 3:] == ["terraform init", "terraform apply", "terraform destroy"]
    assert "-var=force_destroy=true" in cli.calls[-2]["args"]


def test_destroy_rebuilds_a_bundle_that_is_gone_since_the_deploy(cli):
    assert cli.deploy().returncode == 0
    (cli.dist / "function-source.zip").unlink()
    assert cli("destroy").returncode == 0
    assert (cli.dist / "function-source.zip").exists()


def test_a_failed_destroy_says_how_to_remove_what_is_left(cli):
    assert cli.deploy().returncode == 0
    proc = cli("destroy", FAKE_FAIL=f"terraform -chdir={MODULE} destroy")
    assert proc.returncode == 1
    assert "FORCE=1" in proc.stderr


# --- the Makefile ---------------------------------------------------------------------------------------------

def _make_n(*args: str) -> str:
    proc = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MAKEFLAGS": ""}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_targets_run_the_deploy_commands():
    assert '-m deploy deploy --project "p-1" --region "europe-west4"' in _make_n(
        "deploy", "PROJECT=p-1", "REGION=europe-west4")
    assert "--region" not in _make_n("deploy", "PROJECT=p-1")
    assert """--vars 'poll_schedule="*/2 * * * *"'""" in _make_n("deploy", "PROJECT=p-1",
                                                              'VARS=poll_schedule="*/2 * * * *"')
    assert '-m deploy smoke --project "p-1"' in _make_n("smoke", "PROJECT=p-1")
    assert "--force" in _make_n("destroy", "PROJECT=p-1", "FORCE=1")
    assert "--force" not in _make_n("destroy", "PROJECT=p-1")


# --- pieces ---------------------------------------------------------------------------------------------------

def test_settings_are_read_as_json_where_they_are_json():
    assert parse_vars('max_attempts=4 versioning=true model=gemini-2.5-pro poll_schedule="*/2 * * * *" '
                      'notification_channels=["projects/p/notificationChannels/1"]') == {
        "max_attempts": 4, "versioning": True, "model": "gemini-2.5-pro", "poll_schedule": "*/2 * * * *",
        "notification_channels": ["projects/p/notificationChannels/1"]}
    assert parse_vars("") == {}
    with pytest.raises(DeployError):
        parse_vars("model")


def test_the_accounting_names_every_kind_of_broken_promise():
    report = {"rows": {"total": 3, "succeeded": 2, "failed": 1}}

    def lines(*rows):
        return "".join(json.dumps({"row": r}) + "\n" for r in rows)

    assert smoke.account("s", report, lines(1, 3), lines(2), [1, 2, 3]) == []
    problems = " ".join(smoke.account("s", report, lines(1, 1), lines(4), [1, 2, 3]))
    assert "more than once: [1]" in problems and "missing from results and errors: [2, 3]" in problems
    assert "not input rows: [4]" in problems


def test_the_sample_rows_are_its_non_blank_lines():
    rows = smoke.expected_rows(smoke.SAMPLE)
    lines = smoke.SAMPLE.read_text().split("\n")
    assert rows == [n for n, line in enumerate(lines, 1) if line.strip()]
    assert len(rows) == 6
