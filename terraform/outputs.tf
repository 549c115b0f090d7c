output "input_bucket" {
  description = "Bucket users drop JSONL files into (under input_prefix)."
  value       = google_storage_bucket.input.name
}

output "input_prefix" {
  description = "Prefix under which a dropped file starts a run."
  value       = var.input_prefix
}

output "output_bucket" {
  description = "Bucket of results/, errors/ and reports/ (and the pipeline's state/, staging/, vertex/)."
  value       = google_storage_bucket.output.name
}

output "drop_command" {
  description = "Drops a file into the pipeline: replace FILE.jsonl (a folder in the object name is kept in the outputs' names)."
  value       = "gcloud storage cp FILE.jsonl gs://${google_storage_bucket.input.name}/${var.input_prefix}"
}

output "run_logs_query" {
  description = "Logs Explorer query of one run: replace RUN_ID with the run id in its report (or in a run.received line)."
  value       = "${local.log_scope} AND labels.run=\"RUN_ID\""
}

output "logs_url" {
  description = "Logs Explorer with the pipeline's own log lines."
  value       = "https://console.cloud.google.com/logs/query;query=${urlencode(local.log_scope)}?project=${var.project_id}"
}

output "dashboard_url" {
  description = "Cloud Monitoring dashboard of runs, rows, jobs, tokens, latency and repairs."
  value       = "https://console.cloud.google.com/monitoring/dashboards/builder/${element(split("/", google_monitoring_dashboard.pipeline.id), 3)}?project=${var.project_id}"
}

output "functions" {
  description = "Function name of each entry point."
  value       = { for k, f in google_cloudfunctions2_function.fn : k => f.name }
}

output "dead_letter_subscriptions" {
  description = "Pull subscriptions that keep what each function could not take (the reconciliation drains them)."
  value       = { for k, s in google_pubsub_subscription.dead_letter : k => s.id }
}

output "project_id" {
  description = "Project the pipeline runs in."
  value       = var.project_id
}
