# The four functions: one source bundle, one entry point each (functions/main.py), one service account each.
#
# Sizes, per function (README "In the cloud" says the same):
# - submit streams one input of up to 1 GB through the line-by-line validator; an input of short lines is
#   validated in blocks by one worker process per vCPU (SUBMIT_WORKERS), so 2 vCPU take ~0.6-0.8 of the time;
#   memory holds the file's key-path schema (the importer's one-type-per-path rule grows with the distinct key
#   paths), 8 MB read and write chunks, the blocks in flight and lines of up to 64 MB: 4 GiB. Ten instances take
#   a burst of uploads; the rest wait in Pub/Sub.
# - collect streams a finished job's output (gigabytes for 200,000 long responses) and the staged input in two
#   passes, keeping only row numbers and the failures' details. It turns a large output into result lines in
#   one worker process per vCPU (COLLECT_WORKERS), so 2 vCPU halve its time; 2 GiB holds the workers' pieces.
#   Ten instances: more than the default MAX_ACTIVE_JOBS, so every job that ends at once is collected at once.
# - poll makes one list call per page of active jobs and starts queued work: small, 512 MiB. Ticks overlap only
#   when Vertex AI is slow; three instances absorb that.
# - reconcile walks the unfinished runs from stored state, a bounded amount per tick: 1 GiB, and one instance,
#   as a second one would only repeat the same idempotent repairs.
# All: concurrency 1 (one Python thread per instance; a request never shares its CPU or memory), no idle
# instance (min 0: nothing is billed between uploads), and the timeout push delivery allows (variables.tf).
locals {
  function_sizes = {
    submit    = { cpu = "2", memory = "4Gi", max_instances = 10 }
    poll      = { cpu = "1", memory = "512Mi", max_instances = 3 }
    collect   = { cpu = "2", memory = "2Gi", max_instances = 10 }
    reconcile = { cpu = "1", memory = "1Gi", max_instances = 1 }
  }
}

resource "google_cloudfunctions2_function" "fn" {
  for_each = local.consumers

  name        = local.function_names[each.key]
  location    = var.region
  description = "gemini-batch-pipeline ${each.key} (push subscription ${local.function_names[each.key]} on topic ${local.topics[each.value.topic]})"
  labels      = local.labels

  build_config {
    runtime         = "python312"
    entry_point     = each.value.entry_point
    service_account = var.build_service_account

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_cpu                    = local.function_sizes[each.key].cpu
    available_memory                 = local.function_sizes[each.key].memory
    timeout_seconds                  = var.function_timeout_seconds
    max_instance_request_concurrency = 1
    min_instance_count               = 0
    max_instance_count               = local.function_sizes[each.key].max_instances
    service_account_email            = google_service_account.function[each.key].email
    environment_variables            = local.environment
    all_traffic_on_latest_revision   = true

    # Internal only: "Internal" ingress admits Pub/Sub (and Cloud Scheduler, Eventarc, Cloud Tasks, Workflows)
    # in the same project or VPC Service Controls perimeter, even at the run.app URL, and refuses the internet
    # (https://cloud.google.com/run/docs/securing/ingress, "Available network ingress settings"). The push
    # subscriptions are in this project, so nothing else needs to reach the functions.
    ingress_settings = "ALLOW_INTERNAL_ONLY"
  }

  depends_on = [google_project_service.enabled]
}
