# The services the pipeline runs on. They stay enabled on destroy: other workloads in the project may use them,
# and disabling an API can delete that API's resources elsewhere in the project.
# (`make deploy` enables serviceusage and cloudresourcemanager first: Terraform needs them to enable the rest.)

locals {
  services = toset([
    "aiplatform.googleapis.com",           # Vertex AI batch prediction
    "artifactregistry.googleapis.com",     # the functions' container images
    "cloudbuild.googleapis.com",           # builds the functions from the source bundle
    "cloudfunctions.googleapis.com",       # the four functions
    "cloudresourcemanager.googleapis.com", # project IAM (roles/aiplatform.user)
    "cloudscheduler.googleapis.com",       # the tick
    "iam.googleapis.com",                  # service accounts
    "logging.googleapis.com",              # log-based metrics
    "monitoring.googleapis.com",           # alerts and the dashboard
    "pubsub.googleapis.com",               # topics and push subscriptions
    "run.googleapis.com",                  # the Cloud Run services behind the functions
    "storage.googleapis.com",              # the buckets
  ])
}

resource "google_project_service" "enabled" {
  for_each = local.services

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
