# Three buckets: users drop files into input; output holds the contract's results/, errors/ and reports/ plus
# the pipeline's own state/, staging/ and vertex/; source holds the functions' bundle. All three have uniform
# bucket-level access (IAM only, no object ACLs) and public access prevention enforced.

resource "google_storage_bucket" "input" {
  #checkov:skip=CKV_GCP_62:Access logs would log every read of every input; Cloud Audit Logs (Data Access) are the project's choice.
  #checkov:skip=CKV_GCP_78:Versioning is optional (var.versioning): files are dropped once and kept by their owners.
  name                        = local.input_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = local.labels

  versioning {
    enabled = var.versioning
  }

  dynamic "lifecycle_rule" {
    for_each = var.versioning ? [1] : []
    content {
      condition {
        days_since_noncurrent_time = var.noncurrent_retention_days
        with_state                 = "ARCHIVED"
      }
      action {
        type = "Delete"
      }
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket" "output" {
  #checkov:skip=CKV_GCP_62:Access logs would log every state read and write; Cloud Audit Logs (Data Access) are the project's choice.
  #checkov:skip=CKV_GCP_78:Versioning is optional (var.versioning): state objects change by compare-and-swap many times per run.
  name                        = local.output_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = local.labels

  versioning {
    enabled = var.versioning
  }

  # Scratch: staged inputs, part files and compose scratch live under staging/<run>/, each job's predictions
  # under vertex/<run>/<part>/ (shared/layout.py). A run reads them until its report is written, so they are
  # deleted only past the longest possible run (see var.scratch_retention_days).
  lifecycle_rule {
    condition {
      age            = var.scratch_retention_days
      matches_prefix = ["staging/", "vertex/"]
    }
    action {
      type = "Delete"
    }
  }

  dynamic "lifecycle_rule" {
    for_each = var.versioning ? [1] : []
    content {
      condition {
        days_since_noncurrent_time = var.noncurrent_retention_days
        with_state                 = "ARCHIVED"
      }
      action {
        type = "Delete"
      }
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only the functions' source bundle, written by Terraform.
  #checkov:skip=CKV_GCP_78:Each bundle is its own object, named by its hash; Terraform replaces it.
  name                        = local.source_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true # only bundles, each recreated from the repository
  labels                      = local.labels

  depends_on = [google_project_service.enabled]
}

# Named by the bundle's hash: the bundle is byte-stable, so an unchanged source keeps the same object and the
# functions are not redeployed; a changed one is a new object, and the functions rebuild from it.
resource "google_storage_bucket_object" "source" {
  bucket       = google_storage_bucket.source.name
  name         = "function-source/${filesha256(var.source_zip)}.zip"
  source       = var.source_zip
  content_type = "application/zip"
}

# Every finalized object under the input prefix becomes a message on the uploads topic. Filtering at the source
# keeps the pipeline's own writes and everything else in the bucket from ever reaching submit.
resource "google_storage_notification" "uploads" {
  bucket             = google_storage_bucket.input.name
  topic              = google_pubsub_topic.main["uploads"].id
  payload_format     = "JSON_API_V1"
  event_types        = ["OBJECT_FINALIZE"]
  object_name_prefix = var.input_prefix

  depends_on = [google_pubsub_topic_iam_member.storage_publishes_uploads]
}
