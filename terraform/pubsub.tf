# Topics, and one push subscription per consumer that we own: unlike a function's Eventarc-managed
# subscription it carries a dead-letter policy, and its retries are how a function heals after a crash
# (every function is idempotent, so redelivery is safe).

resource "google_pubsub_topic" "main" {
  #checkov:skip=CKV_GCP_83:Messages are small pointers (object names, run and job ids) kept at most 7 days; Google-managed encryption applies.
  for_each = local.topics

  name   = each.value
  labels = local.labels

  depends_on = [google_project_service.enabled]
}

# One dead-letter topic per consumer, so an alert names the function whose messages could not be delivered.
resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Dead letters are the same small pointers; Google-managed encryption applies.
  for_each = local.consumers

  name   = "${var.name_prefix}-${each.key}-dead-letter"
  labels = local.labels

  depends_on = [google_project_service.enabled]
}

# A topic without a subscription drops what is published to it: this pull subscription keeps each dead
# letter where the dead-letter alert sees it and where the reconciliation drains and logs it
# (DEAD_LETTER_SUBSCRIPTIONS).
resource "google_pubsub_subscription" "dead_letter" {
  for_each = local.consumers

  name                       = "${var.name_prefix}-${each.key}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = "${var.dead_letter_retention_days * 86400}s"
  labels                     = local.labels

  expiration_policy {
    ttl = "" # never expire, however long nothing is dead-lettered
  }
}

resource "google_pubsub_subscription" "push" {
  for_each = local.consumers

  name   = local.function_names[each.key]
  topic  = google_pubsub_topic.main[each.value.topic].id
  labels = local.labels

  # For a push subscription the ack deadline is how long Pub/Sub waits for the function's answer: longer
  # than the function may run, or a delivery still at work would be sent again.
  ack_deadline_seconds = min(600, var.function_timeout_seconds + 60)
  # A tick that waited ten minutes is worth nothing (the next one does the same work), so ticks expire instead
  # of piling up behind a slow poll; uploads and job-finished messages are kept for the full week.
  message_retention_duration = each.value.topic == "poll_ticks" ? "600s" : "604800s"

  push_config {
    # The Cloud Run URL of the function. Its ingress is internal-only (functions.tf): Pub/Sub push from the
    # same project counts as internal traffic, even at the run.app URL.
    push_endpoint = google_cloudfunctions2_function.fn[each.key].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.invoker[each.key].email
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # the default expires a subscription after 31 idle days: weeks without an upload must not break the wiring
  }

  # Pub/Sub checks these when the subscription is created or when it first forwards a message.
  depends_on = [
    google_cloud_run_v2_service_iam_member.invoker,
    google_pubsub_topic_iam_member.pubsub_agent_dead_letter,
    google_service_account_iam_member.pubsub_agent_mints_tokens,
  ]
}
