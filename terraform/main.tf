# The names everything else refers to, and the one environment all four functions read (shared/config.py).

locals {
  vertex_location = coalesce(var.vertex_location, var.region)

  input_bucket  = coalesce(var.input_bucket_name, "${var.project_id}-${var.name_prefix}-input")
  output_bucket = coalesce(var.output_bucket_name, "${var.project_id}-${var.name_prefix}-output")
  source_bucket = "${var.project_id}-${var.name_prefix}-source"

  labels = merge(var.labels, { pipeline = var.pipeline_label })

  # Topic names are the configuration's defaults (UPLOADS_TOPIC, JOB_FINISHED_TOPIC, RUN_FINISHED_TOPIC); the
  # environment below names them all the same.
  topics = {
    uploads      = "uploads"
    poll_ticks   = "poll-ticks"
    job_finished = "job-finished"
    run_finished = "run-finished"
  }

  # What each function consumes. Every consumer is a push subscription of its own (pubsub.tf), so poll and the
  # reconciliation both get every tick, and each has its own dead-letter topic.
  consumers = {
    submit    = { topic = "uploads", entry_point = "submit" }
    poll      = { topic = "poll_ticks", entry_point = "poll" }
    collect   = { topic = "job_finished", entry_point = "collect" }
    reconcile = { topic = "poll_ticks", entry_point = "reconcile" }
  }

  function_names = { for k, _ in local.consumers : k => "${var.name_prefix}-${k}" }

  # Cloud Logging scope of the pipeline's own log lines (metrics, alerts, the one-run query).
  log_scope = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=~\"^${var.name_prefix}-(submit|poll|collect|reconcile)$\""

  # Only variables shared/config.py reads (VERTEX_BASE_URL is for the local cloud only). STUCK_CREATE_SECONDS
  # is set only when given: unset, the pipeline derives it from the function timeout. COLLECT_WORKERS and
  # SUBMIT_WORKERS default to their function's vCPUs: an instance may see the host's CPUs rather than its own.
  settings = {
    GOOGLE_CLOUD_PROJECT      = var.project_id
    GOOGLE_CLOUD_LOCATION     = local.vertex_location
    INPUT_BUCKET              = google_storage_bucket.input.name
    INPUT_PREFIX              = var.input_prefix
    OUTPUT_BUCKET             = google_storage_bucket.output.name
    MODEL                     = var.model
    MAX_ACTIVE_JOBS           = tostring(var.max_active_jobs)
    MAX_ROWS_PER_JOB          = tostring(var.max_rows_per_job)
    MAX_BYTES_PER_JOB         = tostring(var.max_bytes_per_job)
    MAX_ATTEMPTS              = tostring(var.max_attempts)
    UPLOADS_TOPIC             = google_pubsub_topic.main["uploads"].name
    JOB_FINISHED_TOPIC        = google_pubsub_topic.main["job_finished"].name
    RUN_FINISHED_TOPIC        = google_pubsub_topic.main["run_finished"].name
    PIPELINE_LABEL            = var.pipeline_label
    PENDING_WARN_SECONDS      = tostring(var.pending_warn_seconds)
    RUNNING_WARN_SECONDS      = tostring(var.running_warn_seconds)
    FUNCTION_TIMEOUT_SECONDS  = tostring(var.function_timeout_seconds)
    MAX_CREATES_PER_MINUTE    = tostring(var.max_creates_per_minute)
    PERMISSION_GRACE_SECONDS  = tostring(var.permission_grace_seconds)
    RECONCILE_BATCH           = tostring(var.reconcile_batch)
    COLLECT_WORKERS           = tostring(var.collect_workers > 0 ? var.collect_workers : tonumber(local.function_sizes["collect"].cpu))
    SUBMIT_WORKERS            = tostring(var.submit_workers > 0 ? var.submit_workers : tonumber(local.function_sizes["submit"].cpu))
    DEAD_LETTER_SUBSCRIPTIONS = join(",", [for k in sort(keys(local.consumers)) : google_pubsub_subscription.dead_letter[k].id])
  }
  environment = merge(local.settings, var.stuck_create_seconds == null ? {} : {
    STUCK_CREATE_SECONDS = tostring(var.stuck_create_seconds)
  })
}
