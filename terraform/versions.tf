# Bounded ranges: a new major version of Terraform or of the providers is a deliberate upgrade, never a surprise
# at `terraform init`. Validation conditions that refer to other variables need Terraform 1.9.
terraform {
  required_version = ">= 1.9, < 2.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 9.0"
    }
    # Only for google_project_service_identity (iam.tf): it makes the Pub/Sub and Vertex AI service agents exist
    # before they are granted roles; the resource exists only in the beta provider.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 6.0, < 9.0"
    }
  }

  # State stays on the machine that deploys; `make deploy` points `path` at .deploy/<project>/ with
  # -backend-config. Teams move it to a "gcs" backend.
  backend "local" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}
