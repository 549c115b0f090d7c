# Metrics, alerts and the dashboard, all keyed on the stable `event` of the functions' JSON log lines
# (jsonPayload.event; counts and durations are jsonPayload fields, the run/job/input labels entry labels).

locals {
  metric_prefix = replace(var.name_prefix, "-", "_")

  # Counters: one per log line of the event, labelled by the named fields.
  counter_metrics = {
    runs_received  = { event = "run.received", labels = [], description = "Runs started: one per input object generation." }
    runs_finished  = { event = "run.finished", labels = ["state"], description = "Runs that wrote their report, by final state (succeeded, partial, failed)." }
    jobs_submitted = { event = "job.submitted", labels = [], description = "Vertex AI batch jobs created (or found again after an ambiguous create)." }
    jobs_finished  = { event = "job.finished", labels = ["state"], description = "Vertex AI batch jobs that ended, by final state." }
    jobs_rejected  = { event = "job.rejected", labels = [], description = "Parts Vertex AI refused at create: their rows go to errors." }
    jobs_slow      = { event = "job.slow", labels = ["state"], description = "Warnings about a job pending or running longer than its threshold." }
    runs_repaired  = { event = "run.repaired", labels = ["repair"], description = "Repairs made from stored state, by kind of repair." }
    runs_stuck     = { event = "run.stuck", labels = [], description = "Runs the reconciliation cannot drive forward." }
    dead_letters   = { event = "message.dead_lettered", labels = [], description = "Dead-lettered messages the reconciliation drained and logged." }
  }

  # Distributions of a numeric field: sums over time come from the distribution's sum, latencies from its
  # percentiles. Row counts and tokens are taken from run.finished, the run's final accounting.
  distribution_metrics = {
    run_seconds            = { event = "run.finished", field = "seconds", unit = "s", labels = ["state"], description = "Seconds from the upload to the report, per run." }
    job_seconds            = { event = "job.finished", field = "seconds", unit = "s", labels = ["state"], description = "Seconds from create to end, per Vertex AI job." }
    rows_total             = { event = "run.finished", field = "rows.total", unit = "1", labels = [], description = "Input rows per finished run." }
    rows_succeeded         = { event = "run.finished", field = "rows.succeeded", unit = "1", labels = [], description = "Rows with a model response, per finished run." }
    rows_failed            = { event = "run.finished", field = "rows.failed", unit = "1", labels = [], description = "Rows in the errors file, per finished run." }
    rows_failed_validation = { event = "run.finished", field = "rows.failedByStage.validation", unit = "1", labels = [], description = "Rows rejected before billing (bad JSON, bad request, importer rules), per run." }
    rows_failed_prediction = { event = "run.finished", field = "rows.failedByStage.prediction", unit = "1", labels = [], description = "Rows the model answered with an error, per run." }
    rows_failed_job        = { event = "run.finished", field = "rows.failedByStage.job", unit = "1", labels = [], description = "Rows of jobs that failed as a whole, per run." }
    rows_failed_missing    = { event = "run.finished", field = "rows.failedByStage.missing", unit = "1", labels = [], description = "Rows missing from a job's output after their last attempt, per run." }
    tokens_prompt          = { event = "run.finished", field = "tokens.prompt", unit = "1", labels = [], description = "Prompt tokens per finished run." }
    tokens_candidates      = { event = "run.finished", field = "tokens.candidates", unit = "1", labels = [], description = "Response tokens per finished run." }
    rows_failed_by_reason  = { event = "rows.failed_by_reason", field = "rows", unit = "1", labels = ["reason"], description = "Failed rows of a finished run, by reason (validation reason or error status)." }
  }

  metric_type = merge(
    { for k, _ in local.counter_metrics : k => "logging.googleapis.com/user/${google_logging_metric.counter[k].name}" },
    { for k, _ in local.distribution_metrics : k => "logging.googleapis.com/user/${google_logging_metric.distribution[k].name}" },
  )
  # Name of a distribution's sum in PromQL (Cloud Monitoring maps "a.b/c/d" to "a_b:c_d").
  promql_sum = { for k, _ in local.distribution_metrics : k => "logging_googleapis_com:user_${local.metric_prefix}_${k}_sum" }

  services_regex = "${var.name_prefix}-(submit|poll|collect|reconcile)"
}

resource "google_logging_metric" "counter" {
  for_each = local.counter_metrics

  name        = "${local.metric_prefix}_${each.key}"
  description = each.value.description
  filter      = "${local.log_scope} AND jsonPayload.event=\"${each.value.event}\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "gemini-batch-pipeline ${replace(each.key, "_", " ")}"

    dynamic "labels" {
      for_each = toset(each.value.labels)
      content {
        key        = labels.value
        value_type = "STRING"
      }
    }
  }

  label_extractors = { for l in each.value.labels : l => "EXTRACT(jsonPayload.${l})" }

  depends_on = [google_project_service.enabled]
}

resource "google_logging_metric" "distribution" {
  for_each = local.distribution_metrics

  name            = "${local.metric_prefix}_${each.key}"
  description     = each.value.description
  filter          = "${local.log_scope} AND jsonPayload.event=\"${each.value.event}\""
  value_extractor = "EXTRACT(jsonPayload.${each.value.field})"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = each.value.unit
    display_name = "gemini-batch-pipeline ${replace(each.key, "_", " ")}"

    dynamic "labels" {
      for_each = toset(each.value.labels)
      content {
        key        = labels.value
        value_type = "STRING"
      }
    }
  }

  label_extractors = { for l in each.value.labels : l => "EXTRACT(jsonPayload.${l})" }

  # Powers of two from 1: seconds up to decades, rows and tokens up to billions.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 32
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.enabled]
}

# --- Alerts ---------------------------------------------------------------------------------------------------

resource "google_monitoring_alert_policy" "job_failed" {
  display_name          = "gemini-batch-pipeline: a Vertex AI job failed"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "ERROR"
  user_labels           = local.labels

  conditions {
    display_name = "job.finished with state FAILED or EXPIRED"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_type["jobs_finished"]}\" AND resource.type=\"cloud_run_revision\" AND metric.labels.state=monitoring.regex.full_match(\"JOB_STATE_(FAILED|EXPIRED)\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  conditions {
    display_name = "job.rejected: Vertex AI refused a job at create"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_type["jobs_rejected"]}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      A Vertex AI batch job of the pipeline ended FAILED or EXPIRED, or was refused at create. Its partial output
      is still harvested and its retryable rows retried, up to MAX_ATTEMPTS; the run's report says what became of
      every row. Look at the job.finished / job.rejected lines (jsonPayload.errorCode, message) in Logs Explorer;
      code 7 or 9 usually means the Vertex AI service agent cannot read an input or fileData object.
    EOT
  }

  alert_strategy {
    auto_close = "3600s"
  }
}

resource "google_monitoring_alert_policy" "run_stuck" {
  display_name          = "gemini-batch-pipeline: a run is stuck"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "ERROR"
  user_labels           = local.labels

  conditions {
    display_name = "run.stuck logged"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_type["runs_stuck"]}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      The reconciliation found a run it cannot drive to its report, and logged run.stuck with the reason
      (labels.run names the run). See the README section on self-healing for what each reason means and what to do.
    EOT
  }

  alert_strategy {
    auto_close = "3600s"
  }
}

resource "google_monitoring_alert_policy" "dead_letters" {
  display_name          = "gemini-batch-pipeline: undelivered messages in a dead-letter subscription"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "WARNING"
  user_labels           = local.labels

  conditions {
    display_name = "num_undelivered_messages > 0"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=monitoring.regex.full_match(\"${var.name_prefix}-(submit|poll|collect|reconcile)-dead-letter\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  # The reconciliation drains the dead-letter subscriptions every tick, so the backlog may be gone before it is
  # sampled: the line it logs for each dead letter fires the alert too.
  conditions {
    display_name = "message.dead_lettered logged"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_type["dead_letters"]}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      A function failed one message max_delivery_attempts times and Pub/Sub moved it to that function's
      dead-letter topic (the subscription is named after the function). The reconciliation still finishes the
      runs from stored state and drains the dead letters, logging each as message.dead_lettered; look for that
      function's <function>.failed lines to see why the deliveries failed.
    EOT
  }

  alert_strategy {
    auto_close = "3600s"
  }
}

resource "google_monitoring_alert_policy" "function_errors" {
  display_name          = "gemini-batch-pipeline: function error rate"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "WARNING"
  user_labels           = local.labels

  conditions {
    display_name = "share of 5xx answers above ${var.function_error_rate_threshold} over 10 minutes"
    condition_threshold {
      filter             = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=monitoring.regex.full_match(\"${local.services_regex}\") AND metric.labels.response_code_class=\"5xx\""
      denominator_filter = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=monitoring.regex.full_match(\"${local.services_regex}\")"
      comparison         = "COMPARISON_GT"
      threshold_value    = var.function_error_rate_threshold
      duration           = "600s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      A function answers 5xx to many of its deliveries: a transient failure (it raised, so Pub/Sub redelivers).
      A few are normal; many mean something it depends on keeps failing. Its <function>.failed log lines say what
      (jsonPayload.error).
    EOT
  }

  alert_strategy {
    auto_close = "3600s"
  }
}

resource "google_monitoring_alert_policy" "job_slow" {
  display_name          = "gemini-batch-pipeline: a Vertex AI job is pending or running too long"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "WARNING"
  user_labels           = local.labels

  conditions {
    display_name = "job.slow logged"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_type["jobs_slow"]}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      A job has been pending longer than PENDING_WARN_SECONDS (${var.pending_warn_seconds} s) or running longer than
      RUNNING_WARN_SECONDS (${var.running_warn_seconds} s). Vertex AI queues batch jobs for up to 72 hours when
      capacity is short; the job.slow lines name the job (labels.job) and its state.
    EOT
  }

  alert_strategy {
    auto_close = "3600s"
  }
}

# --- Dashboard ------------------------------------------------------------------------------------------------

locals {
  # A chart of log-based counters summed per 5 minutes, one line per value of group_by (if any).
  counter_chart = { for k, _ in local.counter_metrics : k => {
    timeSeriesQuery = {
      timeSeriesFilter = {
        filter = "metric.type=\"${local.metric_type[k]}\" AND resource.type=\"cloud_run_revision\""
        aggregation = {
          alignmentPeriod    = "300s"
          perSeriesAligner   = "ALIGN_DELTA"
          crossSeriesReducer = "REDUCE_SUM"
          groupByFields      = [for l in local.counter_metrics[k].labels : "metric.label.${l}"]
        }
      }
    }
    plotType   = "STACKED_BAR"
    targetAxis = "Y1"
  } }

  # The sum of a distribution's values per 5 minutes (rows, tokens).
  sum_chart = { for k, _ in local.distribution_metrics : k => {
    timeSeriesQuery = {
      prometheusQuery = "sum(increase(${local.promql_sum[k]}{monitored_resource=\"cloud_run_revision\"}[5m]))"
    }
    plotType       = "STACKED_BAR"
    targetAxis     = "Y1"
    legendTemplate = replace(k, "_", " ")
  } }

  percentile_chart = { for p in ["50", "95"] : p => { for k in ["run_seconds", "job_seconds"] : k => {
    timeSeriesQuery = {
      timeSeriesFilter = {
        filter = "metric.type=\"${local.metric_type[k]}\" AND resource.type=\"cloud_run_revision\""
        aggregation = {
          alignmentPeriod    = "3600s"
          perSeriesAligner   = "ALIGN_PERCENTILE_${p}"
          crossSeriesReducer = "REDUCE_MAX"
        }
      }
    }
    plotType       = "LINE"
    targetAxis     = "Y1"
    legendTemplate = "p${p}"
  } } }

  dashboard_tiles = [
    { title = "Runs started", dataSets = [local.counter_chart["runs_received"]] },
    { title = "Runs finished, by state", dataSets = [local.counter_chart["runs_finished"]] },
    { title = "Rows succeeded and failed", dataSets = [local.sum_chart["rows_succeeded"], local.sum_chart["rows_failed"]] },
    { title = "Rows failed, by stage", dataSets = [for s in ["validation", "prediction", "job", "missing"] : local.sum_chart["rows_failed_${s}"]] },
    { title = "Rows failed, by reason", dataSets = [{ timeSeriesQuery = { prometheusQuery = "sum by (reason) (increase(${local.promql_sum["rows_failed_by_reason"]}{monitored_resource=\"cloud_run_revision\"}[5m]))" }, plotType = "STACKED_BAR", targetAxis = "Y1" }] },
    { title = "Vertex AI jobs created", dataSets = [local.counter_chart["jobs_submitted"], local.counter_chart["jobs_rejected"]] },
    { title = "Vertex AI jobs ended, by state", dataSets = [local.counter_chart["jobs_finished"]] },
    { title = "Tokens (prompt, response)", dataSets = [local.sum_chart["tokens_prompt"], local.sum_chart["tokens_candidates"]] },
    { title = "Run latency, upload to report (s)", dataSets = [local.percentile_chart["50"]["run_seconds"], local.percentile_chart["95"]["run_seconds"]] },
    { title = "Vertex AI job duration (s)", dataSets = [local.percentile_chart["50"]["job_seconds"], local.percentile_chart["95"]["job_seconds"]] },
    { title = "Repairs (by kind) and stuck runs", dataSets = [local.counter_chart["runs_repaired"], local.counter_chart["runs_stuck"]] },
    { title = "Dead letters drained", dataSets = [local.counter_chart["dead_letters"]] },
    { title = "Slow-job warnings", dataSets = [local.counter_chart["jobs_slow"]] },
    {
      title = "Function requests, by answer"
      dataSets = [{
        timeSeriesQuery = {
          timeSeriesFilter = {
            filter = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=monitoring.regex.full_match(\"${local.services_regex}\")"
            aggregation = {
              alignmentPeriod    = "300s"
              perSeriesAligner   = "ALIGN_DELTA"
              crossSeriesReducer = "REDUCE_SUM"
              groupByFields      = ["resource.label.service_name", "metric.label.response_code_class"]
            }
          }
        }
        plotType   = "STACKED_BAR"
        targetAxis = "Y1"
      }]
    },
    {
      title = "Dead letters waiting"
      dataSets = [{
        timeSeriesQuery = {
          timeSeriesFilter = {
            filter = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=monitoring.regex.full_match(\"${var.name_prefix}-(submit|poll|collect|reconcile)-dead-letter\")"
            aggregation = {
              alignmentPeriod    = "300s"
              perSeriesAligner   = "ALIGN_MAX"
              crossSeriesReducer = "REDUCE_MAX"
              groupByFields      = ["resource.label.subscription_id"]
            }
          }
        }
        plotType   = "LINE"
        targetAxis = "Y1"
      }]
    },
  ]
}

resource "google_monitoring_dashboard" "pipeline" {
  dashboard_json = jsonencode({
    displayName = "gemini-batch-pipeline (${var.name_prefix})"
    mosaicLayout = {
      columns = 48
      tiles = [for i, t in local.dashboard_tiles : {
        xPos   = (i % 2) * 24
        yPos   = floor(i / 2) * 16
        width  = 24
        height = 16
        widget = {
          title   = t.title
          xyChart = { dataSets = t.dataSets, yAxis = { scale = "LINEAR" } }
        }
      }]
    }
  })

  depends_on = [google_logging_metric.counter, google_logging_metric.distribution]
}
