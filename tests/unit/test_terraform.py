"""terraform/ checked offline: formatting, the provider's own schema, the wiring against the code, least
privilege, variables that repeat the configuration's limits, monitoring on events the code logs, and checkov.

No google provider can be downloaded here, so `terraform init/validate/plan` cannot run; these checks stand in.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from shared import layout
from tests.unit import terraform_checkov, terraform_schema
from tests.unit.terraform_module import (
    TERRAFORM_DIR,
    block,
    config_default,
    config_variables,
    entry_points,
    expression,
    load,
    log_calls,
    logged_events,
    terraform_binary,
    walk_strings,
)

MODULE = load()

# Every role this module may grant, and the only one it may grant on the project.
ROLE_ALLOWLIST = {
    "roles/storage.objectViewer",
    "roles/storage.objectUser",
    "roles/pubsub.publisher",
    "roles/pubsub.subscriber",
    "roles/run.invoker",
    "roles/iam.serviceAccountTokenCreator",
    "roles/aiplatform.user",
}
PROJECT_ROLES = {"roles/aiplatform.user"}  # Vertex AI batch jobs have no resource-level IAM
LOCAL_ONLY_CONFIG = {"VERTEX_BASE_URL"}


@pytest.fixture(scope="module")
def schema():
    return terraform_schema.load()


def test_terraform_files_are_formatted():
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull}
    proc = subprocess.run([terraform_binary(), "fmt", "-check", "-recursive", "-diff", str(TERRAFORM_DIR)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"terraform fmt would change:\n{proc.stdout}{proc.stderr}"


def test_the_module_has_its_files_one_concern_each():
    assert {"versions.tf", "variables.tf", "outputs.tf", "main.tf", "apis.tf", "storage.tf", "pubsub.tf",
            "functions.tf", "scheduler.tf", "iam.tf", "monitoring.tf"} <= set(MODULE.files)


def test_provider_versions_are_bounded_ranges():
    versions = block(MODULE.files["versions.tf"], "terraform")
    assert re.fullmatch(r">= [\d.]+, < [\d.]+", versions["required_version"])
    providers = versions["required_providers"][0]
    assert {k for k in providers if not k.startswith("__")} == {"google", "google-beta"}
    for name in ("google", "google-beta"):
        assert re.fullmatch(r">= \d+\.\d+, < \d+\.\d+", providers[name]["version"]), providers[name]


# --- The provider's schema ------------------------------------------------------------------------------------

def test_every_resource_argument_and_block_is_in_the_provider_schema(schema):
    problems = []
    for kind in ("resource", "data"):
        for (rtype, name), body in MODULE.resources(kind).items():
            block_id = terraform_schema.type_block(schema, kind, rtype)
            if block_id is None:
                problems.append(f"{kind} {rtype}: no such type in the google provider")
                continue
            problems += terraform_schema.check_body(schema, body, block_id, f"{rtype}.{name}", top=True)
    assert not problems, "\n".join(problems)


def test_beta_only_resources_use_the_beta_provider(schema):
    for (rtype, name), body in MODULE.resources().items():
        if rtype in terraform_schema.BETA_ONLY:
            assert rtype not in schema["resource"], f"{rtype} is in the google provider now: drop google-beta"
            assert expression(body.get("provider")) == "google-beta", f"{rtype}.{name} needs provider = google-beta"


def test_every_reference_names_a_declared_resource_and_an_attribute_it_has(schema):
    declared = {("resource", t, n) for t, n in MODULE.resources()} | {("data", t, n)
                                                                      for t, n in MODULE.resources("data")}
    problems = set()
    for doc in MODULE.files.values():
        for text in walk_strings({k: v for k, v in doc.items() if k != "variable"}):
            for kind, rtype, name, path in terraform_schema.references(text):
                if (kind, rtype, name) not in declared:
                    problems.add(f"{kind} {rtype}.{name} is referenced but not declared")
                    continue
                problem = terraform_schema.check_reference(schema, kind, rtype, path)
                if problem:
                    problems.add(f"{rtype}.{name}.{'.'.join(path)}: {problem}")
    assert not problems, "\n".join(sorted(problems))


# --- Wiring against the code ----------------------------------------------------------------------------------

def _consumers() -> dict[str, dict[str, str]]:
    return MODULE.locals["consumers"]


def test_every_consumer_is_an_entry_point_of_functions_main():
    consumers = _consumers()
    assert {c["entry_point"] for c in consumers.values()} == {"submit", "poll", "collect", "reconcile"}
    assert {c["entry_point"] for c in consumers.values()} <= entry_points()
    assert {k: c["topic"] for k, c in consumers.items()} == {
        "submit": "uploads", "poll": "poll_ticks", "collect": "job_finished", "reconcile": "poll_ticks"}


def test_each_function_builds_its_own_entry_point_from_the_one_bundle():
    fn = MODULE.of_type("google_cloudfunctions2_function")["fn"]
    assert expression(fn["for_each"]) == "local.consumers"
    build = block(fn, "build_config")
    assert build["runtime"] == "python312"
    assert expression(build["entry_point"]) == "each.value.entry_point"
    source = block(block(build, "source"), "storage_source")
    assert expression(source["object"]) == "google_storage_bucket_object.source.name"
    obj = MODULE.of_type("google_storage_bucket_object")["source"]
    assert "filesha256(var.source_zip)" in obj["name"], "the bundle object is named by its hash"


def test_each_push_subscription_points_at_its_own_function_with_retries_dead_letters_and_oidc():
    sub = MODULE.of_type("google_pubsub_subscription")["push"]
    assert expression(sub["for_each"]) == "local.consumers"
    assert expression(sub["topic"]) == "google_pubsub_topic.main[each.value.topic].id"
    push = block(sub, "push_config")
    assert expression(push["push_endpoint"]) == "google_cloudfunctions2_function.fn[each.key].service_config[0].uri"
    assert expression(block(push, "oidc_token")["service_account_email"]) == \
        "google_service_account.invoker[each.key].email"
    retry = block(sub, "retry_policy")
    assert retry["minimum_backoff"] and retry["maximum_backoff"]
    dead = block(sub, "dead_letter_policy")
    assert expression(dead["dead_letter_topic"]) == "google_pubsub_topic.dead_letter[each.key].id"
    assert block(sub, "expiration_policy")["ttl"] == "", "a subscription idle for 31 days must not expire"
    # Pub/Sub waits for the answer up to the ack deadline: it must outlast the function's timeout.
    assert expression(sub["ack_deadline_seconds"]) == "min(600, var.function_timeout_seconds + 60)"


def test_each_dead_letter_topic_keeps_its_messages_in_a_pull_subscription():
    dead = MODULE.of_type("google_pubsub_subscription")["dead_letter"]
    assert expression(dead["for_each"]) == "local.consumers"
    assert expression(dead["topic"]) == "google_pubsub_topic.dead_letter[each.key].id"
    assert "push_config" not in dead
    assert block(dead, "expiration_policy")["ttl"] == ""


def test_topic_names_are_the_configuration_defaults():
    topics = MODULE.locals["topics"]
    assert topics["job_finished"] == config_default("job_finished_topic")
    assert topics["run_finished"] == config_default("run_finished_topic")
    assert topics["uploads"] == "uploads" and topics["poll_ticks"] == "poll-ticks"


def test_the_bucket_notification_sends_finalized_inputs_only_to_uploads():
    note = MODULE.of_type("google_storage_notification")["uploads"]
    assert note["event_types"] == ["OBJECT_FINALIZE"]
    assert expression(note["object_name_prefix"]) == "var.input_prefix"
    assert note["payload_format"] == "JSON_API_V1"
    assert expression(note["topic"]) == 'google_pubsub_topic.main["uploads"].id'
    assert note["depends_on"] == ["${google_pubsub_topic_iam_member.storage_publishes_uploads}"]


def _environment() -> set[str]:
    """Every key the functions' environment may have: the settings, and those merged in when set."""
    merged = re.findall(r"\b([A-Z][A-Z0-9_]+)\s*=", expression(MODULE.locals["environment"]))
    return set(MODULE.locals["settings"]) | set(merged)


def test_function_environment_is_exactly_the_configuration_variables():
    env = _environment()
    read = config_variables()
    assert set(env) <= set(read), f"not read by shared/config.py: {sorted(set(env) - set(read))}"
    assert set(env) == set(read) - LOCAL_ONLY_CONFIG, f"not set: {sorted(set(read) - LOCAL_ONLY_CONFIG - set(env))}"
    fn = MODULE.of_type("google_cloudfunctions2_function")["fn"]
    assert expression(block(fn, "service_config")["environment_variables"]) == "local.environment"
    assert expression(MODULE.locals["settings"]["DEAD_LETTER_SUBSCRIPTIONS"]).startswith("join(\",\"")


def test_function_timeout_is_the_timeout_the_pipeline_derives_its_leases_from():
    service = block(MODULE.of_type("google_cloudfunctions2_function")["fn"], "service_config")
    assert expression(service["timeout_seconds"]) == "var.function_timeout_seconds"
    assert expression(MODULE.locals["settings"]["FUNCTION_TIMEOUT_SECONDS"]) == \
        "tostring(var.function_timeout_seconds)"
    condition = block(MODULE.labelled("variable")["function_timeout_seconds"], "validation")["condition"]
    assert "var.function_timeout_seconds <= 540" in condition


def test_functions_are_internal_scale_to_zero_and_sized():
    service = block(MODULE.of_type("google_cloudfunctions2_function")["fn"], "service_config")
    assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert service["min_instance_count"] == 0
    assert service["max_instance_request_concurrency"] == 1
    sizes = MODULE.locals["function_sizes"]
    assert set(sizes) == set(_consumers())
    for name, size in sizes.items():
        assert re.fullmatch(r"\d+(Mi|Gi)", size["memory"]) and size["cpu"] in ("1", "2", "4"), name
        assert size["max_instances"] >= 1


def test_the_scheduler_ticks_poll_ticks_without_an_attempt_deadline():
    job = MODULE.of_type("google_cloud_scheduler_job")["poll_tick"]
    assert expression(job["schedule"]) == "var.poll_schedule"
    assert "attempt_deadline" not in job
    assert expression(block(job, "pubsub_target")["topic_name"]) == 'google_pubsub_topic.main["poll_ticks"].id'


def test_apis_stay_enabled_on_destroy():
    for name, body in MODULE.of_type("google_project_service").items():
        assert body["disable_on_destroy"] is False, name


# --- Least privilege ------------------------------------------------------------------------------------------

def test_every_role_is_on_the_allowlist():
    roles = set(re.findall(r'"(roles/[\w.]+)"', MODULE.all_text()))
    assert roles, "no role found"
    assert roles <= ROLE_ALLOWLIST, f"not allowlisted: {sorted(roles - ROLE_ALLOWLIST)}"


def test_roles_are_granted_per_resource_never_authoritatively_and_on_the_project_only_for_vertex():
    for (rtype, name), body in MODULE.resources().items():
        assert not rtype.endswith(("_iam_binding", "_iam_policy")), f"{rtype}.{name}: grant members, not policies"
        if rtype in ("google_project_iam_member", "google_project_iam_custom_role"):
            assert rtype == "google_project_iam_member" and body["role"] in PROJECT_ROLES, f"{rtype}.{name}"
        if rtype.endswith("_iam_member") and rtype != "google_project_iam_member":
            assert not expression(body["role"]).startswith("roles/") or body["role"] in ROLE_ALLOWLIST


def test_storage_roles_are_granted_on_buckets_only():
    for (rtype, name), body in MODULE.resources().items():
        if rtype.endswith("_iam_member") and rtype != "google_storage_bucket_iam_member":
            assert "storage" not in str(body.get("role")), f"{rtype}.{name} grants a storage role off a bucket"
    assert "roles/storage." not in str(MODULE.of_type("google_project_iam_member"))
    bucket_grants = str(MODULE.locals["bucket_grants"])
    assert set(re.findall(r"roles/[\w.]+", bucket_grants)) <= {"roles/storage.objectViewer", "roles/storage.objectUser"}
    assert "google_storage_bucket.input.name" in bucket_grants and "google_storage_bucket.output.name" in bucket_grants


def test_only_the_reconciliation_may_republish_uploads():
    grants = expression(MODULE.locals["publish_grants"])
    assert '"reconcile-uploads" = {topic = "uploads", member = local.function_sa["reconcile"]}' in grants
    assert grants.count("uploads") == 2, "uploads is granted to the reconciliation only"


def test_the_vertex_agent_writes_only_under_vertex():
    grant = MODULE.of_type("google_storage_bucket_iam_member")["vertex_writes_output"]
    assert grant["role"] == "roles/storage.objectUser"
    condition = block(grant, "condition")["expression"]
    assert "objects/vertex/" in condition and layout.vertex_output_prefix("r", "p").startswith("vertex/")


def test_the_pubsub_agent_is_granted_per_dead_letter_topic_subscription_and_invoker():
    iam = MODULE.resources()
    for rtype, name, target in (
        ("google_pubsub_topic_iam_member", "pubsub_agent_dead_letter", "google_pubsub_topic.dead_letter"),
        ("google_pubsub_subscription_iam_member", "pubsub_agent_source", "google_pubsub_subscription.push"),
        ("google_service_account_iam_member", "pubsub_agent_mints_tokens", "google_service_account.invoker"),
    ):
        body = iam[(rtype, name)]
        assert expression(body["member"]) == "local.pubsub_agent"
        assert expression(body["for_each"]) == "local.consumers"
        resource_arg = next(v for k, v in body.items() if k in ("topic", "subscription", "service_account_id"))
        assert expression(resource_arg).startswith(target + "[each.key]."), (name, resource_arg)


def test_each_invoker_may_invoke_its_own_function_only():
    grant = MODULE.of_type("google_cloud_run_v2_service_iam_member")["invoker"]
    assert grant["role"] == "roles/run.invoker"
    assert expression(grant["name"]) == "google_cloudfunctions2_function.fn[each.key].name"
    assert grant["member"] == "serviceAccount:${google_service_account.invoker[each.key].email}"


def test_one_service_account_per_function_and_per_invoker():
    accounts = MODULE.of_type("google_service_account")
    assert set(accounts) == {"function", "invoker"}
    for body in accounts.values():
        assert expression(body["for_each"]) == "local.consumers"
    service = block(MODULE.of_type("google_cloudfunctions2_function")["fn"], "service_config")
    assert expression(service["service_account_email"]) == "google_service_account.function[each.key].email"


# --- Buckets --------------------------------------------------------------------------------------------------

def test_buckets_have_uniform_access_and_public_access_prevention():
    buckets = MODULE.of_type("google_storage_bucket")
    assert set(buckets) == {"input", "output", "source"}
    for name, body in buckets.items():
        assert body["uniform_bucket_level_access"] is True, name
        assert body["public_access_prevention"] == "enforced", name


def test_scratch_expiry_covers_every_scratch_prefix_and_nothing_else():
    rules = [r for r in MODULE.of_type("google_storage_bucket")["output"]["lifecycle_rule"]]
    prefixes = [p for r in rules for p in block(r, "condition").get("matches_prefix", [])]
    scratch = [layout.staged_name("r1", "p0001-a1"), layout.validation_errors_name("r1"),
               layout.part_results_name("r1", "p0001-a1"), layout.part_errors_name("r1", "p0001-a1"),
               layout.compose_scratch_prefix("r1", "results") + "0", layout.vertex_output_prefix("r1", "p0001-a1")]
    for name in scratch:
        assert name.startswith(tuple(prefixes)), f"{name} is never expired"
    kept = [layout.results_name("a"), layout.errors_name("a"), layout.report_name("a"), layout.run_state_name("r1"),
            layout.SCHEDULER_NAME]
    for name in kept:
        assert not name.startswith(tuple(prefixes)), f"{name} would be expired"
    age = next(block(r, "condition")["age"] for r in rules if "matches_prefix" in block(r, "condition"))
    assert expression(age) == "var.scratch_retention_days"


def test_scratch_retention_must_outlast_the_longest_run():
    variable = MODULE.labelled("variable")["scratch_retention_days"]
    assert "var.scratch_retention_days > var.max_attempts * 4" in block(variable, "validation")["condition"]
    assert variable["default"] > 4 * MODULE.labelled("variable")["max_attempts"]["default"]


# --- Variables and outputs ------------------------------------------------------------------------------------

def test_every_variable_is_typed_described_and_nullable_only_where_null_means_something():
    for name, body in MODULE.labelled("variable").items():
        assert body.get("type"), f"{name} has no type"
        assert body.get("description"), f"{name} has no description"
        if "default" in body and body["default"] is None:
            assert "nullable" not in body, f"{name}: null is its default, so it must stay nullable"
        else:
            assert body.get("nullable") is False, f"{name}: null means nothing here, say nullable = false"


def test_every_variable_but_a_switch_is_validated():
    for name, body in MODULE.labelled("variable").items():
        if body["type"] != "bool":
            assert "validation" in body, f"{name} has no validation"


def _bounds(condition: str, variable: str) -> tuple[int, int]:
    low = re.search(rf"var\.{variable} >= (\d+)", condition)
    high = re.search(rf"var\.{variable} <= (\d+)", condition)
    assert low and high, f"{variable}: no range in {condition}"
    return int(low.group(1)), int(high.group(1))


def test_variable_limits_and_defaults_repeat_the_configuration():
    variables = MODULE.labelled("variable")
    env = {**MODULE.locals["settings"], "STUCK_CREATE_SECONDS": "${tostring(var.stuck_create_seconds)}"}
    checked = 0
    for name, var in config_variables().items():
        refs = re.findall(r"var\.(\w+)", str(env.get(name, "")))
        if var.reader not in ("integer", "optional_integer") or not refs:
            continue
        low, high = var.args[-2:]
        body = variables[refs[0]]
        tf_low, tf_high = _bounds(block(body, "validation")["condition"], refs[0])
        if name == "FUNCTION_TIMEOUT_SECONDS":  # narrower in the cloud: push delivery allows 540 s at most
            assert low <= tf_low and tf_high <= high and tf_high == 540
        else:
            assert (tf_low, tf_high) == (low, high), f"{refs[0]}: {tf_low}..{tf_high}, {name}: {low}..{high}"
        default = var.args[0] if var.reader == "integer" else None
        assert body.get("default") == default, f"{refs[0]} default {body.get('default')} != {name}'s {default}"
        checked += 1
    assert checked >= 11
    label = block(variables["pipeline_label"], "validation")["condition"]
    assert "^[a-z0-9_-]{1,63}$" in label


def test_every_output_is_described():
    outputs = MODULE.labelled("output")
    assert {"input_bucket", "output_bucket", "drop_command", "run_logs_query", "dashboard_url"} <= set(outputs)
    for name, body in outputs.items():
        assert body.get("description"), name
    assert "gcloud storage cp" in outputs["drop_command"]["value"]
    assert 'labels.run=\\"RUN_ID\\"' in outputs["run_logs_query"]["value"] or \
        'labels.run="RUN_ID"' in outputs["run_logs_query"]["value"]


# --- Monitoring -----------------------------------------------------------------------------------------------

def _monitored_events() -> dict[str, set[str]]:
    """event -> top-level jsonPayload fields the metrics read from it."""
    found: dict[str, set[str]] = {}
    for table in ("counter_metrics", "distribution_metrics"):
        for metric in MODULE.locals[table].values():
            fields = set(metric.get("labels") or [])
            if metric.get("field"):
                fields.add(metric["field"].split(".")[0])
            found.setdefault(metric["event"], set()).update(fields)
    for text in re.findall(r'jsonPayload\.event=\\"([a-z_.]+)\\"', MODULE.text["monitoring.tf"]):
        found.setdefault(text, set())
    return found


def test_every_monitored_event_is_one_the_code_logs():
    events = _monitored_events()
    assert {"run.finished", "job.finished", "job.slow", "run.repaired", "run.stuck"} <= set(events)
    missing = sorted(set(events) - logged_events())
    assert not missing, f"monitoring.tf keys on events nothing logs: {missing}"


def test_every_monitored_field_is_logged_with_its_event():
    calls = log_calls()
    problems = []
    for event, fields in _monitored_events().items():
        if event in calls and fields - calls[event]:
            problems.append(f"{event} is never logged with {sorted(fields - calls[event])}")
    assert not problems, "\n".join(problems)


def test_alerts_cover_failed_jobs_stuck_runs_dead_letters_errors_and_slow_jobs():
    alerts = MODULE.of_type("google_monitoring_alert_policy")
    assert set(alerts) == {"job_failed", "run_stuck", "dead_letters", "function_errors", "job_slow"}
    for name, body in alerts.items():
        assert expression(body["notification_channels"]) == "var.notification_channels", name
        assert block(body, "documentation")["content"].strip(), name
    dead = [block(c, "condition_threshold")["filter"] for c in alerts["dead_letters"]["conditions"]]
    assert any("subscription/num_undelivered_messages" in f and "-dead-letter" in f for f in dead)
    assert any('metric_type[\"dead_letters\"]' in f or 'metric_type["dead_letters"]' in f for f in dead)
    errors = block(block(alerts["function_errors"], "conditions"), "condition_threshold")
    assert "response_code_class" in errors["filter"] and errors["denominator_filter"]
    assert expression(errors["threshold_value"]) == "var.function_error_rate_threshold"


def test_the_dashboard_is_built_from_json():
    dashboard = MODULE.of_type("google_monitoring_dashboard")["pipeline"]
    assert expression(dashboard["dashboard_json"]).startswith("jsonencode(")
    tiles = " ".join(str(t) for t in MODULE.locals["dashboard_tiles"])
    for word in ("Runs", "Rows", "jobs", "Tokens", "latency", "Repairs"):
        assert word in tiles, word


# --- checkov --------------------------------------------------------------------------------------------------

def test_every_checkov_skip_is_inside_its_resource_with_a_reason():
    for name, text in MODULE.text.items():
        for line in text.splitlines():
            if "checkov:skip" in line:
                assert re.fullmatch(r"\s+#checkov:skip=CKV2?_[A-Z]+_\d+:\S.{10,}", line), f"{name}: {line.strip()}"


def test_checkov_finds_no_failed_check():
    report = terraform_checkov.run(TERRAFORM_DIR)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["resource_count"] >= 40, summary
    assert summary["failed"] == 0, [
        (c["check_id"], c["resource"], c["check_name"]) for c in report["results"].get("failed_checks", [])]
