# The tick. Both poll and the reconciliation subscribe to poll-ticks, so one job drives both. A Pub/Sub target
# takes no attempt_deadline (that is for HTTP and App Engine targets); Cloud Scheduler's own agent publishes.

resource "google_cloud_scheduler_job" "poll_tick" {
  name        = "${var.name_prefix}-poll-tick"
  region      = var.region
  description = "Ticks poll and the reconciliation of gemini-batch-pipeline."
  schedule    = var.poll_schedule
  time_zone   = var.schedule_time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.main["poll_ticks"].id
    data       = base64encode(jsonencode({ tick = "scheduler" }))
  }

  depends_on = [google_project_service.enabled]
}
