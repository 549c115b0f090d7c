# Every pipeline setting that reaches the functions repeats the limits shared/config.py enforces at start, so a
# bad value fails at plan instead of at the first cold start.

variable "project_id" {
  type        = string
  description = "Project that holds the buckets, topics, functions and Vertex AI jobs (GOOGLE_CLOUD_PROJECT)."
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 characters: lowercase letters, digits and hyphens)."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, buckets, scheduler job and, unless vertex_location says otherwise, the Vertex AI jobs."
  nullable    = false
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a region name such as us-central1 or europe-west4."
  }
}

variable "vertex_location" {
  type        = string
  description = "Vertex AI location of the batch jobs (GOOGLE_CLOUD_LOCATION); null means the same as region."
  default     = null

  validation {
    condition     = var.vertex_location == null || can(regex("^([a-z]+-[a-z]+[0-9]+|global)$", var.vertex_location))
    error_message = "vertex_location must be a region name (or global)."
  }
}

variable "name_prefix" {
  type        = string
  description = "Prefix of the functions, service accounts, subscriptions, metrics and default bucket names."
  nullable    = false
  default     = "gbp"

  validation {
    # Service account IDs are at most 30 characters: the prefix plus "-reconcile-push" (15) must fit.
    condition     = can(regex("^[a-z][a-z0-9-]{0,13}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2-15 characters: lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "input_bucket_name" {
  type        = string
  description = "Bucket users drop files into (INPUT_BUCKET); null means \"<project_id>-<name_prefix>-input\"."
  default     = null

  validation {
    condition     = var.input_bucket_name == null || can(regex("^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$", var.input_bucket_name))
    error_message = "input_bucket_name must be a bucket name (not a gs:// URI)."
  }
}

variable "output_bucket_name" {
  type        = string
  description = "Bucket of results, errors, reports and the pipeline's state/, staging/ and vertex/ (OUTPUT_BUCKET); null means \"<project_id>-<name_prefix>-output\"."
  default     = null

  validation {
    condition     = var.output_bucket_name == null || can(regex("^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$", var.output_bucket_name))
    error_message = "output_bucket_name must be a bucket name (not a gs:// URI)."
  }
}

variable "input_prefix" {
  type        = string
  description = "Object name prefix that starts a run (INPUT_PREFIX); the bucket notification filters on it."
  nullable    = false
  default     = "incoming/"

  validation {
    condition = (
      length(var.input_prefix) > 1 && length(var.input_prefix) <= 512 && endswith(var.input_prefix, "/")
      && !startswith(var.input_prefix, "/")
    )
    error_message = "input_prefix must be a folder such as \"incoming/\": not empty, no leading \"/\", ending with \"/\"."
  }
}

variable "model" {
  type        = string
  description = "Default Gemini model (MODEL); an input object's custom metadata \"model\" overrides it for that file."
  nullable    = false
  default     = "gemini-2.5-flash"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._/@-]*$", var.model))
    error_message = "model must be a model name such as gemini-2.5-flash."
  }
}

variable "max_active_jobs" {
  type        = number
  description = "Vertex AI jobs active at once across all runs (MAX_ACTIVE_JOBS); the rest wait in a FIFO queue."
  nullable    = false
  default     = 8

  validation {
    condition     = floor(var.max_active_jobs) == var.max_active_jobs && var.max_active_jobs >= 1 && var.max_active_jobs <= 10000
    error_message = "max_active_jobs must be a whole number between 1 and 10000."
  }
}

variable "max_rows_per_job" {
  type        = number
  description = "Files with more rows are split into several jobs (MAX_ROWS_PER_JOB); Vertex AI's own ceiling is 200000."
  nullable    = false
  default     = 200000

  validation {
    condition     = floor(var.max_rows_per_job) == var.max_rows_per_job && var.max_rows_per_job >= 1 && var.max_rows_per_job <= 200000
    error_message = "max_rows_per_job must be a whole number between 1 and 200000."
  }
}

variable "max_bytes_per_job" {
  type        = number
  description = "Files with more bytes are split into several jobs (MAX_BYTES_PER_JOB); Vertex AI's own ceiling is 1 GB."
  nullable    = false
  default     = 1000000000

  validation {
    condition     = floor(var.max_bytes_per_job) == var.max_bytes_per_job && var.max_bytes_per_job >= 1024 && var.max_bytes_per_job <= 1000000000
    error_message = "max_bytes_per_job must be a whole number between 1024 and 1000000000."
  }
}

variable "max_attempts" {
  type        = number
  description = "Vertex AI jobs a row may go through for retryable failures, first attempt included (MAX_ATTEMPTS)."
  nullable    = false
  default     = 3

  validation {
    condition     = floor(var.max_attempts) == var.max_attempts && var.max_attempts >= 1 && var.max_attempts <= 20
    error_message = "max_attempts must be a whole number between 1 and 20."
  }
}

variable "pipeline_label" {
  type        = string
  description = "Value of the \"pipeline\" label on every Vertex AI job and on every resource here (PIPELINE_LABEL)."
  nullable    = false
  default     = "gemini-batch-pipeline"

  validation {
    condition     = can(regex("^[a-z0-9_-]{1,63}$", var.pipeline_label))
    error_message = "pipeline_label must be a label value: 1-63 of a-z, 0-9, _ and -."
  }
}

variable "pending_warn_seconds" {
  type        = number
  description = "A job still pending after this long logs job.slow (PENDING_WARN_SECONDS); the job-too-slow alert fires on it."
  nullable    = false
  default     = 10800

  validation {
    condition     = floor(var.pending_warn_seconds) == var.pending_warn_seconds && var.pending_warn_seconds >= 1 && var.pending_warn_seconds <= 10000000
    error_message = "pending_warn_seconds must be a whole number between 1 and 10000000."
  }
}

variable "running_warn_seconds" {
  type        = number
  description = "A job still running after this long logs job.slow (RUNNING_WARN_SECONDS); the job-too-slow alert fires on it."
  nullable    = false
  default     = 43200

  validation {
    condition     = floor(var.running_warn_seconds) == var.running_warn_seconds && var.running_warn_seconds >= 1 && var.running_warn_seconds <= 10000000
    error_message = "running_warn_seconds must be a whole number between 1 and 10000000."
  }
}

variable "stuck_create_seconds" {
  type        = number
  description = "Age after which the poller adopts a job reservation that never got a Vertex AI job (STUCK_CREATE_SECONDS); null derives it from the function timeout."
  default     = null

  validation {
    condition     = var.stuck_create_seconds == null ? true : floor(var.stuck_create_seconds) == var.stuck_create_seconds && var.stuck_create_seconds >= 1 && var.stuck_create_seconds <= 1000000
    error_message = "stuck_create_seconds must be null or a whole number between 1 and 1000000."
  }
}

variable "max_creates_per_minute" {
  type        = number
  description = "Vertex AI job creations per minute the scheduler stays under (MAX_CREATES_PER_MINUTE; Vertex AI allows 60 per region)."
  nullable    = false
  default     = 60

  validation {
    condition     = floor(var.max_creates_per_minute) == var.max_creates_per_minute && var.max_creates_per_minute >= 1 && var.max_creates_per_minute <= 10000
    error_message = "max_creates_per_minute must be a whole number between 1 and 10000."
  }
}

variable "permission_grace_seconds" {
  type        = number
  description = "How long a create answered 401/403 is retried before the rows fail (PERMISSION_GRACE_SECONDS): IAM changes take minutes to apply."
  nullable    = false
  default     = 900

  validation {
    condition     = floor(var.permission_grace_seconds) == var.permission_grace_seconds && var.permission_grace_seconds >= 0 && var.permission_grace_seconds <= 1000000
    error_message = "permission_grace_seconds must be a whole number between 0 and 1000000."
  }
}

variable "reconcile_batch" {
  type        = number
  description = "Unfinished runs the reconciliation visits per tick (RECONCILE_BATCH); it resumes where it stopped on the next tick."
  nullable    = false
  default     = 500

  validation {
    condition     = floor(var.reconcile_batch) == var.reconcile_batch && var.reconcile_batch >= 1 && var.reconcile_batch <= 100000
    error_message = "reconcile_batch must be a whole number between 1 and 100000."
  }
}

variable "collect_workers" {
  type        = number
  description = "Worker processes collect uses side by side on a large job output (COLLECT_WORKERS); 0: one per vCPU given to the collect function (functions.tf)."
  nullable    = false
  default     = 0

  validation {
    condition     = floor(var.collect_workers) == var.collect_workers && var.collect_workers >= 0 && var.collect_workers <= 64
    error_message = "collect_workers must be a whole number between 0 and 64."
  }
}

variable "submit_workers" {
  type        = number
  description = "Worker processes submit uses side by side on a large input of short lines (SUBMIT_WORKERS); 0: one per vCPU given to the submit function (functions.tf)."
  nullable    = false
  default     = 0

  validation {
    condition     = floor(var.submit_workers) == var.submit_workers && var.submit_workers >= 0 && var.submit_workers <= 64
    error_message = "submit_workers must be a whole number between 0 and 64."
  }
}

variable "function_timeout_seconds" {
  type        = number
  description = "Timeout of every function (FUNCTION_TIMEOUT_SECONDS: the pipeline derives its leases from it)."
  nullable    = false
  default     = 540

  validation {
    # 540 s is the ceiling for work a Pub/Sub push starts: the push waits at most 600 s (the subscription's
    # longest ack deadline) and the function must answer before that, or a finished delivery is redelivered.
    condition     = floor(var.function_timeout_seconds) == var.function_timeout_seconds && var.function_timeout_seconds >= 60 && var.function_timeout_seconds <= 540
    error_message = "function_timeout_seconds must be a whole number between 60 and 540."
  }
}

variable "poll_schedule" {
  type        = string
  description = "Cron schedule (in schedule_time_zone) of the tick that drives poll and the reconciliation."
  nullable    = false
  default     = "* * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.poll_schedule))) == 5
    error_message = "poll_schedule must be a five-field cron expression such as \"* * * * *\"."
  }
}

variable "schedule_time_zone" {
  type        = string
  description = "Time zone (tz database name) of poll_schedule."
  nullable    = false
  default     = "Etc/UTC"

  validation {
    condition     = can(regex("^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", var.schedule_time_zone))
    error_message = "schedule_time_zone must be a tz database name such as Etc/UTC or Europe/Paris."
  }
}

variable "scratch_retention_days" {
  type        = number
  description = "Age in days after which staging/ (staged inputs, part files, compose scratch) and vertex/ objects are deleted."
  nullable    = false
  default     = 30

  validation {
    # Deleting a live run's staged input or Vertex output would lose rows, so the age must outlast the longest
    # run: every attempt may wait up to 72 h in the Vertex queue, then run for up to a day, and a run has at most
    # max_attempts attempts: max_attempts x 4 days, plus a day for collecting and composing.
    condition     = floor(var.scratch_retention_days) == var.scratch_retention_days && var.scratch_retention_days > var.max_attempts * 4 && var.scratch_retention_days <= 3650
    error_message = "scratch_retention_days must be a whole number of days above max_attempts x 4 (the longest possible run) and at most 3650."
  }
}

variable "versioning" {
  type        = bool
  description = "Keep noncurrent object versions in the input and output buckets (deleted noncurrent_retention_days after they are replaced)."
  nullable    = false
  default     = false
}

variable "noncurrent_retention_days" {
  type        = number
  description = "With versioning on: days a replaced or deleted object version is kept."
  nullable    = false
  default     = 7

  validation {
    condition     = floor(var.noncurrent_retention_days) == var.noncurrent_retention_days && var.noncurrent_retention_days >= 1 && var.noncurrent_retention_days <= 3650
    error_message = "noncurrent_retention_days must be a whole number between 1 and 3650."
  }
}

variable "force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete the buckets with everything in them (results included)."
  nullable    = false
  default     = false
}

variable "max_delivery_attempts" {
  type        = number
  description = "Deliveries of one message to a function before it moves to that function's dead-letter topic."
  nullable    = false
  default     = 10

  validation {
    condition     = floor(var.max_delivery_attempts) == var.max_delivery_attempts && var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be a whole number between 5 and 100 (Pub/Sub's limits)."
  }
}

variable "dead_letter_retention_days" {
  type        = number
  description = "Days an unread message is kept in a dead-letter subscription."
  nullable    = false
  default     = 7

  validation {
    condition     = floor(var.dead_letter_retention_days) == var.dead_letter_retention_days && var.dead_letter_retention_days >= 1 && var.dead_letter_retention_days <= 31
    error_message = "dead_letter_retention_days must be a whole number between 1 and 31 (Pub/Sub's limit)."
  }
}

variable "notification_channels" {
  type        = list(string)
  description = "Notification channels (projects/<project>/notificationChannels/<id>) that every alert notifies; empty: alerts open incidents only."
  nullable    = false
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", c))])
    error_message = "notification_channels must be full channel names: projects/<project>/notificationChannels/<id>."
  }
}

variable "function_error_rate_threshold" {
  type        = number
  description = "Share of a function's requests answered 5xx over 10 minutes above which the error-rate alert fires."
  nullable    = false
  default     = 0.2

  validation {
    condition     = var.function_error_rate_threshold > 0 && var.function_error_rate_threshold <= 1
    error_message = "function_error_rate_threshold must be a share above 0 and at most 1."
  }
}

variable "build_service_account" {
  type        = string
  description = "Service account (projects/<project>/serviceAccounts/<email>) Cloud Build uses to build the functions; null means the platform default."
  default     = null

  validation {
    condition     = var.build_service_account == null || can(regex("^projects/[^/]+/serviceAccounts/[^/]+@[^/]+$", var.build_service_account))
    error_message = "build_service_account must be projects/<project>/serviceAccounts/<email>."
  }
}

variable "source_zip" {
  type        = string
  description = "Path of the functions' source bundle built by `python -m deploy.package` (byte-stable: same sources, same bundle)."
  nullable    = false

  validation {
    condition     = endswith(var.source_zip, ".zip") && fileexists(var.source_zip)
    error_message = "source_zip must be the path of an existing .zip built by `python -m deploy.package`."
  }
}

variable "labels" {
  type        = map(string)
  description = "Extra labels for every resource that takes labels (the pipeline label is always added)."
  nullable    = false
  default     = {}

  validation {
    condition = alltrue([
      for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))
    ])
    error_message = "labels must have keys of 1-63 of a-z, 0-9, _ and - starting with a letter, and values of at most 63 of the same."
  }
}
