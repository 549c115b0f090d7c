# Identities and least privilege. One service account per function, and one invoker per push subscription.
# Every role is granted on the bucket, topic, subscription, service account or Cloud Run service it is for;
# the only project-level role is roles/aiplatform.user (see below). No primitive roles, no project-wide
# storage roles.

resource "google_service_account" "function" {
  for_each = local.consumers

  account_id   = "${var.name_prefix}-${each.key}"
  display_name = "gemini-batch-pipeline ${each.key} function"
  description  = "Runs the ${each.key} function; roles granted per bucket and topic in iam.tf."

  depends_on = [google_project_service.enabled]
}

# The identity in the OIDC token of each push subscription: it may invoke that one function and nothing else.
resource "google_service_account" "invoker" {
  for_each = local.consumers

  account_id   = "${var.name_prefix}-${each.key}-push"
  display_name = "gemini-batch-pipeline ${each.key} push invoker"
  description  = "Signs the push requests of subscription ${local.function_names[each.key]}; may invoke that function only."

  depends_on = [google_project_service.enabled]
}

# --- Service agents -------------------------------------------------------------------------------------------

# Cloud Storage's agent publishes the bucket notifications; reading it also makes it exist.
data "google_storage_project_service_account" "storage" {
  project = var.project_id

  depends_on = [google_project_service.enabled]
}

# Service agents are created lazily, on first use; a role cannot be granted to one that does not exist yet.
resource "google_project_service_identity" "pubsub" {
  provider = google-beta
  project  = var.project_id
  service  = "pubsub.googleapis.com"

  depends_on = [google_project_service.enabled]
}

resource "google_project_service_identity" "vertex" {
  provider = google-beta
  project  = var.project_id
  service  = "aiplatform.googleapis.com"

  depends_on = [google_project_service.enabled]
}

locals {
  # service-PROJECT_NUMBER@gcp-sa-pubsub / @gcp-sa-aiplatform.iam.gserviceaccount.com
  pubsub_agent = "serviceAccount:${google_project_service_identity.pubsub.email}"
  vertex_agent = "serviceAccount:${google_project_service_identity.vertex.email}"
  function_sa  = { for k, sa in google_service_account.function : k => "serviceAccount:${sa.email}" }

  # Object roles per bucket. objectViewer reads and lists; objectUser also creates, overwrites and deletes
  # (state compare-and-swap, staging, compose, part files), without any IAM permission.
  bucket_grants = merge(
    {
      for k in keys(local.consumers) : "${k}-output" => {
        bucket = google_storage_bucket.output.name, role = "roles/storage.objectUser", member = local.function_sa[k]
      }
    },
    {
      # submit stages the inputs; collect stages a part again from its input when the staged copy is gone;
      # the reconciliation sweeps the input prefix for inputs that never got a run. poll never reads one.
      for k in ["submit", "collect", "reconcile"] : "${k}-input" => {
        bucket = google_storage_bucket.input.name, role = "roles/storage.objectViewer", member = local.function_sa[k]
      }
    },
    {
      # Vertex AI runs the jobs as its service agent: it reads the inputs' fileData objects in the input
      # bucket and the staged inputs under staging/ (jobs fail with code 7 or 9 otherwise).
      "vertex-input"  = { bucket = google_storage_bucket.input.name, role = "roles/storage.objectViewer", member = local.vertex_agent }
      "vertex-output" = { bucket = google_storage_bucket.output.name, role = "roles/storage.objectViewer", member = local.vertex_agent }
    },
  )

  # Whoever may start or finish a run publishes job-finished (a job Vertex refused at create is announced at
  # once) and run-finished (a run whose every row failed validation finishes in submit). The reconciliation
  # also republishes to uploads: an upload whose notification was lost or dead-lettered, a run to restage.
  publish_grants = merge(concat(
    [
      for k in keys(local.consumers) : {
        for t in ["job_finished", "run_finished"] : "${k}-${t}" => { topic = t, member = local.function_sa[k] }
      }
    ],
    [{ "reconcile-uploads" = { topic = "uploads", member = local.function_sa["reconcile"] } }],
  )...)
}

resource "google_storage_bucket_iam_member" "object_access" {
  for_each = local.bucket_grants

  bucket = each.value.bucket
  role   = each.value.role
  member = each.value.member
}

# Vertex AI writes each job's predictions under vertex/<run>/<part>/ and nowhere else.
resource "google_storage_bucket_iam_member" "vertex_writes_output" {
  bucket = google_storage_bucket.output.name
  role   = "roles/storage.objectUser"
  member = local.vertex_agent

  condition {
    title       = "vertex-output-prefix"
    description = "Objects under vertex/ only: the Vertex AI jobs' output prefixes."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.output.name}/objects/vertex/\")"
  }
}

resource "google_pubsub_topic_iam_member" "function_publishes" {
  for_each = local.publish_grants

  topic  = google_pubsub_topic.main[each.value.topic].id
  role   = "roles/pubsub.publisher"
  member = each.value.member
}

# The reconciliation drains the dead-letter subscriptions and logs what it finds.
resource "google_pubsub_subscription_iam_member" "reconcile_reads_dead_letters" {
  for_each = local.consumers

  subscription = google_pubsub_subscription.dead_letter[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = local.function_sa["reconcile"]
}

# Vertex AI has no per-job IAM: batch prediction jobs are created and listed in a project and location, so
# roles/aiplatform.user can only be granted on the project. Every function may create or list jobs (submit,
# collect and the reconciliation start queued and retry parts; poll lists active jobs and starts queued ones).
resource "google_project_iam_member" "function_uses_vertex" {
  for_each = local.consumers

  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = local.function_sa[each.key]
}

# Each invoker may invoke its own function's Cloud Run service only. A 2nd-gen function's Cloud Run service
# has the function's name.
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = local.consumers

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn[each.key].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.invoker[each.key].email}"
}

# --- Pub/Sub's own agent, per resource ------------------------------------------------------------------------

# To sign each push request with the invoker's OIDC token.
resource "google_service_account_iam_member" "pubsub_agent_mints_tokens" {
  for_each = local.consumers

  service_account_id = google_service_account.invoker[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# To move a message that failed max_delivery_attempts times to the consumer's dead-letter topic ...
resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letter" {
  for_each = local.consumers

  topic  = google_pubsub_topic.dead_letter[each.key].id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

# ... and to acknowledge it on the source subscription once forwarded.
resource "google_pubsub_subscription_iam_member" "pubsub_agent_source" {
  for_each = local.consumers

  subscription = google_pubsub_subscription.push[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# Cloud Storage's agent may publish the notifications to the uploads topic, and to no other.
resource "google_pubsub_topic_iam_member" "storage_publishes_uploads" {
  topic  = google_pubsub_topic.main["uploads"].id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${data.google_storage_project_service_account.storage.email_address}"
}
